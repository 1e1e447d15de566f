"""`AsyncWaitkStream`: a wait-k generation (see `mullama.waitk`) consumed from asyncio or trio.

Tokens arrive through an `AsyncTokenStream` (the loop never blocks). An async iterable source
is read by a task of the stream's own task group, which lives inside `async with`, so such a
source needs `async with stream:` around the loop; a str or a plain iterable does not.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable
from types import TracebackType
from typing import Any

import anyio

from mullama._core import ConfigError, TokenStream
from mullama.aio.stream import AsyncTokenStream
from mullama.waitk.events import WaitkEvent, WaitkEvents
from mullama.waitk.metrics import WaitkMetrics
from mullama.waitk.source import Source, pump_async_source

WaitkOpener = Callable[[], Awaitable[tuple[TokenStream, WaitkEvents, str]]]


class AsyncWaitkStream:
    """Async iterator of WaitkEvents; `async with` (or `aclose()`) ends it early."""

    def __init__(self, opener: WaitkOpener, source: Source) -> None:
        self._opener: WaitkOpener | None = opener
        self._source = source
        self._stream: AsyncTokenStream | None = None
        self._events: WaitkEvents | None = None
        self._kind: str | None = None
        self._tasks: anyio.abc.TaskGroup | None = None
        self._closed = False

    async def _open(self) -> None:
        opener, self._opener = self._opener, None
        if opener is None:
            return
        stream, events, kind = await opener()
        self._events, self._kind = events, kind
        try:
            self._stream = AsyncTokenStream(stream)
        except BaseException:
            stream.close()
            raise

    async def __aenter__(self) -> AsyncWaitkStream:
        await self._open()
        if self._kind == "async":
            assert self._events is not None
            self._tasks = anyio.create_task_group()
            await self._tasks.__aenter__()
            source = self._source
            assert isinstance(source, AsyncIterable)
            self._tasks.start_soon(pump_async_source, source, self._events.job.words)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        await self.aclose()
        tasks, self._tasks = self._tasks, None
        if tasks is None:
            return None
        tasks.cancel_scope.cancel()
        return await tasks.__aexit__(exc_type, exc, tb)

    def __aiter__(self) -> AsyncWaitkStream:
        return self

    async def __anext__(self) -> WaitkEvent:
        if self._closed:
            raise StopAsyncIteration
        await self._open()
        if self._kind == "async" and self._tasks is None:
            await self.aclose()
            raise ConfigError(
                "an async iterable source is read inside `async with`: write "
                "`async with ctx.generate_stream_waitk(source) as stream: async for ...`"
            )
        assert self._stream is not None and self._events is not None
        event = await self._stream.__anext__()
        return self._events.convert(event)

    async def aclose(self) -> None:
        """Stops the generation (the producer stops within one token) and the source."""
        self._closed = True
        self._opener = None
        if self._events is not None:
            self._events.job.words.close()
        if self._stream is not None:
            await self._stream.aclose()

    @property
    def metrics(self) -> WaitkMetrics | None:
        """The schedule and latency so far (None before the stream has opened)."""
        return None if self._events is None else self._events.metrics()

    @property
    def job(self) -> Any:
        return None if self._events is None else self._events.job

    @property
    def finish_reason(self) -> str | None:
        return None if self._stream is None else self._stream.finish_reason
