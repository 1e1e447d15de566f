"""Progress updates for apps that show "thinking..." while a long reply is produced.

`on_progress(Progress)` is called every `progress_interval_s` seconds while a stream is being
consumed, from the consumer's side (the thread or task iterating the stream), also while it
waits for a token, so a long silent prefill still reports. Checking the clock is the only
per-token cost, and only for streams that asked for progress.
"""

from __future__ import annotations

import math
import select
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mullama._core import ConfigError, Token, TokenStream
from mullama._wakeup import WakeupSocket

DEFAULT_PROGRESS_INTERVAL_S = 1.0

# Waits are never shorter than this, so a timer firing a hair before the core's deadline
# cannot make the consumer spin.
_MIN_WAIT_S = 0.0005


@dataclass(frozen=True)
class Progress:
    """A progress update: how far the stream got."""

    tokens: int
    """Tokens the model has generated so far."""
    tokens_per_second: float
    """Generation speed so far (0.0 before the second token)."""
    elapsed_s: float
    """Seconds since the stream started (prefill included)."""


ProgressCallback = Callable[[Progress], None | Awaitable[None]]


class ProgressClock:
    """Decides when the next progress update is due and builds it."""

    __slots__ = ("callback", "interval_s", "_start", "next_at")

    def __init__(self, on_progress: ProgressCallback, interval_s: float | None) -> None:
        if not callable(on_progress):
            raise ConfigError(f"on_progress must be callable, got {type(on_progress).__name__}")
        if interval_s is None:
            interval_s = DEFAULT_PROGRESS_INTERVAL_S
        if (
            isinstance(interval_s, bool)
            or not isinstance(interval_s, (int, float))
            or not math.isfinite(interval_s)
            or interval_s <= 0
        ):
            raise ConfigError(
                f"invalid progress_interval_s = {interval_s!r}: must be a finite number of "
                "seconds > 0"
            )
        self.callback = on_progress
        self.interval_s = float(interval_s)
        self._start = time.monotonic()
        self.next_at = self._start + self.interval_s

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def take(self, now: float, stream: TokenStream) -> Progress:
        """The update due at `now`; schedules the next one on the interval grid (missed
        ticks are skipped, not replayed)."""
        missed = math.floor((now - self.next_at) / self.interval_s)
        self.next_at += (missed + 1) * self.interval_s
        return Progress(
            tokens=stream.tokens_generated,
            tokens_per_second=stream.tokens_per_second(),
            elapsed_s=now - self._start,
        )


def progress_clock(
    on_progress: ProgressCallback | None, progress_interval_s: float | None
) -> ProgressClock | None:
    """The clock for these keyword arguments; None when no progress was asked for."""
    if on_progress is None:
        if progress_interval_s is not None:
            raise ConfigError("progress_interval_s was given without on_progress")
        return None
    return ProgressClock(on_progress, progress_interval_s)


def deadline_of(stream: TokenStream) -> float | None:
    """The stream's deadline on the time.monotonic() clock; None without one."""
    left = stream.time_left()
    return None if left is None else time.monotonic() + left


def wait_timeout(deadline: float | None, clock: ProgressClock | None, now: float) -> float | None:
    """How long the consumer may wait before it must look again (deadline or progress)."""
    until = deadline
    if clock is not None and (until is None or clock.next_at < until):
        until = clock.next_at
    if until is None:
        return None
    return max(until - now, _MIN_WAIT_S)


class ProgressTokenStream:
    """A sync TokenStream that also calls `on_progress` every `interval_s` seconds.

    The callback runs in the thread iterating the stream, between tokens or while it waits
    for one. Everything else (`close`, `finish_reason`, `with`, ...) is the wrapped stream's.
    """

    def __init__(
        self, stream: TokenStream, on_progress: ProgressCallback, interval_s: float | None = None
    ) -> None:
        self._clock = ProgressClock(on_progress, interval_s)
        self._stream = stream
        self._deadline = deadline_of(stream)
        self._wakeup: WakeupSocket | None = WakeupSocket(stream)

    def __iter__(self) -> ProgressTokenStream:
        return self

    def __next__(self) -> Token:
        stream = self._stream
        clock = self._clock
        while True:
            try:
                event = stream.try_next()
            except BaseException:
                self._release_wakeup()
                raise
            now = time.monotonic()
            if clock.due(now):
                self._emit(clock.take(now, stream))
            if event is not None:
                return event
            self._wait(now)

    def _wait(self, now: float) -> None:
        wakeup = self._wakeup
        if wakeup is None:  # closed from another thread: try_next now reports the end
            return
        timeout = wait_timeout(self._deadline, self._clock, now)
        try:
            readable, _, _ = select.select([wakeup.reader], [], [], timeout)
        except (OSError, ValueError):  # closed by another thread while waiting
            return
        if readable:
            wakeup.drain()

    def _emit(self, progress: Progress) -> None:
        try:
            result = self._clock.callback(progress)
        except BaseException:
            self.close()
            raise
        if result is not None and hasattr(result, "__await__"):
            self.close()
            raise ConfigError("an async on_progress callback needs an async stream")

    def _release_wakeup(self) -> None:
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None:
            wakeup.close()

    def close(self) -> None:
        self._stream.close()
        self._release_wakeup()

    def __enter__(self) -> ProgressTokenStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        # An abandoned stream must not leave its sockets (or its producer) behind.
        if getattr(self, "_wakeup", None) is not None:
            self.close()

    def __getattr__(self, name: str) -> Any:
        # finish_reason, stop_sequence, stats, tokens_generated, ... of the wrapped stream.
        return getattr(self._stream, name)

    def __repr__(self) -> str:
        return f"ProgressTokenStream({self._stream!r}, every {self._clock.interval_s} s)"


def with_progress(
    stream: TokenStream,
    on_progress: ProgressCallback | None,
    progress_interval_s: float | None = None,
) -> TokenStream | ProgressTokenStream:
    """`stream` with progress updates; `stream` itself when no callback was given."""
    if on_progress is None:
        progress_clock(on_progress, progress_interval_s)  # rejects an interval alone
        return stream
    return ProgressTokenStream(stream, on_progress, progress_interval_s)
