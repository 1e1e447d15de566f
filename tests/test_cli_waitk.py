"""`mullama run --wait-k`: usage errors (no model needed) and a live source piped on stdin to
the default model, with --verbose's schedule marks and latency line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest_plugins = ["server_fixtures"]
pytestmark = pytest.mark.timeout(240)

MULLAMA = str(Path(sys.executable).with_name("mullama"))


def mullama(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MULLAMA, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--wait-k", "2", "--no-stream", "hello there"], "--no-stream"),
        (["--wait-k", "2", "--raw", "hello there"], "--raw"),
        (["--wait-k", "0", "hello there"], "wait_k"),
        (["--wait-k", "2", "--max-tokens-per-word", "0", "hi"], "max_tokens_per_word"),
        (["--source-file", "-", "hello"], "--wait-k"),
        (["--max-new-words", "3", "hello"], "--wait-k"),
        (["--wait-k", "2", "--source-file", "/nonexistent/source.txt"], "source-file"),
        (["--wait-k", "2", "--source-file", "-", "also a prompt"], "twice"),
        (["--wait-k", "2", "--remote", "http://127.0.0.1:9", "-m", "x", "hi"], "--remote"),
    ],
)
def test_usage_errors_exit_2(args, message):
    proc = mullama("run", *args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert proc.stdout == ""


def test_live_stdin_source_on_the_default_model(smollm2_path):
    proc = subprocess.Popen(
        [
            MULLAMA,
            "run",
            "--wait-k",
            "2",
            "--source-file",
            "-",
            "--max-new-words",
            "4",
            "--max-tokens",
            "24",
            "--temperature",
            "0",
            "--verbose",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdin is not None
        for word in "The cat sat on the mat today".split():
            proc.stdin.write(f"{word} ".encode())
            proc.stdin.flush()
            time.sleep(0.1)
        proc.stdin.close()  # the source ends
        proc.stdin = None  # communicate() must not flush it again
        out, err = proc.communicate(timeout=200)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = err.decode("utf-8", "replace")
    assert proc.returncode == 0, stderr
    assert out.decode().strip()
    marks = [int(n) for n in re.findall(r"\[read (\d+) source words\]", stderr)]
    assert marks and marks == [min(2 + t - 1, 7) for t in range(1, len(marks) + 1)]
    assert "average lagging" in stderr
    assert "tokens recomputed per source word" in stderr


def test_prompt_words_are_the_source(tiny_model_path):
    proc = mullama(
        "run",
        "--model",
        str(tiny_model_path),
        "--wait-k",
        "2",
        "--max-new-words",
        "3",
        "--max-tokens-per-word",
        "2",
        "--temperature",
        "0",
        "--verbose",
        "one two three four five",
    )
    assert proc.returncode == 0, proc.stderr
    marks = [int(n) for n in re.findall(r"\[read (\d+) source words\]", proc.stderr)]
    assert marks == [2, 3, 4]
    assert "average lagging" in proc.stderr and "generation:" in proc.stderr
