"""`AsyncModel` and `AsyncContext`: generation for asyncio and trio applications.

Loading runs in a worker thread. Starting a generation (tokenize, open the stream, start the
producer) is cheap and runs on the event loop; the forward pass runs in the model's scheduler,
and tokens reach the loop through `AsyncTokenStream`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from mullama._core import ConfigError, StreamConfig
from mullama.aio.stream import AsyncTokenStream
from mullama.aio.waitk import AsyncWaitkStream
from mullama.chat import Message
from mullama.context import Context
from mullama.model import Model
from mullama.producer import run_on_producer_thread
from mullama.request import GenerationRequest, takes_request
from mullama.result import GenerationResult, ResultCollector
from mullama.waitk import WaitkRequest, open_waitk, takes_waitk_request

if TYPE_CHECKING:
    from mullama.remote import AsyncRemoteModel


class _WholeReplies:
    """`generate` and `chat` on top of a class's `stream_request`."""

    model: Model

    def stream_request(self, request: GenerationRequest) -> AsyncTokenStream:
        raise NotImplementedError

    @takes_request
    def generate_stream(self, request: GenerationRequest) -> AsyncTokenStream:
        """Streams Token events for a raw `prompt` (text or ids) or chat `messages`."""
        return self.stream_request(request)

    @takes_request
    async def generate(self, request: GenerationRequest) -> GenerationResult:
        """Generates the whole reply and returns it with its statistics."""
        return await collect(self.stream_request(request), self.model)

    async def chat(
        self,
        messages: Sequence[Message],
        config: StreamConfig | None = None,
        **overrides: Any,
    ) -> GenerationResult:
        """One assistant turn for `messages` (the model's chat template applies)."""
        return await self.generate(None, config, messages=messages, **overrides)


class AsyncModel(_WholeReplies):
    """A loaded model for async code: `model = await AsyncModel.load(path)`.

    Every `generate_stream` / `generate` call runs on a fresh `Context` (no KV reuse between
    calls), so concurrent calls never interfere; they share the model's batch. Use
    `AsyncContext` for a conversation that reuses its KV cache.
    """

    def __init__(self, model: Model) -> None:
        if not isinstance(model, Model):
            raise ConfigError(f"AsyncModel wraps a mullama Model, got {type(model).__name__}")
        self.model = model

    @classmethod
    async def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        engine: str | None = None,
        n_ctx: int | None = None,
    ) -> AsyncModel:
        """Loads like `Model.load(path, engine=..., n_ctx=...)`, in a worker thread so the
        event loop keeps running."""
        # Loading may run MLX: keep it on a long-lived thread (see run_on_producer_thread).
        load = functools.partial(Model.load, path, engine=engine, n_ctx=n_ctx)
        model = await anyio.to_thread.run_sync(run_on_producer_thread, load)
        return cls(model)

    @staticmethod
    def connect(
        url: str, *, model: str, api_key: str | None = None, **options: Any
    ) -> AsyncRemoteModel:
        """The async twin of `Model.connect` (see mullama.remote)."""
        from mullama.remote import connect_async

        return connect_async(url, model=model, api_key=api_key, **options)

    def stream_request(self, request: GenerationRequest) -> AsyncTokenStream:
        return _wrap(Context(self.model).open_stream(request), request)

    def __repr__(self) -> str:
        return f"Async{self.model!r}"


class AsyncContext(_WholeReplies):
    """A conversation on one model whose KV cache is reused across calls (see `Context`).

    Like `Context` it runs one generation at a time: starting another ends the previous
    stream. If the previous producer is still finishing its step, the new stream waits for
    it in a worker thread on its first iteration instead of blocking the event loop.
    """

    def __init__(
        self, model: AsyncModel | Model, n_ctx: int | None = None, *, truncate: bool = False
    ) -> None:
        if isinstance(model, AsyncModel):
            model = model.model
        self.context = Context(model, n_ctx, truncate=truncate)

    @property
    def model(self) -> Model:  # type: ignore[override]
        return self.context.model

    @property
    def n_ctx(self) -> int:
        return self.context.n_ctx

    @property
    def cached_tokens(self) -> list[int]:
        return self.context.cached_tokens

    @property
    def last_prefill_tokens(self) -> int:
        return self.context.last_prefill_tokens

    async def reset(self) -> None:
        """Forgets the cached conversation (waits for a running generation in a thread)."""
        await anyio.to_thread.run_sync(self.context.reset)

    @takes_waitk_request
    def generate_stream_waitk(self, request: WaitkRequest) -> AsyncWaitkStream:
        """The async twin of `Context.generate_stream_waitk`; `source` may also be an async
        iterable of text chunks (then iterate inside `async with stream:`)."""
        ctx = self.context

        async def open_when_idle() -> Any:
            if ctx.busy:
                # Ending the previous generation joins its producer: off the event loop.
                await anyio.to_thread.run_sync(ctx.stop)
            return open_waitk(ctx.model, ctx.start_job, request, allow_async=True)

        return AsyncWaitkStream(open_when_idle, request.source)

    def stream_request(self, request: GenerationRequest) -> AsyncTokenStream:
        ctx = self.context
        if not ctx.busy:
            return _wrap(ctx.open_stream(request), request)

        async def open_when_idle() -> Any:
            # Ending the previous generation waits for it to leave the batch, which may be in the
            # middle of a forward pass: wait for that off the event loop.
            await anyio.to_thread.run_sync(ctx.stop)
            return ctx.open_stream(request)

        return AsyncTokenStream.opened_later(
            open_when_idle,
            on_progress=request.on_progress,
            progress_interval_s=request.progress_interval_s,
        )

    def __repr__(self) -> str:
        return f"AsyncContext({self.model!r}, n_ctx={self.n_ctx})"


def _wrap(stream: Any, request: GenerationRequest) -> AsyncTokenStream:
    try:
        return AsyncTokenStream(
            stream,
            on_progress=request.on_progress,
            progress_interval_s=request.progress_interval_s,
        )
    except BaseException:
        stream.close()  # the producer must not run on
        raise


async def collect(stream: AsyncTokenStream, model: Model) -> GenerationResult:
    """Consumes `stream` into a GenerationResult, as `Context.generate` does."""
    collector = ResultCollector(model.end_of_generation_ids)
    async with stream:
        async for event in stream:
            collector.add(event)
    return collector.result(stream.finish_reason, stream.stop_sequence)
