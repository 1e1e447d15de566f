"""Every stop path works at every moment: while a long prompt is read, and at a cut that falls
inside a character (issue 9, items 2 and 3)."""

from __future__ import annotations

import threading
import time

import pytest

from mullama import Context, GenerationError, StreamConfig, StreamTimeoutError

# The promise: a stop requested while the prompt is read takes effect within this long.
PROMPT_STOP_BUDGET_S = 0.5
LONG_PROMPT_IDS = 10_000


def _long_prompt(model) -> list[int]:
    words = model.tokenize(" the quick brown fox jumps over the lazy dog")
    return (words * (LONG_PROMPT_IDS // len(words) + 1))[:LONG_PROMPT_IDS]


def _wait_for(predicate, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.005)


def _prefilling(ctx: Context) -> bool:
    job = ctx.last_generation
    return job is not None and job.is_running() and job.tokens_computed == 0


def _assert_read_stopped(job, since: float, after: str) -> None:
    """`job` stops within the budget from `since`, before its first token."""
    assert job.join(timeout=30)
    took = time.monotonic() - since
    assert job.tokens_computed == 0
    assert took < PROMPT_STOP_BUDGET_S, f"the prompt read went on {took:.2f} s after {after}"


def test_close_stops_a_long_prompt_read_at_once(default_model) -> None:
    ctx = Context(default_model, truncate=True)
    stream = ctx.generate_stream(_long_prompt(default_model), max_tokens=8, timeout_ms=0)
    _wait_for(lambda: ctx.cached_tokens)  # some chunks are in: the read is under way
    job = ctx.last_generation
    assert _prefilling(ctx)
    closed_at = time.monotonic()
    stream.close()
    _assert_read_stopped(job, closed_at, "close()")


def test_the_deadline_stops_a_long_prompt_read_at_once(default_model) -> None:
    ctx = Context(default_model, truncate=True)
    started = time.monotonic()
    stream = ctx.generate_stream(_long_prompt(default_model), max_tokens=8, timeout_ms=700)
    with pytest.raises(StreamTimeoutError):
        for _ in stream:
            pass
    job = ctx.last_generation
    assert job.join(timeout=30)
    ended = time.monotonic() - started
    assert job.tokens_computed == 0, "the deadline passed while the prompt was read"
    assert ended < 0.7 + PROMPT_STOP_BUDGET_S, f"compute ended {ended:.2f} s after the start"


def test_a_newer_generation_interrupts_a_prompt_read(default_model) -> None:
    ctx = Context(default_model, truncate=True)
    old = ctx.generate_stream(_long_prompt(default_model), max_tokens=8, timeout_ms=0)
    _wait_for(lambda: ctx.cached_tokens)
    job = ctx.last_generation
    started = time.monotonic()
    ctx.stop()
    assert time.monotonic() - started < PROMPT_STOP_BUDGET_S
    assert not job.is_running()
    with pytest.raises(GenerationError, match="replaced"):
        next(iter(old))


def test_another_stream_is_not_blocked_behind_a_prompt_read(default_model) -> None:
    reader = Context(default_model, truncate=True)
    stream = reader.generate_stream(_long_prompt(default_model), max_tokens=4, timeout_ms=0)
    try:
        _wait_for(lambda: reader.cached_tokens)
        other = Context(default_model).generate("Hi", max_tokens=4, temperature=0.0)
        assert other.tokens
        # The short request finished while the long prompt was still being read.
        assert _prefilling(reader)
    finally:
        stream.close()
        reader.wait_idle(30)


EMOJI_PROMPT = "Emoji list: 😀 😃 😄 😁 😆"


@pytest.mark.parametrize("max_tokens", [1, 2, 3, 5, 7])
def test_a_cut_inside_an_emoji_shows_no_replacement_character(default_model, max_tokens) -> None:
    ctx = Context(default_model)
    stream = ctx.generate_stream(EMOJI_PROMPT, max_tokens=max_tokens, temperature=0.0)
    texts = [event.text for event in stream]
    assert all("\ufffd" not in text for text in texts), texts
    whole = ctx.generate(EMOJI_PROMPT, max_tokens=max_tokens, temperature=0.0)
    assert "\ufffd" not in whole.text
    raw = b"".join(default_model.token_bytes(t) for t in whole.tokens)
    # What was shown is the complete characters of the reply's bytes; the rest was counted.
    shown = whole.text.encode()
    assert raw.startswith(shown)
    assert stream.stats["incomplete_bytes_dropped"] == len(raw) - len(shown)


def test_the_cut_rule_holds_when_a_stream_is_stopped_from_another_thread(default_model) -> None:
    ctx = Context(default_model)
    config = StreamConfig(max_tokens=64, temperature=0.0, timeout_ms=0)
    stream = ctx.generate_stream(EMOJI_PROMPT, config)
    first = next(iter(stream))
    threading.Thread(target=stream.close).start()
    texts = [first.text] + [event.text for event in stream]
    assert all("\ufffd" not in text for text in texts)


def test_ctrl_c_stops_mullama_run_while_it_reads_a_long_prompt(default_model) -> None:
    import selectors
    import signal
    import subprocess

    words = " ".join(["the quick brown fox jumps over the lazy dog"] * 340)  # ~3000 words
    child = subprocess.Popen(
        ["mullama", "run", "--raw", "--verbose", "--max-tokens", "4", words],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        # A parent that ignores SIGINT (a background job) would make the child ignore it too.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        selector = selectors.DefaultSelector()
        selector.register(child.stderr, selectors.EVENT_READ)
        deadline = time.monotonic() + 120
        seen = ""
        # A progress line with no token yet: the model is reading the prompt.
        while "progress: 0 tokens" not in seen:
            assert time.monotonic() < deadline, f"no prefill progress seen: {seen!r}"
            if selector.select(timeout=1.0):
                line = child.stderr.readline()
                assert line, f"mullama run ended early: {seen!r}"
                seen += line
        sent_at = time.monotonic()
        child.send_signal(signal.SIGINT)
        code = child.wait(timeout=30)
        took = time.monotonic() - sent_at
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert code == 130
    # The compute stops within the prompt-stop budget; the rest is the interpreter's exit.
    assert took < PROMPT_STOP_BUDGET_S + 0.5, f"exited {took:.2f} s after Ctrl+C"


def test_a_client_leaving_stops_the_servers_long_prompt_read_at_once(
    default_model, monkeypatch
) -> None:
    """The server's form of the close: a non-streaming client that hangs up while its long
    prompt is read stops the read within the budget (issue 9, item 2: a disconnect)."""
    from server_fixtures import DEFAULT_NAME, raw_post, record_starts, start_server

    running = start_server(default_model, DEFAULT_NAME)
    try:
        served = running.app.state.mullama.served
        started = record_starts(running, monkeypatch)[1]
        sentence = " the quick brown fox jumps over the lazy dog"
        # As long a prompt as the served context holds (4096 or 8192 tokens by engine).
        repeats = (served.n_ctx - 64) // len(default_model.tokenize(sentence))
        body = {
            "model": DEFAULT_NAME,
            "prompt": sentence * repeats,
            "max_tokens": 4,
            "temperature": 0,
        }
        client = raw_post(running.url, "/v1/completions", body)
        try:
            _wait_for(lambda: started)
            job = started[0].job
            # Some chunks are in: the read is under way.
            _wait_for(lambda: job.prefill_tokens and len(job.prompt_left) < job.prefill_tokens - 8)
            assert job.is_running() and job.tokens_computed == 0
        finally:
            left_at = time.monotonic()
            client.close()
        _assert_read_stopped(job, left_at, "the client left")
    finally:
        running.stop()
