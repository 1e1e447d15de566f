"""Progress updates (`on_progress` every `progress_interval_s`) for async and sync streams."""

from __future__ import annotations

import math
import time

import anyio
import anyio.lowlevel
import pytest

from mullama import ConfigError, Progress, StreamConfig, StreamTimeoutError
from mullama.progress import ProgressTokenStream, with_progress
from mullama.testing import astream_from_pieces, stream_from_pieces

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


def words(n: int) -> list[bytes]:
    return [f"w{i} ".encode() for i in range(n)]


@pytest.mark.anyio
async def test_progress_reports_at_the_interval_while_tokens_flow():
    updates: list[Progress] = []
    stream = astream_from_pieces(
        words(60),
        StreamConfig(max_tokens=100),
        delay_s=0.005,
        on_progress=updates.append,
        progress_interval_s=0.05,
    )
    start = time.monotonic()
    text = "".join([t.text async for t in stream])
    elapsed = time.monotonic() - start
    assert text == b"".join(words(60)).decode()
    expected = math.floor(elapsed / 0.05)
    assert expected - 2 <= len(updates) <= expected
    for i, update in enumerate(updates):
        assert update.elapsed_s >= 0.05 * (i + 1) - 0.001
    tokens = [u.tokens for u in updates]
    assert tokens == sorted(tokens) and tokens[-1] > 0
    assert updates[-1].tokens_per_second > 0


@pytest.mark.anyio
async def test_progress_reports_during_a_silent_wait_and_accepts_async_callbacks():
    updates: list[Progress] = []

    async def on_progress(progress: Progress) -> None:
        await anyio.lowlevel.checkpoint()
        updates.append(progress)

    stream = astream_from_pieces(
        words(1), delay_s=0.3, on_progress=on_progress, progress_interval_s=0.05
    )
    first = await stream.__anext__()
    assert first.text == "w0 "
    await stream.aclose()
    assert len(updates) >= 4  # about 6 ticks before the first token
    # All but the last tick (which may coincide with the token's arrival) saw no token yet.
    assert all(u.tokens == 0 for u in updates[:-1])


@pytest.mark.anyio
async def test_progress_callback_errors_propagate_and_close_the_stream():
    def broken(progress: Progress) -> None:
        raise ValueError("callback failed")

    stream = astream_from_pieces(
        words(10), delay_s=0.05, on_progress=broken, progress_interval_s=0.01
    )
    with pytest.raises(ValueError, match="callback failed"):
        async for _ in stream:
            pass
    assert stream.closed


@pytest.mark.anyio
async def test_bad_progress_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="progress_interval_s"):
        astream_from_pieces(words(3), on_progress=print, progress_interval_s=0)
    with pytest.raises(ConfigError, match="progress_interval_s"):
        astream_from_pieces(words(3), on_progress=print, progress_interval_s=float("nan"))
    with pytest.raises(ConfigError, match="without on_progress"):
        astream_from_pieces(words(3), progress_interval_s=1.0)
    with pytest.raises(ConfigError, match="callable"):
        astream_from_pieces(words(3), on_progress="print")  # type: ignore[arg-type]


def test_sync_progress_reports_at_the_interval_and_during_silent_waits():
    updates: list[Progress] = []
    stream = with_progress(stream_from_pieces(words(3), delay_s=0.1), updates.append, 0.03)
    assert isinstance(stream, ProgressTokenStream)
    start = time.monotonic()
    with stream:
        text = "".join(t.text for t in stream)
    elapsed = time.monotonic() - start
    assert text == "w0 w1 w2 "
    assert stream.finish_reason == "stop"
    expected = math.floor(elapsed / 0.03)
    assert expected - 2 <= len(updates) <= expected
    assert updates[0].tokens == 0  # the first tick came before the first token
    assert [u.tokens for u in updates] == sorted(u.tokens for u in updates)


def test_sync_progress_stream_times_out_at_the_deadline():
    source = stream_from_pieces(words(3), StreamConfig(timeout_ms=100), delay_s=30.0)
    stream = with_progress(source, lambda p: None, 0.02)
    start = time.monotonic()
    with pytest.raises(StreamTimeoutError):
        next(stream)
    assert 0.09 <= time.monotonic() - start <= 0.2


def test_with_progress_without_a_callback_is_the_stream_itself():
    source = stream_from_pieces(words(3))
    assert with_progress(source, None) is source
    source.close()
