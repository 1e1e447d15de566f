"""`Context`: one conversation's KV cache on a Model, reused across calls by common prefix."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mlx_lm.models.cache import can_trim_prompt_cache, make_prompt_cache, trim_prompt_cache

from mullama._core import (
    ConfigError,
    ContextLengthError,
    StreamConfig,
    TokenStream,
    open_stream,
)
from mullama._generate import GenerationJob, Superseded
from mullama.chat import Message
from mullama.model import Model
from mullama.progress import ProgressCallback, ProgressTokenStream, progress_clock, with_progress


@dataclass
class GenerationResult:
    """What `Context.generate` returns: the whole reply and how it went."""

    text: str
    tokens: list[int]
    finish_reason: str | None
    stop_sequence: str | None = None
    prompt_tokens: int = 0
    prompt_tps: float = 0.0
    generation_tokens: int = 0
    generation_tps: float = 0.0
    time_to_first_token: float | None = None
    peak_memory: float = 0.0
    logprobs: list[float] = field(default_factory=list)

    def __str__(self) -> str:
        return self.text


class ResultCollector:
    """Accumulates a stream's events into a GenerationResult (sync and async alike)."""

    def __init__(self, end_of_generation_ids: frozenset[int]) -> None:
        self._eog = end_of_generation_ids
        self._parts: list[str] = []
        self._tokens: list[int] = []
        self._logprobs: list[float] = []
        self._last: Any = None

    def add(self, event: Any) -> None:
        self._parts.append(event.text)
        # The end-of-turn token that closes a reply is not part of it.
        closing_eog = event.finish_reason is not None and event.token in self._eog
        if event.token is not None and not closing_eog:
            self._tokens.append(event.token)
            if event.logprob is not None:
                self._logprobs.append(event.logprob)
        self._last = event

    def result(self, finish_reason: str | None, stop_sequence: str | None) -> GenerationResult:
        result = GenerationResult(
            text="".join(self._parts),
            tokens=self._tokens,
            finish_reason=finish_reason,
            stop_sequence=stop_sequence,
            logprobs=self._logprobs,
        )
        last = self._last
        if last is not None:
            result.prompt_tokens = last.prompt_tokens
            result.prompt_tps = last.prompt_tps
            result.generation_tokens = last.generation_tokens
            result.generation_tps = last.generation_tps
            result.time_to_first_token = last.time_to_first_token
            result.peak_memory = last.peak_memory
        return result


def build_config(config: StreamConfig | None, overrides: dict[str, Any]) -> StreamConfig:
    """`config` with keyword overrides applied (e.g. generate_stream(p, max_tokens=50))."""
    base = config if config is not None else StreamConfig()
    if not isinstance(base, StreamConfig):
        raise ConfigError(f"config must be a StreamConfig, got {type(base).__name__}")
    return base.replace(**overrides) if overrides else base


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
            n_ctx = model.n_ctx_train
        if not isinstance(n_ctx, int) or isinstance(n_ctx, bool) or n_ctx < 1:
            raise ConfigError(f"invalid n_ctx = {n_ctx!r}: must be a positive integer")
        self.model = model
        self.n_ctx = n_ctx
        self.truncate = truncate
        self._cache = make_prompt_cache(model.mlx_model)
        self._cached_ids: list[int] = []
        self._job: GenerationJob | None = None
        self._job_lock = threading.Lock()
        self.last_prefill_tokens = 0
        """How many prompt tokens the last call had to run through the model (the rest were
        reused from the cache)."""

    @property
    def cached_tokens(self) -> list[int]:
        return list(self._cached_ids)

    def reset(self) -> None:
        """Forgets the cached conversation."""
        self._stop_running_job()
        with self.model.forward_lock:
            self._invalidate_cache()

    # -- generation ------------------------------------------------------------------------------
    def generate_stream(
        self,
        prompt: str | Sequence[int] | None = None,
        config: StreamConfig | None = None,
        *,
        messages: Sequence[Message] | None = None,
        top_logprobs: int = 0,
        on_progress: ProgressCallback | None = None,
        progress_interval_s: float | None = None,
        **overrides: Any,
    ) -> TokenStream | ProgressTokenStream:
        """Streams Token events for a raw `prompt` (text or ids) or chat `messages`;
        `on_progress(Progress)` is called every `progress_interval_s` (default 1 s)."""
        config = build_config(config, overrides)
        progress_clock(on_progress, progress_interval_s)  # bad arguments fail before starting
        ids = self._prompt(prompt, messages)
        ids = self._fit(ids, config.max_tokens)
        if not isinstance(top_logprobs, int) or not 0 <= top_logprobs <= 20:
            raise ConfigError(f"invalid top_logprobs = {top_logprobs!r}: must be 0..20")
        self._stop_running_job()
        producer, stream = open_stream(config, self.model.tokenizer)
        job = GenerationJob(self, ids, config, producer, top_logprobs, self._job_exited)
        with self._job_lock:
            self._job = job
        job.start()
        return with_progress(stream, on_progress, progress_interval_s)

    def generate(
        self,
        prompt: str | Sequence[int] | None = None,
        config: StreamConfig | None = None,
        *,
        messages: Sequence[Message] | None = None,
        **overrides: Any,
    ) -> GenerationResult:
        """Generates the whole reply and returns it with its statistics."""
        collector = ResultCollector(self.model.end_of_generation_ids)
        with self.generate_stream(prompt, config, messages=messages, **overrides) as stream:
            for event in stream:
                collector.add(event)
            return collector.result(stream.finish_reason, stream.stop_sequence)

    def chat(
        self, messages: Sequence[Message], config: StreamConfig | None = None, **overrides: Any
    ) -> GenerationResult:
        """One assistant turn for `messages` (the model's chat template applies)."""
        return self.generate(None, config, messages=messages, **overrides)

    # -- internals -----------------------------------------------------------------------------
    def _prompt(
        self, prompt: str | Sequence[int] | None, messages: Sequence[Message] | None
    ) -> list[int]:
        if (prompt is None) == (messages is None):
            raise ConfigError("pass exactly one of prompt or messages")
        if messages is not None:
            ids = self.model.chat_ids(messages)
        elif isinstance(prompt, str) or isinstance(prompt, Sequence):
            ids = self.model.prompt_ids(prompt)
        else:
            raise ConfigError(
                f"prompt must be a str or a list of token ids, got {type(prompt).__name__}"
            )
        if not ids:
            raise ConfigError("the prompt is empty: it has no tokens")
        return ids

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

    def _reuse_prefix(self, ids: list[int]) -> list[int]:
        """Trims the cache to the longest prefix shared with `ids`; returns what must be
        prefilled (at least one token, whose logits start the generation). Holds the forward
        lock (called by the job)."""
        cached = self._cached_ids
        common = 0
        limit = min(len(cached), len(ids) - 1)
        while common < limit and cached[common] == ids[common]:
            common += 1
        surplus = len(cached) - common
        if surplus and not (
            can_trim_prompt_cache(self._cache)
            and trim_prompt_cache(self._cache, surplus) == surplus
        ):
            self._invalidate_cache()
            common = 0
        del self._cached_ids[common:]
        self.last_prefill_tokens = len(ids) - common
        return ids[common:]

    def _invalidate_cache(self) -> None:
        self._cache[:] = make_prompt_cache(self.model.mlx_model)
        self._cached_ids.clear()

    def _stop_running_job(self) -> None:
        with self._job_lock:
            job = self._job
        if job is not None and job.is_running():
            job.abort.set()
            # fail() ends the stream, which also wakes a push blocked on a full buffer.
            job.producer.fail(Superseded("a newer generation on this Context replaced this one"))
            job.join()

    def _job_exited(self, job: GenerationJob) -> None:
        with self._job_lock:
            if self._job is job:
                self._job = None
