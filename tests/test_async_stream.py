"""AsyncTokenStream over synthetic producers (the real core, a Rust producer thread), under
asyncio and trio: delivery, never blocking the loop, backpressure, cancellation in every
form, leaks, timeouts and progress updates."""

from __future__ import annotations

import asyncio
import gc
import os
import time
import warnings

import anyio
import pytest

from heartbeat import heartbeat_lateness
from mullama import AsyncTokenStream, StreamConfig, StreamTimeoutError
from mullama.testing import astream_from_pieces, stream_from_pieces

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


def words(n: int) -> list[bytes]:
    return [f"w{i} ".encode() for i in range(n)]


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def wait_until(predicate, timeout_s: float = 5.0) -> None:
    """Polls `predicate` (state owned by another thread, which has no event to await)."""
    with anyio.fail_after(timeout_s):
        while not predicate():
            await anyio.sleep(0.001)


async def wait_for_plateau(read, settle_s: float = 0.1, timeout_s: float = 5.0) -> int:
    """The value `read()` settles on: unchanged for `settle_s`."""
    with anyio.fail_after(timeout_s):
        value = read()
        while True:
            await anyio.sleep(settle_s)
            again = read()
            if again == value:
                return value
            value = again


# -- delivery ------------------------------------------------------------------------------
async def test_delivers_every_token_in_order_then_ends():
    pieces = words(500)
    stream = astream_from_pieces(pieces, StreamConfig(max_tokens=1000))
    texts = [token.text async for token in stream]
    assert "".join(texts) == b"".join(pieces).decode()
    assert stream.finish_reason == "stop"
    assert stream.tokens_generated == 500
    assert stream.tokens_per_second() > 0
    assert stream.closed
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()


async def test_utf8_split_across_tokens_and_stop_sequences_go_through_the_core():
    pieces = [b"caf", b"\xc3", b"\xa9 ", b"\xf0\x9f", b"\x98\x80", b" EN", b"D more"]
    config = StreamConfig(stop_sequences=["END"], max_tokens=100)
    stream = astream_from_pieces(pieces, config)
    text = "".join([t.text async for t in stream])
    assert text == "café 😀 "
    assert stream.finish_reason == "stop"
    assert stream.stop_sequence == "END"


async def test_async_with_closes_the_stream_and_the_producer():
    async with astream_from_pieces(words(10_000), StreamConfig(max_tokens=20_000)) as stream:
        first = await stream.__anext__()
        assert first.text == "w0 "
    assert stream.closed
    assert stream.finish_reason == "cancelled"
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()


async def test_wraps_only_token_streams():
    with pytest.raises(TypeError, match="TokenStream"):
        AsyncTokenStream(iter([]))  # type: ignore[arg-type]


async def test_max_tokens_ends_with_length():
    stream = astream_from_pieces(words(100), StreamConfig(max_tokens=7))
    assert len([t async for t in stream]) == 7
    assert stream.finish_reason == "length"


# -- never blocking the event loop ---------------------------------------------------------


@pytest.mark.parametrize("delay_s", [0.0, 0.0005, 0.003])
async def test_heartbeat_keeps_ticking_while_a_stream_runs(delay_s: float):
    n = 100_000 if delay_s == 0.0 else int(0.4 / delay_s)
    received = 0

    async def consume() -> None:
        nonlocal received
        async for _ in astream_from_pieces(words(n), StreamConfig(max_tokens=n), delay_s):
            received += 1

    heartbeat = await heartbeat_lateness(consume)
    assert received == n
    heartbeat.check()


# -- backpressure --------------------------------------------------------------------------
async def test_slow_consumer_stops_the_producer_at_the_buffer_size():
    buffer_size = 4
    stream = astream_from_pieces(words(1000), StreamConfig(buffer_size=buffer_size))
    consumed = 0
    async with stream:
        for _ in range(3):
            await stream.__anext__()
            consumed += 1
            ahead = await wait_for_plateau(lambda: stream.tokens_generated) - consumed
            # At most buffer_size events wait (in the core or the binding's batch), plus the
            # token of the push blocked on them. The core frees the room of a batch when the
            # reader comes back for more, so the producer may pause a little earlier.
            assert 1 <= ahead <= buffer_size + 1


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def test_memory_stays_flat_while_the_consumer_does_not_read():
    # 64 pieces of 512 KiB: a producer ignoring backpressure would queue ~32 MiB of events.
    piece = 512 * 1024
    pieces = [bytes([97 + i % 26]) * piece for i in range(64)]
    stream = astream_from_pieces(pieces, StreamConfig(buffer_size=2, max_tokens=64))
    async with stream:
        await stream.__anext__()
        before = rss_bytes()
        await wait_for_plateau(lambda: stream.tokens_generated)
        assert stream.tokens_generated <= 1 + 2 + 1
        assert rss_bytes() - before < 8 * piece
        rest = [t async for t in stream]
        assert len(rest) == 63


# -- cancellation --------------------------------------------------------------------------
async def test_break_out_of_async_for_closes_an_unreferenced_stream():
    config = StreamConfig(max_tokens=100_000)
    source = stream_from_pieces(words(100_000), config, 0.001)
    async for token in AsyncTokenStream(source):
        if token.text == "w2 ":
            break
    # The loop held the only reference to the AsyncTokenStream: it is closed by now.
    assert source.finish_reason == "cancelled"
    stopped_at = source.tokens_generated
    await anyio.sleep(0.02)
    assert source.tokens_generated == stopped_at


class ProbedStream(AsyncTokenStream):
    """Notes how many tokens the producer had pushed at the moment the stream closed."""

    pushed_at_close: int | None = None

    def _release(self) -> None:
        # The one hook every closing path (aclose, break, cancellation) goes through; the
        # count is read through the public property, not the wrapped core stream.
        if self.pushed_at_close is None:
            self.pushed_at_close = self.tokens_generated
        super()._release()


def probed(delay_s: float) -> ProbedStream:
    config = StreamConfig(max_tokens=100_000)
    return ProbedStream(stream_from_pieces(words(100_000), config, delay_s))


@pytest.mark.parametrize("how", ["aclose", "cancel_scope", "move_on_after", "async_with"])
async def test_cancellation_stops_the_producer_within_one_token(how: str):
    stream = probed(0.005)
    seen = 0

    async def consume() -> None:
        nonlocal seen
        async for _ in stream:
            seen += 1
            if how == "async_with" and seen == 3:
                break

    if how == "aclose":
        for _ in range(3):
            await stream.__anext__()
            seen += 1
        await stream.aclose()
    elif how == "cancel_scope":
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await wait_until(lambda: seen >= 3)
            tg.cancel_scope.cancel()
    elif how == "move_on_after":
        with anyio.move_on_after(0.05) as scope:
            await consume()
        assert scope.cancelled_caught
    else:
        async with stream:
            await consume()
    assert seen >= 3
    assert stream.closed
    assert stream.finish_reason == "cancelled"
    # close() joined the producer thread, so its count is final: at most the one token it
    # was producing when the stream closed.
    assert stream.pushed_at_close is not None
    assert stream.tokens_generated <= stream.pushed_at_close + 1


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_asyncio_task_cancel_stops_the_producer(caplog: pytest.LogCaptureFixture):
    stream = probed(0.005)
    seen = 0

    async def consume() -> None:
        nonlocal seen
        async for _ in stream:
            seen += 1

    task = asyncio.create_task(consume())
    await wait_until(lambda: seen >= 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stream.closed
    assert stream.finish_reason == "cancelled"
    assert stream.pushed_at_close is not None
    assert stream.tokens_generated <= stream.pushed_at_close + 1
    assert "destroyed but it is pending" not in caplog.text


async def test_aclose_from_another_task_ends_a_waiting_reader():
    stream = astream_from_pieces(words(10), StreamConfig(), delay_s=10.0)
    ended = anyio.Event()
    received: list[str] = []

    async def reader() -> None:
        async for token in stream:
            received.append(token.text)
        ended.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        await anyio.sleep(0.02)  # let the reader block in its wait
        await stream.aclose()
        with anyio.fail_after(2):
            await ended.wait()
    assert received == []
    assert stream.finish_reason == "cancelled"


async def test_two_tasks_waiting_on_one_stream_is_an_error_not_a_hang():
    stream = astream_from_pieces(words(10), StreamConfig(), delay_s=10.0)
    async with stream, anyio.create_task_group() as tg:
        tg.start_soon(stream.__anext__)
        await anyio.sleep(0.02)
        with pytest.raises(anyio.BusyResourceError):
            await stream.__anext__()
        tg.cancel_scope.cancel()


async def test_500_cancelled_streams_leak_no_threads_fds_or_warnings(
    caplog: pytest.LogCaptureFixture,
):
    gc.collect()
    threads, fds = os_threads(), open_fds()
    config = StreamConfig(max_tokens=1000, buffer_size=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(500):
            stream = astream_from_pieces(words(1000), config, delay_s=0.0002 * (i % 3))
            way = i % 5
            if way == 0:
                await stream.__anext__()
                await stream.aclose()
            elif way == 1:
                async for _ in stream:
                    break
                del stream  # dropped unclosed: __del__ closes it
            elif way == 2:
                with anyio.move_on_after(0):
                    async for _ in stream:
                        pass
            elif way == 3:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(stream.__anext__)
                    tg.cancel_scope.cancel()
                await stream.aclose()
            else:
                async with stream:
                    await stream.__anext__()
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert os_threads() <= threads
    assert open_fds() <= fds
    assert "destroyed but it is pending" not in caplog.text


async def test_garbage_collected_stream_closes_producer_and_sockets():
    fds = open_fds()
    source = stream_from_pieces(words(1000), StreamConfig(max_tokens=1000), 0.001)
    stream = AsyncTokenStream(source)
    await stream.__anext__()
    assert open_fds() == fds + 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del stream
        gc.collect()
    assert caught == []
    assert open_fds() == fds
    assert source.finish_reason == "cancelled"


# -- timeouts ------------------------------------------------------------------------------
async def test_timeout_raises_from_async_for_at_the_deadline_and_stops_the_producer():
    config = StreamConfig(timeout_ms=150, max_tokens=100)
    stream = astream_from_pieces(words(100), config, delay_s=0.04)
    received = 0
    start = time.monotonic()
    with pytest.raises(StreamTimeoutError):
        async for _ in stream:
            received += 1
    elapsed = time.monotonic() - start
    assert 0.14 <= elapsed <= 0.15 + 0.1
    assert 2 <= received <= 4
    assert stream.finish_reason == "timeout"
    stopped_at = stream.tokens_generated
    await anyio.sleep(0.1)
    assert stream.tokens_generated == stopped_at


async def test_timeout_fires_even_if_no_token_ever_arrives():
    stream = astream_from_pieces(words(3), StreamConfig(timeout_ms=100), delay_s=30.0)
    start = time.monotonic()
    with pytest.raises(StreamTimeoutError):
        await stream.__anext__()
    assert 0.09 <= time.monotonic() - start <= 0.2
    assert stream.closed
