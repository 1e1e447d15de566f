"""AsyncModel / AsyncContext on real models, under asyncio and trio: the loop keeps ticking
while the model generates, backpressure pauses the forward pass, every kind of cancellation
stops it and frees the context, deadlines fire, and concurrent streams on one model produce
exactly their sequential output.

Most tests use the tiny random-weight model from conftest (hundreds of tokens per second);
the heartbeat, chat and concurrency tests also run the built-in SmolLM2."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from heartbeat import heartbeat_lateness
from mullama import (
    AsyncContext,
    AsyncModel,
    Context,
    Model,
    Progress,
    StreamConfig,
    StreamTimeoutError,
)
from mullama.producer import running_jobs

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]

PROMPTS = [
    "The capital of France is",
    "List three fruits:",
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
]
GREEDY = StreamConfig(temperature=0.0, max_tokens=12, timeout_ms=0)  # no deadline: a loaded box
# The tiny model's greedy continuation of this prompt runs to max_tokens (no EOS).
LONG = "Once upon a time"
TINY_PROMPTS = ["abc", "def f(n):", "1234", "on the"]
TINY_GREEDY = StreamConfig(temperature=0.0, max_tokens=40, timeout_ms=0)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def model(tiny_gguf: Path, engine_name: str) -> Model:
    """The tiny random-weight Llama (fast), on each engine in turn."""
    return Model.load(tiny_gguf, engine=engine_name)


@pytest.fixture(scope="module")
def tiny_sequential(model: Model) -> dict[str, list[int]]:
    """Each tiny prompt's greedy tokens, generated alone through the sync API."""
    return {p: Context(model).generate(p, TINY_GREEDY).tokens for p in TINY_PROMPTS}


@pytest.fixture(scope="module")
def smollm2(default_model: Model) -> Model:
    return default_model


@pytest.fixture(scope="module")
def sequential(smollm2: Model) -> dict[str, list[int]]:
    """Each prompt's greedy SmolLM2 tokens, generated alone through the sync API."""
    return {p: Context(smollm2).generate(p, GREEDY).tokens for p in PROMPTS}


async def producers_idle(timeout_s: float = 60.0) -> None:
    """Waits until no generation job runs (a producer has no event to await)."""
    with anyio.fail_after(timeout_s):
        while running_jobs():
            await anyio.sleep(0.002)


async def wait_for_plateau(read, settle_s: float = 0.2, timeout_s: float = 20.0) -> int:
    with anyio.fail_after(timeout_s):
        value = read()
        while True:
            await anyio.sleep(settle_s)
            again = read()
            if again == value:
                return value
            value = again


# -- loading and generating ----------------------------------------------------------------
async def test_load_runs_off_the_event_loop(tiny_gguf: Path, engine_name: str):
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.002)
            ticks += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        loaded = await AsyncModel.load(tiny_gguf, engine=engine_name)
        tg.cancel_scope.cancel()
    assert isinstance(loaded.model, Model)
    assert loaded.model.engine.name == engine_name
    assert ticks >= 1  # the loop ran while the model loaded


async def test_generate_stream_and_generate_match_the_sync_api(model: Model, tiny_sequential):
    amodel = AsyncModel(model)
    for prompt in TINY_PROMPTS[:2]:
        expected = tiny_sequential[prompt]
        stream = amodel.generate_stream(prompt, TINY_GREEDY)
        tokens = [t.token async for t in stream if t.token is not None]
        assert tokens[: len(expected)] == expected
        assert stream.finish_reason in ("stop", "length")
        assert stream.tokens_generated >= len(expected)
        assert stream.tokens_per_second() > 0
        result = await amodel.generate(prompt, TINY_GREEDY)
        assert result.tokens == expected
        assert result.text == Context(model).generate(prompt, TINY_GREEDY).text


async def test_async_context_reuses_its_cache(model: Model):
    ctx = AsyncContext(model, n_ctx=256)
    first = await ctx.generate(LONG, temperature=0.0, max_tokens=5)
    await ctx.generate(model.tokenize(LONG) + first.tokens + [50, 60], max_tokens=3)
    assert ctx.last_prefill_tokens < 5  # only the new tokens were prefilled


async def test_chat_messages_match_the_sync_api(smollm2: Model):
    messages = [{"role": "user", "content": "Say hello."}]
    expected = Context(smollm2).chat(messages, temperature=0.0, max_tokens=6)
    result = await AsyncModel(smollm2).chat(messages, temperature=0.0, max_tokens=6)
    assert result.tokens == expected.tokens
    assert result.text == expected.text


@pytest.mark.parametrize("which", ["tiny", "smollm2"])
async def test_heartbeat_keeps_ticking_while_the_model_generates(model: Model, which: str, request):
    target = model if which == "tiny" else request.getfixturevalue("smollm2")
    amodel = AsyncModel(target)
    max_tokens = 150 if which == "tiny" else 12
    received = 0

    async def consume() -> None:
        nonlocal received
        received = 0
        async for _ in amodel.generate_stream(LONG, temperature=0.0, max_tokens=max_tokens):
            received += 1

    heartbeat = await heartbeat_lateness(consume)
    assert received >= max_tokens
    heartbeat.check(min_ticks=3)


# -- backpressure --------------------------------------------------------------------------
async def test_a_slow_reader_pauses_the_forward_pass(model: Model):
    buffer_size = 2
    ctx = AsyncContext(model)
    stream = ctx.generate_stream(LONG, temperature=0.0, max_tokens=200, buffer_size=buffer_size)
    async with stream:
        consumed = 0
        for _ in range(3):
            await stream.__anext__()
            consumed += 1
            paused_at = await wait_for_plateau(lambda: stream.tokens_generated)
            assert 1 <= paused_at - consumed <= buffer_size + 1
            job = ctx.context.last_generation
            assert job is not None and job.is_running()  # blocked, not finished
            # Besides the pushed tokens, at most the one step in flight was computed.
            assert job.tokens_computed <= paused_at + 1
    await producers_idle()


async def test_memory_stays_flat_while_the_reader_stalls(model: Model):
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    stream = AsyncModel(model).generate_stream(LONG, temperature=0.0, max_tokens=200)
    async with stream:
        await stream.__anext__()
        await wait_for_plateau(lambda: stream.tokens_generated)
        before = rss()
        await anyio.sleep(0.3)
        assert rss() - before < 4 * 1024 * 1024
        assert stream.tokens_generated <= 1 + 64 + 1
    await producers_idle()


# -- cancellation --------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["break", "aclose", "cancel_scope", "move_on_after"])
async def test_cancelling_stops_the_producer_and_frees_the_context(
    model: Model, tiny_sequential, how: str
):
    ctx = AsyncContext(model)
    stream = ctx.generate_stream(LONG, temperature=0.0, max_tokens=200)
    seen = 0
    pushed_when_last_seen = 0

    async def consume() -> None:
        nonlocal seen, pushed_when_last_seen
        async for _ in stream:
            seen += 1
            pushed_when_last_seen = stream.tokens_generated
            if how == "break" and seen == 3:
                break

    if how == "break":
        async with stream:
            await consume()
    elif how == "aclose":
        for _ in range(3):
            await stream.__anext__()
        pushed_when_last_seen = stream.tokens_generated
        await stream.aclose()
    elif how == "cancel_scope":
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            with anyio.fail_after(60):
                while seen < 3:
                    await anyio.sleep(0)
            tg.cancel_scope.cancel()
    else:
        with anyio.move_on_after(0.0):
            await consume()
    assert stream.finish_reason == "cancelled"
    await producers_idle()
    # The reader kept up with the model, so nothing was buffered when it left: the
    # producer pushed at most the one token it was computing.
    assert stream.tokens_generated <= pushed_when_last_seen + 1
    assert stream.tokens_generated < 200

    # The context is free again and its cache consistent: the next request is exact.
    prompt = TINY_PROMPTS[0]
    result = await ctx.generate(prompt, TINY_GREEDY)
    assert result.tokens == tiny_sequential[prompt]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_asyncio_task_cancel_stops_the_producer(model: Model, caplog):
    stream = AsyncModel(model).generate_stream(LONG, temperature=0.0, max_tokens=200)
    seen = 0

    async def consume() -> None:
        nonlocal seen
        async for _ in stream:
            seen += 1

    task = asyncio.create_task(consume())
    with anyio.fail_after(60):
        while seen < 2:
            await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stream.finish_reason == "cancelled"
    await producers_idle()
    assert stream.tokens_generated < 200
    assert "destroyed but it is pending" not in caplog.text


async def test_a_new_request_on_a_busy_context_waits_off_the_loop(model: Model, tiny_sequential):
    ctx = AsyncContext(model)
    first = ctx.generate_stream(LONG, temperature=0.0, max_tokens=200, buffer_size=1)
    await first.__anext__()
    # The first generation still runs (blocked on its full buffer); the second replaces it.
    prompt = TINY_PROMPTS[1]
    second = ctx.generate_stream(prompt, TINY_GREEDY)
    tokens = [t.token async for t in second if t.token is not None]
    assert tokens[: len(tiny_sequential[prompt])] == tiny_sequential[prompt]
    await first.aclose()
    await producers_idle()


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_500_cancelled_model_streams_leak_nothing(model: Model, caplog):
    amodel = AsyncModel(model)

    async def cancel_streams(n: int) -> None:
        for i in range(n):
            stream = amodel.generate_stream(TINY_PROMPTS[i % 4], temperature=0.0, max_tokens=50)
            if i % 2:
                async with stream:
                    await stream.__anext__()
            else:
                with anyio.move_on_after(0):
                    async for _ in stream:
                        pass
        await producers_idle()

    # The first round sizes the reused producer threads (and MLX's per-thread state);
    # a second, larger round must not add any thread or file descriptor.
    await cancel_streams(100)
    threads, fds = os_threads(), open_fds()
    await cancel_streams(500)
    assert os_threads() <= threads
    assert open_fds() <= fds
    assert "destroyed but it is pending" not in caplog.text


# -- timeouts ------------------------------------------------------------------------------
async def test_timeout_raises_at_the_deadline_and_stops_the_producer(model: Model):
    amodel = AsyncModel(model)
    started = time.monotonic()  # the deadline runs from the stream's creation
    stream = amodel.generate_stream(
        LONG, temperature=0.0, max_tokens=240, timeout_ms=100, buffer_size=1
    )
    with pytest.raises(StreamTimeoutError):
        async for _ in stream:
            await anyio.sleep(0.01)  # a slow reader: the deadline passes mid-stream
    assert 0.1 <= time.monotonic() - started <= 0.1 + 0.1
    assert stream.finish_reason == "timeout"
    await producers_idle()
    assert stream.tokens_generated < 240


# -- concurrency ---------------------------------------------------------------------------
async def test_concurrent_streams_on_one_model_match_sequential_runs(model: Model, tiny_sequential):
    amodel = AsyncModel(model)
    results: dict[str, list[int]] = {}

    async def run(prompt: str) -> None:
        tokens = []
        async for token in amodel.generate_stream(prompt, TINY_GREEDY, buffer_size=1):
            if token.token is not None:
                tokens.append(token.token)
            await anyio.sleep(0)  # interleave the streams token by token
        results[prompt] = tokens[: len(tiny_sequential[prompt])]

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for prompt in TINY_PROMPTS * 2:
                tg.start_soon(run, prompt)
    assert results == tiny_sequential


async def test_concurrent_smollm2_streams_match_sequential_runs(smollm2: Model, sequential):
    amodel = AsyncModel(smollm2)
    results: dict[str, list[int]] = {}

    async def run(prompt: str) -> None:
        results[prompt] = (await amodel.generate(prompt, GREEDY)).tokens

    with anyio.fail_after(240):
        async with anyio.create_task_group() as tg:
            for prompt in PROMPTS:
                tg.start_soon(run, prompt)
    assert results == sequential


async def test_async_streams_and_sync_threads_share_one_model(model: Model, tiny_sequential):
    amodel = AsyncModel(model)
    results: dict[str, list[int]] = {}

    def sync_run(prompt: str) -> None:
        results["sync " + prompt] = Context(model).generate(prompt, TINY_GREEDY).tokens

    async def async_run(prompt: str) -> None:
        results["async " + prompt] = (await amodel.generate(prompt, TINY_GREEDY)).tokens

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for prompt in TINY_PROMPTS:
                tg.start_soon(anyio.to_thread.run_sync, sync_run, prompt)
                tg.start_soon(async_run, prompt)
    for prompt in TINY_PROMPTS:
        assert results["sync " + prompt] == tiny_sequential[prompt]
        assert results["async " + prompt] == tiny_sequential[prompt]


# -- progress ------------------------------------------------------------------------------
def assert_ticks_on_the_interval(updates: list[Progress], elapsed: float, interval: float) -> None:
    # A tick may be skipped when the machine stalls the reader past a whole interval, but
    # never comes early, and ticks stay on the interval grid.
    assert int(elapsed / interval) - 3 <= len(updates) <= int(elapsed / interval)
    slots = [int(u.elapsed_s / interval) for u in updates]
    assert slots == sorted(set(slots)) and slots[0] >= 1
    assert [u.tokens for u in updates] == sorted(u.tokens for u in updates)


async def test_progress_updates_while_the_model_generates(model: Model):
    updates: list[Progress] = []
    started = time.monotonic()
    stream = AsyncModel(model).generate_stream(
        LONG,
        temperature=0.0,
        max_tokens=150,
        buffer_size=1,
        on_progress=updates.append,
        progress_interval_s=0.05,
    )
    async for _ in stream:
        await anyio.sleep(0.005)  # a reader that takes a while
    elapsed = time.monotonic() - started
    assert_ticks_on_the_interval(updates, elapsed, 0.05)
    assert [u.tokens for u in updates] == sorted(u.tokens for u in updates)
    assert 0 < updates[-1].tokens <= 150


def test_sync_context_reports_progress(model: Model):
    updates: list[Progress] = []
    started = time.monotonic()
    stream = Context(model).generate_stream(
        LONG,
        temperature=0.0,
        max_tokens=150,
        buffer_size=1,
        on_progress=updates.append,
        progress_interval_s=0.05,
    )
    with stream:
        for _ in stream:
            time.sleep(0.005)  # a reader that takes a while
    elapsed = time.monotonic() - started
    assert_ticks_on_the_interval(updates, elapsed, 0.05)
    assert 0 < updates[-1].tokens <= 150
    result = Context(model).generate(LONG, temperature=0.0, max_tokens=5, on_progress=print)
    assert len(result.tokens) == 5
