"""`mullama list`, `mullama show`, and the model-name lookup in the models directory."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mullama.cli import models

pytestmark = pytest.mark.timeout(120)

MULLAMA = str(Path(sys.executable).with_name("mullama"))


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [MULLAMA, *args],
        capture_output=True,
        text=True,
        timeout=100,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def test_list_shows_the_builtin_and_the_models_directory(tmp_path):
    (tmp_path / "tiny.gguf").write_bytes(b"GGUF")
    (tmp_path / "mlx-model").mkdir()
    (tmp_path / "mlx-model" / "config.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("not a model")
    result = run("list", env={"MULLAMA_MODELS": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines()[1:] if line.strip()]
    assert names == ["smollm2", "mlx-model", "tiny"]


def test_show_describes_the_default_model():
    result = run("show", "smollm2")
    assert result.returncode == 0, result.stderr
    fields = dict(
        re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in result.stdout.splitlines()
    )
    assert fields["architecture"] == "llama"
    assert fields["context length"] == "8192"
    assert fields["chat template"] == "yes"
    assert fields["quantization"] != "none"


def test_show_unknown_model_exits_3():
    result = run("show", "missing-model")
    assert result.returncode == 3
    assert "missing-model" in result.stderr


def test_a_name_in_the_models_directory_resolves_to_its_file(tmp_path, monkeypatch):
    builtin = models.builtin_model_path()
    assert builtin is not None and builtin.is_file()
    monkeypatch.setenv("MULLAMA_MODELS", str(tmp_path))
    copy = tmp_path / "my-smollm2.gguf"
    shutil.copyfile(builtin, copy)
    assert models.resolve("my-smollm2") == ("my-smollm2", str(copy))
    assert models.resolve("my-smollm2:latest") == ("my-smollm2", str(copy))
    assert models.resolve(None) == ("smollm2", None)
    assert models.resolve(str(copy)) == ("my-smollm2", str(copy))
    result = run(
        "run",
        "--model",
        "my-smollm2",
        "--max-tokens",
        "3",
        "Hi",
        env={"MULLAMA_MODELS": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
