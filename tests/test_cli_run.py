"""`mullama run` as users run it: the installed command in a subprocess.

Every test but one runs on the tiny random-weight model (`--model PATH`): its replies are
byte soup but deterministic under greedy decoding, and it makes hundreds of tokens per
second. `test_default_model_streams_real_text` runs the built-in SmolLM2.
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

pytest_plugins = ["server_fixtures"]
pytestmark = pytest.mark.timeout(180)

MULLAMA = str(Path(sys.executable).with_name("mullama"))
GREEDY = ["--temperature", "0", "--max-tokens", "24"]
# A raw prompt whose greedy tiny-model continuation runs thousands of tokens without an
# end-of-generation token (test_long_prompt_runs_to_max_tokens checks it).
LONG_RAW = ["--raw", "--temperature", "0", "1, 2, 3, 4,"]


def mullama(
    *args: str, stdin: str | None = None, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MULLAMA, *args],
        input=stdin,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def tiny(tiny_model_path: Path, engine_name: str) -> list[str]:
    """The tiny model's flags, on each engine in turn."""
    return ["--model", str(tiny_model_path), "--engine", engine_name, "--ctx-size", "8192"]


def _stats_line(stderr: str) -> str:
    (line,) = [line for line in stderr.splitlines() if "generation:" in line]
    return line


def _stat(stderr: str, label: str) -> str:
    match = re.search(rf"{label}: (\S+)", _stats_line(stderr))
    assert match, stderr
    return match.group(1)


def test_run_streams_a_reply(tiny):
    """Text arrives on stdout while the generation still runs, flushed per event."""
    proc = subprocess.Popen(
        [MULLAMA, "run", *tiny, *LONG_RAW, "--max-tokens", "600"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        first = proc.stdout.read1(65536)
        assert first
        assert proc.poll() is None, "the first text came only when the process ended"
        rest = proc.stdout.read()
        assert proc.wait(60) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (first + rest).endswith(b"\n")
    assert b"Traceback" not in proc.stderr.read()


@pytest.fixture(scope="module")
def say_hi(tiny) -> str:
    """The greedy reply to "Say hi." (chat template), streamed."""
    result = mullama("run", *tiny, *GREEDY, "Say hi.")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert "Traceback" not in result.stderr
    return result.stdout


def test_no_stream_prints_the_same_text(tiny, say_hi):
    buffered = mullama("run", *tiny, *GREEDY, "--no-stream", "Say hi.")
    assert buffered.returncode == 0, buffered.stderr
    assert buffered.stdout == say_hi


def test_dash_reads_the_prompt_from_stdin(tiny, say_hi):
    other = mullama("run", *tiny, *GREEDY, "-", stdin="Say bye.")
    assert other.returncode == 0, other.stderr
    assert other.stdout != say_hi  # so equal outputs below mean equal prompts
    from_stdin = mullama("run", *tiny, *GREEDY, "-", stdin="Say hi.")
    assert from_stdin.stdout == say_hi
    # No prompt and piped stdin: stdin is the prompt too.
    piped = mullama("run", *tiny, *GREEDY, stdin="Say hi.")
    assert piped.stdout == say_hi


def test_verbose_statistics_and_prompt_flags(tiny, engine_name):
    """--verbose reports on stderr only (the engine that ran, too); --raw drops the chat
    template, --system adds one message, which the prompt token counts show."""
    plain = mullama("run", *tiny, *GREEDY, "--verbose", "Hello")
    assert plain.returncode == 0, plain.stderr
    assert f"mullama: engine: {engine_name} on " in plain.stderr
    stats = _stats_line(plain.stderr)
    for field in ("prompt:", "tok/s", "first token:", "peak memory:", "finish: length"):
        assert field in stats
    assert int(_stat(plain.stderr, "generation")) == 24
    assert "loaded tiny" in plain.stderr
    assert "generation:" not in plain.stdout and "mullama:" not in plain.stdout

    raw = mullama("run", *tiny, *GREEDY, "--verbose", "--raw", "Hello")
    system = mullama("run", *tiny, *GREEDY, "--verbose", "--system", "You are a pirate.", "Hello")
    tokens = [int(_stat(r.stderr, "prompt")) for r in (raw, plain, system)]
    assert tokens[0] < tokens[1] < tokens[2], tokens


def test_long_reply_with_progress_updates(tiny):
    """With --verbose and stdout not a terminal, progress lines arrive during the reply; the
    long raw prompt runs to --max-tokens."""
    # Long enough to outlast the 1 s progress interval on the fastest engine (llama.cpp
    # makes about 1500 tiny-model tokens a second here).
    result = mullama("run", *tiny, *LONG_RAW, "--max-tokens", "6000", "--verbose")
    assert result.returncode == 0, result.stderr
    assert int(_stat(result.stderr, "generation")) == 6000
    assert "finish: length" in _stats_line(result.stderr)
    progress = [line for line in result.stderr.splitlines() if "progress:" in line]
    assert progress, result.stderr
    counts = [int(re.search(r"progress: (\d+) tokens", line).group(1)) for line in progress]
    assert counts == sorted(counts) and counts[-1] <= 6000


def test_stop_flags_cut_the_reply(tiny, say_hi):
    reference = say_hi.rstrip("\n")
    # A stop text from inside the reply: the output must end right before its first match.
    stop = next(
        reference[i : i + 2]
        for i in range(3, len(reference) - 2)
        if reference[i : i + 2].isascii() and reference[i : i + 2].isprintable()
    )
    stopped = mullama("run", *tiny, *GREEDY, "--stop", stop, "--stop", "zzz-never", "Say hi.")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.rstrip("\n") == reference[: reference.index(stop)]


def test_seed_and_sampling_flags(tiny):
    def sample(seed: str) -> str:
        result = mullama(
            "run",
            *tiny,
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
            "32",
            "--seed",
            seed,
            "Hi",
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    first = sample("3")
    assert sample("3") == first
    assert sample("4") != first


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--top-p", "2", "Hi"], 2, "top_p"),
        (["--max-tokens", "many", "Hi"], 2, "--max-tokens"),
        (["--no-such-flag", "Hi"], 2, "unrecognized"),
        (["   "], 2, "empty"),
        (["--model", "no-such-model", "Hi"], 3, "no-such-model"),
        (["--max-tokens", "100000", "Hi"], 5, "context"),
    ],
)
def test_errors_have_distinct_exit_codes_and_one_line(tiny, args, code, message):
    model = [] if "--model" in args else tiny
    result = mullama("run", *model, *args)
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
    assert "broken.gguf" in result.stderr


def test_timeout_exits_with_code_4(tiny):
    result = mullama("run", *tiny, *LONG_RAW, "--timeout", "300", "--max-tokens", "5000")
    assert result.returncode == 4, result.stderr
    # Which deadline it was, and the flag that moves it.
    assert "timed out after 300 ms" in result.stderr
    assert "--timeout" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_no_default_deadline():
    """Without --timeout a reply may take as long as it needs (StreamConfig's 30 s default
    would cut long replies on slow machines); --timeout sets one; --help says so."""
    from mullama.cli.common import make_config
    from mullama.cli.parser import CLI_TIMEOUT_MS, build_parser

    assert CLI_TIMEOUT_MS == 0
    assert make_config(build_parser().parse_args(["run", "Hi"])).timeout_ms == 0
    assert make_config(build_parser().parse_args(["chat"])).timeout_ms == 0
    assert make_config(build_parser().parse_args(["run", "--timeout", "50", "Hi"])).timeout_ms == 50
    shown = " ".join(mullama("run", "--help").stdout.split())
    assert "--timeout MS give up a reply after MS milliseconds (default 0: no limit)" in shown


def test_first_word_naming_a_model_is_the_model(tiny, tiny_model_path, tmp_path):
    """`mullama run MODEL PROMPT`, as `ollama run` has it: a file, or a name from the
    models directory (with a tag), is the model; the rest is the prompt."""
    greedy = ["-v", "--temperature", "0", "--max-tokens", "6"]
    flagged = mullama("run", *tiny, *greedy, "Say hi.")
    assert flagged.returncode == 0, flagged.stderr
    as_word = mullama("run", str(tiny_model_path), *greedy, "Say", "hi.")
    assert as_word.returncode == 0, as_word.stderr
    assert "loaded tiny" in as_word.stderr
    assert as_word.stdout == flagged.stdout
    assert _stat(as_word.stderr, "prompt") == _stat(flagged.stderr, "prompt")

    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / "mytiny.gguf").symlink_to(tiny_model_path)
    by_name = mullama(
        "run", "mytiny:latest", *greedy, "Say hi.", env={"MULLAMA_MODELS": str(models_dir)}
    )
    assert by_name.returncode == 0, by_name.stderr
    assert "loaded mytiny" in by_name.stderr
    assert by_name.stdout == flagged.stdout


@pytest.mark.parametrize(
    "argv, model, prompt",
    [
        (["run", "Say hi."], None, ["Say hi."]),  # prose stays the prompt
        (["run", "smollm2", "Say", "hi."], "smollm2", ["Say", "hi."]),
        (["run", "smollm2:135m"], "smollm2:135m", []),  # a chat with that model
        (["run", "--", "smollm2", "is", "small"], None, ["smollm2", "is", "small"]),
        (["run", "-m", "x.gguf", "smollm2", "hi"], "x.gguf", ["smollm2", "hi"]),
        (["run", "smollm2:nosuchtag", "hi"], None, ["smollm2:nosuchtag", "hi"]),
        (["run", "-"], None, ["-"]),
    ],
)
def test_which_first_words_are_models(argv, model, prompt):
    from mullama.cli.parser import build_parser
    from mullama.cli.run import take_model_word

    args = build_parser().parse_args(argv)
    take_model_word(args, argv)
    assert (args.model, args.prompt) == (model, prompt)


def test_prompt_flag_keeps_a_model_name_as_text(tiny, tiny_model_path):
    greedy = ["-v", "--temperature", "0", "--max-tokens", "2", *tiny]
    flagged = mullama("run", *greedy, "--prompt", str(tiny_model_path))
    dashes = mullama("run", *greedy, "--", str(tiny_model_path))
    assert flagged.returncode == dashes.returncode == 0, flagged.stderr + dashes.stderr
    assert _stat(flagged.stderr, "prompt") == _stat(dashes.stderr, "prompt")
    twice = mullama("run", *greedy, "--prompt", "a", "b")
    assert twice.returncode == 2 and "twice" in twice.stderr


def _run_bytes(args: list[str | bytes], stdin: bytes | None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [MULLAMA, *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    "args, stdin, what",
    [
        (["run", b"\xff"], None, b"argument 2"),
        (["run", "--system", b"caf\xe9", "Hi"], None, b"argument 3"),
        (["run", "-"], b"caf\xe9 au lait", b"standard input"),
        (["run"], b"\xff\xfe", b"standard input"),
        (["chat"], b"Hi\n\xff\n", b"standard input"),
    ],
)
def test_input_that_is_not_utf8_is_a_usage_error(tiny, args, stdin, what):
    result = _run_bytes([*args, *tiny], stdin)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.decode().strip().splitlines()[-1:]
    assert line.startswith("mullama: error: ") and "not valid UTF-8" in line
    assert what in result.stderr
    assert b"Traceback" not in result.stderr


def test_debug_shows_the_traceback():
    result = mullama("run", "--debug", "--model", "no-such-model", "Hi")
    assert result.returncode == 3
    assert "Traceback" in result.stderr


def test_sigint_exits_with_code_130(tiny):
    proc = subprocess.Popen(
        [MULLAMA, "run", *tiny, *LONG_RAW, "--max-tokens", "5000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        # A parent that ignores SIGINT (a background job of a non-interactive shell) would
        # make the child ignore it too: the child gets Ctrl+C's default disposition itself.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout.read(1)  # generating
        proc.send_signal(signal.SIGINT)  # as Ctrl+C sends it
        assert proc.wait(30) == 130
        stderr = proc.stderr.read().decode()
        assert "interrupted" in stderr
        assert "Traceback" not in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_closed_pipe_stops_quietly(tiny):
    proc = subprocess.Popen(
        [MULLAMA, "run", *tiny, *LONG_RAW, "--max-tokens", "5000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout.read(1)  # output arrives while the generation runs
    proc.stdout.close()
    assert proc.wait(60) == 0
    assert b"Traceback" not in proc.stderr.read()


def test_slow_reader_backpressures_the_generation(tiny, poll):
    """Piped into a reader that stops reading, the process blocks on the full pipe and stops
    computing (its CPU time stops growing) instead of buffering the reply."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    # Fill the pipe but for a few bytes, so the reply fills it within a few dozen tokens.
    filler = b"#" * 4000
    os.write(write_end, filler)
    proc = subprocess.Popen(
        # Thousands of tokens: computed without backpressure, they keep the CPU busy for
        # far longer than _cpu_settles waits.
        [MULLAMA, "run", *tiny, *LONG_RAW, "--max-tokens", "8000"],
        stdout=write_end,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    os.close(write_end)
    try:
        assert poll(lambda: _unread_bytes(read_end) > len(filler), 60), "no reply"
        # Not reading: once the pipe and the stream buffer (64 tokens) are full, the forward
        # pass must pause.
        assert _cpu_settles(proc.pid), "the process kept computing with nobody reading"
        assert proc.poll() is None
        assert os.read(read_end, len(filler)) == filler
        assert os.read(read_end, 100)  # the reply, resumed
        os.close(read_end)  # the reader leaves: the process ends quietly
        read_end = -1
        assert proc.wait(60) == 0
        assert b"Traceback" not in proc.stderr.read()
    finally:
        if read_end >= 0:
            os.close(read_end)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _unread_bytes(fd: int) -> int:
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_settles(pid: int, window_s: float = 0.5, attempts: int = 40) -> bool:
    """True once the process used under 5% of a core over a whole window."""
    for _ in range(attempts):
        before = _cpu_seconds(pid)
        time.sleep(window_s)
        if _cpu_seconds(pid) - before < 0.05 * window_s:
            return True
    return False


# -- the built-in model ---------------------------------------------------------------------------
def test_default_model_streams_real_text():
    """`mullama run PROMPT` with no --model: SmolLM2 answers in words."""
    result = mullama("run", "--temperature", "0", "--max-tokens", "8", "--verbose", "Hi!")
    assert result.returncode == 0, result.stderr
    assert "loaded smollm2" in result.stderr
    assert re.search(r"[A-Za-z]{2,}", result.stdout), result.stdout
    assert int(_stat(result.stderr, "generation")) <= 8


def test_the_default_engine_is_auto_and_verbose_says_why(tiny_model_path):
    result = mullama(
        "run",
        "--model",
        str(tiny_model_path),
        *GREEDY,
        "--verbose",
        "Hi",
        env={"MULLAMA_ENGINE": ""},
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"mullama: engine: \S+ on \S+ \(auto: ", result.stderr), result.stderr


def test_an_unknown_engine_is_a_usage_error(tiny_model_path):
    result = mullama("run", "--model", str(tiny_model_path), "--engine", "tpu", "Hi")
    assert result.returncode == 2
    assert "invalid choice: 'tpu'" in result.stderr


def test_a_context_size_below_one_is_a_usage_error(tiny_model_path):
    result = mullama("run", "--model", str(tiny_model_path), "--ctx-size", "0", "Hi")
    assert result.returncode == 2
    assert "--ctx-size must be at least 1" in result.stderr


def test_run_and_chat_load_one_sequence_and_serve_a_batch(tiny, tiny_model_path):
    """`run` and `chat` stream one reply at a time, so their model holds one sequence's caches;
    `serve` keeps its batch."""
    from mullama.cli.common import load_model
    from mullama.cli.parser import build_parser
    from mullama.server.defaults import DEFAULT_MAX_CONCURRENT

    for argv in (["run", *tiny, "Hi"], ["chat", *tiny]):
        _, model = load_model(build_parser().parse_args(argv))
        try:
            assert model.engine.max_sequences == 1, argv[0]
        finally:
            model.close()
    serve = build_parser().parse_args(["serve", "--model", str(tiny_model_path)])
    assert serve.parallel == DEFAULT_MAX_CONCURRENT > 1
