"""The served model: a pool of Contexts and async token streams for request handlers.

Each request takes a Context from the pool (the idle one sharing the longest prefix with
its prompt, so a conversation's next turn reuses its KV cache) and runs its own producer
thread; the model's FIFO forward lock interleaves the streams fairly. Tokens reach the
event loop through `mullama.aio.AsyncTokenStream` (no thread hop per token), so a cancelled
request (client gone) closes its stream within one token.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from mullama import MullamaError, StreamTimeoutError

if TYPE_CHECKING:
    from mullama.context import Context
    from mullama.model import Model

DEFAULT_MAX_TOKENS = 512
DEFAULT_TIMEOUT_MS = 600_000


@dataclass
class GenerationRequest:
    """What to generate: a raw prompt (text or ids) or chat messages, and sampling overrides
    for StreamConfig (only the fields the client set)."""

    prompt: str | list[int] | None = None
    messages: list[dict[str, Any]] | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    top_logprobs: int = 0


class Generation:
    """One running generation: an async iterator of Token events.

    Ends normally, raises the stream's MullamaError, or is stopped early with `aclose()`
    (shielded, so it completes inside a cancelled task: the producer stops within one
    token and the Context goes back to the pool)."""

    def __init__(
        self, served: ServedModel, context: Context, stream: Any, prompt_ids: list[int]
    ) -> None:
        from mullama.aio import AsyncTokenStream

        self._served = served
        self._context = context
        self._stream = AsyncTokenStream(stream)
        self.prompt_ids = prompt_ids
        self.timed_out = False
        self.last = None
        self._released = False

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

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._stream.aclose()
        if not self._released:
            self._released = True
            self._served._release(self._context)


class ServedModel:
    """A loaded Model as the server exposes it, under `name` (and a few aliases)."""

    def __init__(
        self,
        model: Model,
        name: str,
        *,
        n_ctx: int | None = None,
        max_concurrent: int = 8,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
    ) -> None:
        self.model = model
        self.name = name
        self.n_ctx = n_ctx or model.n_ctx_train
        self.max_concurrent = max_concurrent
        self.default_max_tokens = default_max_tokens
        self.timeout_ms = timeout_ms
        self.created = int(Path(model.path).stat().st_mtime) if Path(model.path).exists() else 0
        self._aliases = {name, str(model.path), Path(model.path).name, Path(model.path).stem}
        self._idle: list[Context] = []
        self._pool_lock = threading.Lock()
        self._slots = anyio.Semaphore(max_concurrent)
        # Starting a generation (tokenize, wait for the previous job on a pooled Context)
        # runs in a worker thread; waiting for tokens does not.
        self._limiter = anyio.CapacityLimiter(max_concurrent + 4)
        self.tokens_served = 0

    def matches(self, requested: str | None) -> bool:
        """Whether a request's `model` names this model (Ollama clients add ':latest')."""
        if not requested:
            return True
        return requested in self._aliases or requested.removesuffix(":latest") in self._aliases

    async def start(self, request: GenerationRequest) -> Generation:
        """Opens a generation; raises MullamaError (ConfigError, ContextLengthError, ...)
        before anything is streamed, so handlers can still answer 400."""
        await self._slots.acquire()
        try:
            return await anyio.to_thread.run_sync(
                self._start_blocking, request, limiter=self._limiter
            )
        except BaseException:
            self._slots.release()
            raise

    def prompt_ids(self, request: GenerationRequest) -> list[int]:
        if request.messages is not None:
            return self.model.chat_ids(request.messages)
        if request.prompt is None:
            raise MullamaError("a generation needs a prompt or messages")
        return self.model.prompt_ids(request.prompt)

    def _start_blocking(self, request: GenerationRequest) -> Generation:
        ids = self.prompt_ids(request)
        overrides = dict(request.overrides)
        if overrides.get("max_tokens") is None:
            room = self.n_ctx - len(ids)
            overrides["max_tokens"] = max(1, min(self.default_max_tokens, room))
        overrides.setdefault("timeout_ms", self.timeout_ms)
        context = self._checkout(ids)
        try:
            stream = context.generate_stream(ids, top_logprobs=request.top_logprobs, **overrides)
        except BaseException:
            self._return(context)
            raise
        return Generation(self, context, stream, ids)

    def _checkout(self, ids: Sequence[int]) -> Context:
        with self._pool_lock:
            if self._idle:
                best = max(
                    range(len(self._idle)),
                    key=lambda i: _common_prefix(self._idle[i].cached_tokens, ids),
                )
                return self._idle.pop(best)
        from mullama.context import Context  # imports MLX: only once a model is served

        return Context(self.model, self.n_ctx)

    def _return(self, context: Context) -> None:
        with self._pool_lock:
            self._idle.append(context)

    def _release(self, context: Context) -> None:
        self._return(context)
        self._slots.release()


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
