"""`mullama run` as users run it: the installed command in a subprocess."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(180)

MULLAMA = str(Path(sys.executable).with_name("mullama"))
GREEDY = ["--temperature", "0", "--max-tokens", "12"]


def mullama(
    *args: str, stdin: str | None = None, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MULLAMA, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )


def test_run_streams_a_reply():
    result = mullama("run", *GREEDY, "What is the capital of France?")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert result.stdout.endswith("\n")
    assert "Traceback" not in result.stderr


def test_no_stream_prints_the_same_text():
    streamed = mullama("run", *GREEDY, "Say hi.")
    buffered = mullama("run", *GREEDY, "--no-stream", "Say hi.")
    assert streamed.returncode == buffered.returncode == 0
    assert streamed.stdout == buffered.stdout


def test_dash_reads_the_prompt_from_stdin():
    from_stdin = mullama("run", *GREEDY, "-", stdin="Say hi.")
    from_args = mullama("run", *GREEDY, "Say hi.")
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert from_stdin.stdout == from_args.stdout
    # No prompt and piped stdin: stdin is the prompt too.
    piped = mullama("run", *GREEDY, stdin="Say hi.")
    assert piped.stdout == from_args.stdout


def test_raw_and_system_change_the_prompt():
    plain = mullama("run", *GREEDY, "--verbose", "Hello")
    raw = mullama("run", *GREEDY, "--verbose", "--raw", "Hello")
    system = mullama("run", *GREEDY, "--verbose", "--system", "You are a pirate.", "Hello")
    tokens = [_prompt_tokens(r.stderr) for r in (raw, plain, system)]
    assert tokens[0] < tokens[1] < tokens[2], tokens


def _prompt_tokens(stderr: str) -> int:
    line = next(line for line in stderr.splitlines() if "prompt:" in line)
    return int(line.split("prompt:")[1].split("tokens")[0])


def test_verbose_reports_statistics_on_stderr():
    result = mullama("run", *GREEDY, "--verbose", "Hi")
    assert result.returncode == 0
    stats = [line for line in result.stderr.splitlines() if "generation:" in line]
    assert len(stats) == 1
    for field in ("prompt:", "tok/s", "first token:", "peak memory:", "finish:"):
        assert field in stats[0]
    assert "loaded smollm2" in result.stderr
    assert "generation:" not in result.stdout


def test_stop_and_seed_flags():
    reference = mullama("run", *GREEDY, "Name three colors.").stdout
    words = reference.split()
    assert len(words) >= 3
    stopped = mullama(
        "run", *GREEDY, "--stop", words[2], "--stop", "zzz-never", "Name three colors."
    )
    assert stopped.stdout.rstrip("\n") == reference[: reference.index(words[2])].rstrip("\n")
    sampled = [
        "run",
        "--temperature",
        "1",
        "--top-k",
        "50",
        "--top-p",
        "0.95",
        "--min-p",
        "0.01",
        "--repeat-penalty",
        "1.1",
        "--max-tokens",
        "16",
        "--seed",
        "3",
        "Hi",
    ]
    assert mullama(*sampled).stdout == mullama(*sampled).stdout


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["run", "--top-p", "2", "Hi"], 2, "top_p"),
        (["run", "--max-tokens", "many", "Hi"], 2, "--max-tokens"),
        (["run", "--no-such-flag", "Hi"], 2, "unrecognized"),
        (["run", "   "], 2, "empty"),
        (["run", "--model", "no-such-model", "Hi"], 3, "no-such-model"),
        (["run", "--max-tokens", "100000", "Hi"], 5, "context"),
    ],
)
def test_errors_have_distinct_exit_codes_and_one_line(args, code, message):
    result = mullama(*args)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_model_load_failure_of_a_corrupt_file(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 10)
    result = mullama("run", "--model", str(bad), "Hi")
    assert result.returncode == 3
    assert len(result.stderr.strip().splitlines()) == 1


def test_timeout_exits_with_code_4():
    result = mullama("run", "--timeout", "1", "--max-tokens", "500", "Write a long story.")
    assert result.returncode == 4, result.stderr
    assert "timed out" in result.stderr


def test_debug_shows_the_traceback():
    result = mullama("run", "--debug", "--model", "no-such-model", "Hi")
    assert result.returncode == 3
    assert "Traceback" in result.stderr


def test_closed_pipe_stops_quietly():
    proc = subprocess.Popen(
        [MULLAMA, "run", "--raw", "--temperature", "0", "--max-tokens", "2000", "1, 2, 3, 4,"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout.read(1)  # output arrives while the generation runs
    proc.stdout.close()
    assert proc.wait(60) == 0
    assert b"Traceback" not in proc.stderr.read()


def test_slow_reader_backpressures_the_generation():
    """Piped into a reader that stops reading, the process blocks on the full pipe and stops
    computing (its CPU time stops growing) instead of buffering the reply."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    proc = subprocess.Popen(
        [MULLAMA, "run", "--raw", "--temperature", "0", "--max-tokens", "3000", "1, 2, 3, 4,"],
        stdout=write_end,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    os.close(write_end)
    try:
        first = os.read(read_end, 1)
        assert first
        # Not reading: once the pipe (4 KiB) and the stream buffer (64 tokens) are full, the
        # forward pass must pause.
        assert _cpu_settles(proc.pid), "the process kept computing with nobody reading"
        assert proc.poll() is None
        rest = b""
        while chunk := os.read(read_end, 65536):
            rest += chunk
        assert proc.wait(120) == 0
        assert len(first + rest) > 4096
    finally:
        os.close(read_end)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_settles(pid: int, window_s: float = 1.0, attempts: int = 60) -> bool:
    """True once the process used under 5% of a core over a whole window."""
    for _ in range(attempts):
        before = _cpu_seconds(pid)
        time.sleep(window_s)
        if _cpu_seconds(pid) - before < 0.05 * window_s:
            return True
    return False
