"""The served model: a pool of Contexts and async token streams for request handlers.

Each request takes a Context from the pool (the idle one sharing the longest prefix with
its prompt, so a conversation's next turn reuses its KV cache) and joins the model's batch
(see `mullama.scheduler`): at most `max_concurrent` generations at once, then up to
`max_queue` waiting in arrival order, and beyond that `ServerBusy`. Tokens reach the
event loop through `mullama.aio.AsyncTokenStream` (no thread hop per token), so a cancelled
request (client gone) closes its stream within one token.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from mullama import StreamTimeoutError
from mullama.loader.names import same_model
from mullama.request import GenerationRequest
from mullama.server.defaults import (
    DEFAULT_MAX_CONCURRENT,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_TOKENS,
    DEFAULT_TIMEOUT_MS,
)

if TYPE_CHECKING:
    from mullama.context import Context
    from mullama.model import Model
    from mullama.scheduler import GenerationJob


class ServerBusy(Exception):
    """Every place in the batch and in the queue is taken: try again later."""


class Generation:
    """One running generation: an async iterator of Token events.

    Ends normally, raises the stream's MullamaError, or is stopped early with `aclose()`
    (shielded, so it completes inside a cancelled task: the producer stops within one
    token and the Context goes back to the pool)."""

    def __init__(
        self,
        served: ServedModel,
        context: Context,
        stream: Any,
        prompt_ids: list[int],
        job: GenerationJob | None,
    ) -> None:
        from mullama.aio import AsyncTokenStream

        self._served = served
        self._context = context
        self._stream = AsyncTokenStream(stream)
        self.prompt_ids = prompt_ids
        self.job = job
        """The producer job (its `tokens_computed`, `is_running()`, `join()`)."""
        self.timed_out = False
        self.last = None
        self.released = False
        """Whether the stream is closed and its Context back in the pool."""

    def __aiter__(self) -> Generation:
        return self

    async def __anext__(self) -> Any:
        try:
            event = await self._stream.__anext__()
        except StopAsyncIteration:
            await self.aclose()
            raise
        except StreamTimeoutError:
            # The deadline cuts the reply short; handlers report it as a finish reason.
            self.timed_out = True
            await self.aclose()
            raise StopAsyncIteration from None
        except BaseException:
            await self.aclose()
            raise
        self.last = event
        return event

    @property
    def finish_reason(self) -> str | None:
        if self.timed_out:
            return "timeout"
        reason = self._stream.finish_reason
        if reason is None and self.last is not None:
            reason = self.last.finish_reason
        return reason

    @property
    def stop_sequence(self) -> str | None:
        return self._stream.stop_sequence

    @property
    def tokens_generated(self) -> int:
        return self._stream.tokens_generated

    @property
    def cached_prompt_tokens(self) -> int:
        """Prompt tokens whose KV was reused from the Context's cache (not computed again)."""
        if self.job is None:
            return 0
        return max(0, len(self.prompt_ids) - self.job.prefill_tokens)

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._stream.aclose()
        if not self.released:
            self.released = True
            self._served._release(self._context)


class ServedModel:
    """A loaded Model as the server exposes it, under `name` (and a few aliases)."""

    def __init__(
        self,
        model: Model,
        name: str,
        *,
        n_ctx: int | None = None,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        max_queue: int = DEFAULT_MAX_QUEUE,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
    ) -> None:
        self.model = model
        self.name = name
        self.n_ctx = n_ctx or model.n_ctx
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.waiting = 0
        """Requests waiting for a generation slot (at most max_queue)."""
        self.default_max_tokens = default_max_tokens
        self.timeout_ms = timeout_ms
        self.created = int(Path(model.path).stat().st_mtime) if Path(model.path).exists() else 0
        self._idle: list[Context] = []
        self._pool_lock = threading.Lock()
        self._slots = anyio.Semaphore(max_concurrent)
        # Starting a generation (tokenize, wait for the previous job on a pooled Context)
        # runs in a worker thread; waiting for tokens does not.
        self._limiter = anyio.CapacityLimiter(max_concurrent + 4)
        self.tokens_served = 0

    @property
    def max_n_ctx(self) -> int:
        """The largest context a request may ask for (Ollama's num_ctx): the model's."""
        return self.model.n_ctx

    def matches(self, requested: str | None) -> bool:
        """Whether a request's `model` names this model (no name: the served one)."""
        return same_model(requested, self.name, self.model.path)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Holds one of the max_concurrent generation slots (waits for a free one), for
        generations that run outside `start` (the wait-k WebSocket). Raises ServerBusy as
        `start` does."""
        await self._take_slot()
        try:
            yield
        finally:
            self._slots.release()

    async def _take_slot(self) -> None:
        """Waits for a generation slot (anyio's semaphore serves waiters in arrival order);
        ServerBusy at once when every slot is taken and max_queue requests already wait."""
        if self._slots.value == 0 and self.waiting >= self.max_queue:
            raise ServerBusy(
                f"the server is busy: {self.max_concurrent} generations run and "
                f"{self.waiting} wait (--parallel, --max-queue); try again later"
            )
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1

    async def start(
        self, request: GenerationRequest, *, n_ctx: int | None = None, default_length: bool = False
    ) -> Generation:
        """Opens a generation on a Context of `n_ctx` tokens (default: the server's); with
        `default_length` the reply may run to the server's default length or the end of the
        context, whichever comes first. Raises MullamaError (ConfigError, ContextLengthError,
        ...) before anything is streamed, so handlers can still answer 400. Waits for a free
        slot first (at most max_concurrent generations run at once); cancelling the wait
        starts nothing. Raises ServerBusy, starting nothing, when every slot is taken and
        max_queue requests already wait."""
        await self._take_slot()
        try:
            return await anyio.to_thread.run_sync(
                self._start_blocking,
                request,
                n_ctx or self.n_ctx,
                default_length,
                limiter=self._limiter,
            )
        except BaseException:
            self._slots.release()
            raise

    def prompt_ids(self, request: GenerationRequest) -> list[int]:
        if request.messages is not None:
            return self.model.chat_ids(request.messages)
        assert request.prompt is not None  # generation_request checked: one of the two
        return self.model.prompt_ids(request.prompt)

    def _start_blocking(
        self, request: GenerationRequest, n_ctx: int, default_length: bool
    ) -> Generation:
        ids = self.prompt_ids(request)
        config = request.config
        if default_length:
            room = n_ctx - len(ids)
            config = config.replace(max_tokens=max(1, min(config.max_tokens, room)))
        # Tokenized once: the Context gets the ids.
        request = dataclasses.replace(request, prompt=ids, messages=None, config=config)
        context = self._checkout(ids, n_ctx)
        try:
            stream = context.open_stream(request)
        except BaseException:
            self._return(context)
            raise
        return Generation(self, context, stream, ids, context.last_generation)

    def _checkout(self, ids: Sequence[int], n_ctx: int) -> Context:
        with self._pool_lock:
            fitting = [c for c in self._idle if c.n_ctx == n_ctx]
        if fitting:
            # One trip to the scheduler for all of them (a Context's cached tokens are read
            # between two steps), and not under the pool lock the event loop also takes.
            shared = self.model.scheduler.call(
                lambda: [_common_prefix(c.cached_tokens, ids) for c in fitting]
            )
            ranked = sorted(zip(shared, range(len(fitting)), strict=True), reverse=True)
            with self._pool_lock:
                for _, i in ranked:
                    if fitting[i] in self._idle:  # another request may have taken it since
                        self._idle.remove(fitting[i])
                        return fitting[i]
        from mullama.context import Context  # imports MLX: only once a model is served

        return Context(self.model, n_ctx)

    def _return(self, context: Context) -> None:
        with self._pool_lock:
            self._idle.append(context)
            # Requests with their own num_ctx add Contexts of other sizes: keep the pool
            # bounded by dropping the least recently used.
            del self._idle[: max(0, len(self._idle) - self.max_concurrent)]

    def _release(self, context: Context) -> None:
        self._return(context)
        self._slots.release()


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
