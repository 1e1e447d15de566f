"""Helpers for testing apps built on mullama: streams fed by synthetic producers through the
real core (`stream_from_pieces`), and tiny random-weight models written where you ask
(`mullama.testing.tiny_models`), so a test suite needs no real weights."""

from __future__ import annotations

from collections.abc import Sequence

from mullama._core import StreamConfig, TokenStream, spawn_piece_producer
from mullama.aio.stream import AsyncTokenStream
from mullama.progress import ProgressCallback

__all__ = ["astream_from_pieces", "stream_from_pieces"]


def stream_from_pieces(
    pieces: Sequence[bytes],
    config: StreamConfig | None = None,
    delay_s: float = 0.0,
) -> TokenStream:
    """A stream of one token per piece (token id i is ``pieces[i]``).

    A Rust thread pushes the tokens in order without holding the GIL, waiting ``delay_s``
    seconds before each, then finishes with reason ``"stop"`` unless the stream already
    ended (a stop sequence matched, max_tokens, timeout). The thread exits as soon as the
    stream is closed or dropped, and ``close()`` waits for it.
    """
    return spawn_piece_producer(list(pieces), config, delay_s)


def astream_from_pieces(
    pieces: Sequence[bytes],
    config: StreamConfig | None = None,
    delay_s: float = 0.0,
    *,
    on_progress: ProgressCallback | None = None,
    progress_interval_s: float | None = None,
) -> AsyncTokenStream:
    """The async twin of `stream_from_pieces`, for asyncio or trio code (``async for``);
    `on_progress` / `progress_interval_s` as in ``generate_stream``."""
    stream = stream_from_pieces(pieces, config, delay_s)
    try:
        return AsyncTokenStream(
            stream, on_progress=on_progress, progress_interval_s=progress_interval_s
        )
    except BaseException:
        stream.close()
        raise
