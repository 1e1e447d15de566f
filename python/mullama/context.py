"""`Context`: one conversation's KV cache on a Model, reused across calls by common prefix."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from mullama._core import (
    ConfigError,
    ContextLengthError,
    GenerationError,
    StreamConfig,
    TokenStream,
    open_stream,
)
from mullama.chat import Message
from mullama.engines.base import EngineSequence
from mullama.model import Model
from mullama.progress import ProgressTokenStream, with_progress
from mullama.request import GenerationRequest, takes_request
from mullama.result import GenerationResult, ResultCollector
from mullama.scheduler import GenerationJob
from mullama.waitk import WaitkRequest, WaitkStream, open_waitk, takes_waitk_request

JobBuilder = Callable[[EngineSequence, Callable[[GenerationJob], None]], GenerationJob]


class Context:
    """Owns a KV cache for `model` holding at most `n_ctx` tokens.

    Each call reuses the longest prefix it shares with the tokens already in the cache, so a
    conversation only prefills its new turn. A Context runs one generation at a time: starting
    another ends the previous stream (its consumer gets a GenerationError).
    """

    def __init__(self, model: Model, n_ctx: int | None = None, *, truncate: bool = False) -> None:
        if not isinstance(model, Model):
            raise ConfigError(f"Context needs a mullama Model, got {type(model).__name__}")
        if n_ctx is None:
            n_ctx = model.n_ctx
        if not isinstance(n_ctx, int) or isinstance(n_ctx, bool) or n_ctx < 1:
            raise ConfigError(f"invalid n_ctx = {n_ctx!r}: must be a positive integer")
        self.model = model
        self.n_ctx = n_ctx
        self.truncate = truncate
        self._sequence = model.engine.new_sequence(n_ctx)
        self._job: GenerationJob | None = None
        self._last_job: GenerationJob | None = None
        self._job_lock = threading.Lock()
        self._closed = False

    @property
    def cached_tokens(self) -> list[int]:
        """The tokens whose KV the cache holds (what the next call can reuse)."""
        sequence = self._sequence
        return self.model.scheduler.call(lambda: list(sequence.cached_ids))

    @property
    def last_prefill_tokens(self) -> int:
        """How many prompt tokens the last call had to run through the model (the rest were
        reused from the cache)."""
        job = self.last_generation
        return 0 if job is None else job.prefill_tokens

    @property
    def last_generation(self) -> GenerationJob | None:
        """The latest generation started on this Context (running or not): its
        `tokens_computed`, `prefill_tokens`, `is_running()` and `join()`."""
        with self._job_lock:
            return self._last_job

    @property
    def busy(self) -> bool:
        """Whether a generation is running on this Context."""
        with self._job_lock:
            job = self._job
        return job is not None and job.is_running()

    def stop(self) -> None:
        """Ends the running generation, if any (its consumer gets a GenerationError), and
        waits until its producer has left the model."""
        with self._job_lock:
            job = self._job
        if job is not None and job.is_running():
            job.cancel()
            job.join()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Waits until no generation runs here; True if that happened within `timeout`."""
        with self._job_lock:
            job = self._job
        return job is None or job.join(timeout)

    def reset(self) -> None:
        """Forgets the cached conversation."""
        self.stop()
        self.model.scheduler.call(self._sequence.invalidate)

    def close(self) -> None:
        """Ends the running generation and frees this Context's KV cache now (on llama.cpp its
        cells and its sequence slot) instead of when the Context is collected. Generating on
        it afterwards is a GenerationError. Also `with Context(model) as ctx: ...`."""
        self.stop()
        with self._job_lock:
            if self._closed:
                return
            self._closed = True
        self.model.scheduler.call(self._sequence.close)

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- generation ------------------------------------------------------------------------------
    @takes_request
    def generate_stream(self, request: GenerationRequest) -> TokenStream | ProgressTokenStream:
        """Streams Token events for a raw `prompt` (text or ids) or chat `messages`;
        `on_progress(Progress)` is called every `progress_interval_s` (default 1 s)."""
        return with_progress(
            self.open_stream(request), request.on_progress, request.progress_interval_s
        )

    @takes_request
    def generate(self, request: GenerationRequest) -> GenerationResult:
        """Generates the whole reply and returns it with its statistics."""
        collector = ResultCollector(self.model.end_of_generation_ids)
        with self.open_stream(request) as stream:
            for event in stream:
                collector.add(event)
            return collector.result(stream.finish_reason, stream.stop_sequence)

    def chat(
        self, messages: Sequence[Message], config: StreamConfig | None = None, **overrides: Any
    ) -> GenerationResult:
        """One assistant turn for `messages` (the model's chat template applies)."""
        return self.generate(None, config, messages=messages, **overrides)

    @takes_waitk_request
    def generate_stream_waitk(self, request: WaitkRequest) -> WaitkStream:
        """Simultaneous generation with the wait-k policy (see `mullama.waitk`): `source` is
        a str or an iterable of text chunks arriving over time; target word t is written
        after min(wait_k + t - 1, |source|) source words. Streams WaitkEvents; the last one
        carries the metrics (Average Lagging, tokens recomputed per source word)."""
        stream, events, _ = open_waitk(self.model, self.start_job, request)
        return WaitkStream(stream, events)

    def open_stream(self, request: GenerationRequest) -> TokenStream:
        """Starts `request` (ending a running generation first) and returns its core stream,
        without progress updates (the caller adds those for its own loop)."""
        ids = self.prompt_ids(request)
        producer, stream = open_stream(request.config, self.model.tokenizer)
        self.start_job(
            lambda sequence, on_exit: GenerationJob(
                self.model.scheduler,
                sequence,
                ids,
                request.config,
                producer,
                self.model.end_of_generation_ids,
                request.top_logprobs,
                on_exit,
            )
        )
        return stream

    def start_job(self, build: JobBuilder) -> GenerationJob:
        """Ends the running generation, then starts the job `build(sequence, on_exit)` makes
        on this Context's sequence (`on_exit` tells the Context when it is done)."""
        self.stop()
        if self._closed:
            raise GenerationError("this Context is closed: make a new Context to generate")
        job = build(self._sequence, self._job_exited)
        with self._job_lock:
            self._job = self._last_job = job
        job.start()
        return job

    def prompt_ids(self, request: GenerationRequest) -> list[int]:
        """The token ids `request` feeds the model, fitted to the context (ContextLengthError
        when they do not fit and `truncate` is off)."""
        if request.messages is not None:
            ids = self.model.chat_ids(request.messages)
        else:
            assert request.prompt is not None
            ids = self.model.prompt_ids(request.prompt)
        if not ids:
            raise ConfigError("the prompt is empty: it has no tokens")
        return self._fit(ids, request.config.max_tokens)

    def _fit(self, ids: list[int], max_tokens: int) -> list[int]:
        if len(ids) + max_tokens <= self.n_ctx:
            return ids
        if self.truncate and max_tokens < self.n_ctx:
            return ids[len(ids) + max_tokens - self.n_ctx :]
        err = ContextLengthError(
            f"prompt of {len(ids)} tokens plus max_tokens={max_tokens} exceeds the context of "
            f"{self.n_ctx} tokens (shorten the prompt, lower max_tokens, raise n_ctx, or pass "
            "truncate=True)"
        )
        err.prompt_tokens = len(ids)
        err.max_tokens = max_tokens
        err.n_ctx = self.n_ctx
        raise err

    def _job_exited(self, job: GenerationJob) -> None:
        with self._job_lock:
            if self._job is job:
                self._job = None
