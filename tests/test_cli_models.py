"""`mullama list`, `mullama show`, and the model-name lookup in the models directory."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mullama import ModelLoadError
from mullama.cli import models

pytest_plugins = ["server_fixtures"]
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


def test_show_describes_a_model_file(tiny_model_path):
    result = run("show", str(tiny_model_path))
    assert result.returncode == 0, result.stderr
    fields = dict(
        re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in result.stdout.splitlines()
    )
    assert fields["name"] == "tiny"
    assert fields["context length"] == "8192"
    assert fields["quantization"].startswith("F32")


def test_a_name_in_the_models_directory_resolves_to_its_file(
    tmp_path, monkeypatch, tiny_model_path
):
    monkeypatch.setenv("MULLAMA_MODELS", str(tmp_path))
    copy = tmp_path / "my-tiny.gguf"
    shutil.copyfile(tiny_model_path, copy)
    assert models.resolve("my-tiny") == ("my-tiny", str(copy))
    assert models.resolve("my-tiny:latest") == ("my-tiny", str(copy))
    assert models.resolve(None) == ("smollm2", None)
    assert models.resolve(str(copy)) == ("my-tiny", str(copy))
    with pytest.raises(ModelLoadError, match="my-other"):
        models.resolve("my-other")
    result = run(
        "run",
        "--model",
        "my-tiny",
        "--max-tokens",
        "3",
        "--verbose",
        "Hi",
        env={"MULLAMA_MODELS": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert "loaded my-tiny" in result.stderr


def test_the_builtin_model_is_found_without_importing_its_package():
    builtin = models.builtin_model_path()
    assert builtin is not None and builtin.is_file() and builtin.suffix == ".gguf"
