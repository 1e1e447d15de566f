"""`AsyncTokenStream`: a core TokenStream consumed from asyncio or trio (through anyio).

Waiting never blocks the event loop and costs no thread hop: `__anext__` takes a ready token
with the core's non-blocking `try_next()`; when none is ready it waits for the core's wake-up
byte on a socketpair (`anyio.wait_readable`), bounded by the stream's deadline and the next
progress update.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import anyio
import anyio.lowlevel

from mullama._core import Token, TokenStream
from mullama._wakeup import WakeupSocket
from mullama.progress import (
    ProgressCallback,
    ProgressClock,
    deadline_of,
    progress_clock,
    wait_timeout,
)

# A consumer that always finds a token ready never waits, so it yields to the event loop
# after this many tokens in a row: other tasks keep running and cancellation is noticed,
# while the cost of a scheduler round trip is shared by many tokens.
CHECKPOINT_EVERY = 16

StreamOpener = Callable[[], Awaitable[TokenStream]]


class AsyncTokenStream:
    """Async iterator of `Token` events.

    Use `async with` (or `await aclose()`) to end it early; breaking out of `async for`
    over an unreferenced stream, cancelling the task or scope, or an `__anext__` interrupted
    by cancellation also close it, and the producer stops within one token. A stream that
    is garbage-collected unclosed is closed then, without touching the event loop.
    """

    def __init__(
        self,
        stream: TokenStream | None,
        *,
        on_progress: ProgressCallback | None = None,
        progress_interval_s: float | None = None,
        opener: StreamOpener | None = None,
    ) -> None:
        self._stream: TokenStream | None = None
        self._wakeup: WakeupSocket | None = None
        self._opener: StreamOpener | None = opener
        self._closed = False
        self._waiting = False
        self._since_checkpoint = 0
        self._deadline: float | None = None
        self._clock: ProgressClock | None = progress_clock(on_progress, progress_interval_s)
        self._progress_is_async = self._clock is not None and _is_async_callable(on_progress)
        if stream is not None:
            self._attach(stream)
        elif opener is None:
            raise TypeError("AsyncTokenStream needs a TokenStream or an opener")

    @classmethod
    def opened_later(
        cls,
        opener: StreamOpener,
        *,
        on_progress: ProgressCallback | None = None,
        progress_interval_s: float | None = None,
    ) -> AsyncTokenStream:
        """A stream whose core stream is opened by `await opener()` on first iteration (used
        when opening must first wait for something that would block the loop)."""
        return cls(
            None, on_progress=on_progress, progress_interval_s=progress_interval_s, opener=opener
        )

    def _attach(self, stream: TokenStream) -> None:
        if not isinstance(stream, TokenStream):
            raise TypeError(
                f"AsyncTokenStream wraps a mullama TokenStream, got {type(stream).__name__}"
            )
        self._wakeup = WakeupSocket(stream)
        self._stream = stream
        self._deadline = deadline_of(stream)

    # -- iteration -------------------------------------------------------------------------
    def __aiter__(self) -> AsyncTokenStream:
        return self

    async def __anext__(self) -> Token:
        stream = self._stream
        if stream is None:
            stream = await self._open()
        try:
            self._since_checkpoint += 1
            if self._since_checkpoint >= CHECKPOINT_EVERY:
                self._since_checkpoint = 0
                await anyio.lowlevel.checkpoint()
            while True:
                try:
                    event = stream.try_next()
                except StopIteration:
                    self._release()
                    raise StopAsyncIteration from None
                clock = self._clock
                if clock is not None:
                    now = time.monotonic()
                    if clock.due(now):
                        await self._emit_progress(now)
                if event is not None:
                    return event
                await self._wait()
        except StopAsyncIteration:
            raise
        except anyio.BusyResourceError:
            raise  # another task is reading this stream; the stream itself is fine
        except BaseException:
            # Cancelled, timed out, failed: a read that was interrupted cannot be resumed,
            # so the producer is told to stop now rather than at garbage collection.
            self._release()
            raise

    async def _open(self) -> TokenStream:
        opener, self._opener = self._opener, None
        if self._closed or opener is None:
            raise StopAsyncIteration
        try:
            stream = await opener()
        except BaseException:
            self._closed = True
            raise
        if self._closed:  # closed by another task while opening
            stream.close()
            raise StopAsyncIteration
        self._attach(stream)
        return stream

    async def _wait(self) -> None:
        wakeup = self._wakeup
        if wakeup is None:  # closed: the next try_next reports the end
            return
        if self._waiting:
            raise anyio.BusyResourceError("reading from")
        self._since_checkpoint = 0
        timeout = wait_timeout(self._deadline, self._clock, time.monotonic())
        self._waiting = True
        try:
            if timeout is None:
                await anyio.wait_readable(wakeup.reader)
            else:
                with anyio.move_on_after(timeout):
                    await anyio.wait_readable(wakeup.reader)
        except anyio.ClosedResourceError:
            return  # aclose() from another task
        finally:
            self._waiting = False
            if self._closed:
                # aclose() left the sockets to this task: closing them while this task was
                # still registered with the event loop could confuse the loop's fd table.
                self._close_wakeup()
        if not self._closed:
            wakeup.drain()

    async def _emit_progress(self, now: float) -> None:
        clock = self._clock
        assert clock is not None and self._stream is not None
        result = clock.callback(clock.take(now, self._stream))
        if self._progress_is_async:
            await result  # type: ignore[misc]

    # -- closing ---------------------------------------------------------------------------
    def _release(self) -> None:
        """Closes the core stream (the producer stops) and the wake-up sockets. Never touches
        the event loop unless a task is waiting on this stream."""
        self._closed = True
        self._opener = None
        stream = self._stream
        if stream is not None:
            stream.close()
        if self._waiting:
            # The waiting task wakes with ClosedResourceError and closes the sockets itself.
            wakeup = self._wakeup
            if wakeup is not None:
                anyio.notify_closing(wakeup.reader)
        else:
            self._close_wakeup()

    def _close_wakeup(self) -> None:
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None:
            wakeup.close()

    async def aclose(self) -> None:
        """Stops the stream: the producer stops within one token. Idempotent."""
        self._release()
        await anyio.lowlevel.cancel_shielded_checkpoint()

    async def __aenter__(self) -> AsyncTokenStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # Garbage collection may run on any thread, with or without a running loop: only
        # the core stream and the sockets are closed here, never anything of the loop's.
        if getattr(self, "_closed", True):
            return
        self._closed = True
        stream = self._stream
        if stream is not None:
            stream.close()
        self._close_wakeup()

    # -- what happened ---------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def finish_reason(self) -> str | None:
        """Why the stream ended ("stop", "length", "timeout", "cancelled", "error"), or None."""
        return None if self._stream is None else self._stream.finish_reason

    @property
    def stop_sequence(self) -> str | None:
        return None if self._stream is None else self._stream.stop_sequence

    @property
    def tokens_generated(self) -> int:
        """Tokens the producer has generated so far."""
        return 0 if self._stream is None else self._stream.tokens_generated

    def tokens_per_second(self) -> float:
        """Generation speed (tokens after the first, per second since the first)."""
        return 0.0 if self._stream is None else self._stream.tokens_per_second()

    @property
    def stats(self) -> dict[str, Any]:
        """Latest statistics (same keys as the Token attributes)."""
        return {} if self._stream is None else self._stream.stats

    def __repr__(self) -> str:
        if self._stream is None:
            return "AsyncTokenStream(closed)" if self._closed else "AsyncTokenStream(opening)"
        return f"Async{self._stream!r}"


def _is_async_callable(fn: object) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object whose __call__ is async
    )
