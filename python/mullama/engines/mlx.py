"""The MLX engine: mlx-lm's model implementations and samplers behind the engine interface.

One step stays in flight (`mx.async_eval`): a step fed the token its previous step sampled
builds on that step's lazy result, so the device computes token n+1 while the producer
detokenizes and delivers token n.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import mlx.core as mx
import numpy as np
from mlx_lm.models.cache import can_trim_prompt_cache, make_prompt_cache, trim_prompt_cache
from mlx_lm.sample_utils import make_logits_processors, make_sampler

from mullama._core import GenerationError
from mullama.engines.base import (
    Engine,
    EngineSequence,
    SamplerSettings,
    StepHandle,
    StepOutput,
    StepRequest,
)
from mullama.engines.choice import mlx_gpu

DEFAULT_MAX_SEQUENCES = 4
"""Sequences one step advances (as the llama.cpp engine's default)."""

# Like mlx-lm's: generation work goes to its own stream, one per calling thread.
_generation_stream = mx.new_thread_local_stream(mx.default_device())


class MlxSequence(EngineSequence):
    """A KV cache (mlx-lm's prompt cache) and the ids it holds, with a sampler."""

    def __init__(self, engine: MlxEngine, n_ctx: int) -> None:
        self.n_ctx = n_ctx
        self._engine = engine
        self._cache = make_prompt_cache(engine.model)
        self._ids: list[int] = []
        # Steps whose sampled token a later step has already fed: their tokens are in the
        # cache, but their values are read only when someone asks (reading waits).
        self._fed: list[MlxStepHandle] = []
        self._last: MlxStepHandle | None = None
        self._settings = SamplerSettings()
        self._draws = 0
        self._sampler: Any = None
        self._processors: list[Any] = []
        # The last tokens fed (lazy where a step's sampled token is fed unread): the window
        # the repetition penalty looks at.
        self._window = mx.array([], dtype=mx.int32)

    @property
    def cached_ids(self) -> list[int]:
        self._settle()
        return self._ids

    def _settle(self) -> None:
        if self._fed:
            fed, self._fed = self._fed, []
            self._ids.extend(handle.token for handle in fed)

    def reuse_prefix(self, ids: Sequence[int]) -> list[int]:
        ids = list(ids)
        cached = self.cached_ids
        common = 0
        limit = min(len(cached), len(ids) - 1)
        while common < limit and cached[common] == ids[common]:
            common += 1
        self.trim(len(cached) - common)
        return ids[len(self._ids) :]

    def trim(self, n: int) -> None:
        self._settle()
        if n <= 0:
            return
        if can_trim_prompt_cache(self._cache) and trim_prompt_cache(self._cache, n) == n:
            del self._ids[len(self._ids) - n :]
        else:
            self.invalidate()

    def invalidate(self) -> None:
        self._cache = make_prompt_cache(self._engine.model)
        self._ids = []
        self._fed = []
        self._last = None

    def close(self) -> None:
        # An empty cache in place of the filled one: its arrays go with their last reference.
        self.invalidate()

    def configure(self, settings: SamplerSettings, history: Sequence[int]) -> None:
        self._settings = settings
        self._sampler = make_sampler(
            temp=settings.temperature,
            top_p=settings.top_p if settings.top_p < 1.0 else 0.0,
            min_p=settings.min_p,
            top_k=settings.top_k,
        )
        self._processors = make_logits_processors(
            repetition_penalty=settings.repeat_penalty if settings.repeat_penalty != 1.0 else None,
            repetition_context_size=settings.repetition_context,
        )
        self._window = mx.array(list(history)[-settings.repetition_context :], dtype=mx.int32)
        self._last = None
        self._draws = 0

    # -- used by the engine ----------------------------------------------------------------
    def _prefill(self, fed: list[int]) -> None:
        if not fed:
            return
        self._settle()
        self._engine.model(mx.array(fed)[None], cache=self._cache)
        mx.eval([c.state for c in self._cache])
        self._ids.extend(fed)
        if self._processors:
            self._remember(mx.array(fed))

    def _remember(self, fed: mx.array) -> None:
        context = self._settings.repetition_context
        self._window = mx.concatenate([self._window, fed.astype(mx.int32)])[-context:]

    def _step(self, request: StepRequest) -> MlxStepHandle:
        if request.input_ids is None:
            previous = self._last
            if previous is None:
                raise RuntimeError("step(input_ids=None) needs a previous step on this sequence")
            inputs = previous.lazy_token
            self._fed.append(previous)
        else:
            fed = [int(i) for i in request.input_ids]
            if not fed:
                raise ValueError("a step needs at least one input token")
            self._settle()
            self._ids.extend(fed)
            inputs = mx.array(fed)
        if self._processors:
            self._remember(inputs)
        logits = self._engine.model(inputs[None], cache=self._cache)[:, -1, :]
        for processor in self._processors:
            logits = processor(self._window, logits)
        seed = self._settings.seed
        if seed is not None:
            # MLX's random state is one per thread, shared by every sequence a scheduler steps:
            # each draw of a seeded sequence starts from its own (seed, draw number), so its
            # text is the same alone or in a batch.
            mx.random.seed(((seed & 0xFFFFFFFF) << 32) | (self._draws & 0xFFFFFFFF))
            self._draws += 1
        logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        token = self._sampler(logprobs) if self._sampler is not None else mx.argmax(logprobs, -1)
        # Part of the step's graph: reading it later must not queue work behind the next
        # step that is already in flight on the same stream.
        chosen = mx.take_along_axis(logprobs, token[:, None], axis=-1)
        handle = MlxStepHandle(token, logprobs.squeeze(0), chosen, request.top_logprobs)
        mx.async_eval(token, handle.logprobs, chosen)
        self._last = handle
        return handle


class MlxStepHandle(StepHandle):
    """One sequence's step: lazy arrays until read."""

    def __init__(self, token: mx.array, logprobs: mx.array, chosen: mx.array, top: int) -> None:
        self.lazy_token = token
        self.logprobs = logprobs
        self._chosen = chosen
        self._top = top
        self._output: StepOutput | None = None

    @property
    def token(self) -> int:
        return self.output().token

    def output(self) -> StepOutput:
        if self._output is None:
            with mx.stream(_generation_stream):
                token = int(self.lazy_token.item())
                logprob = float(self._chosen.item())
                top = _top_logprobs(self.logprobs, self._top) if self._top else None
            self._output = StepOutput(token, logprob, top)
        return self._output

    def result(self) -> list[StepOutput]:
        return [self.output()]


class _Batch(StepHandle):
    def __init__(self, handles: list[MlxStepHandle]) -> None:
        self._handles = handles

    def result(self) -> list[StepOutput]:
        return [handle.output() for handle in self._handles]


def _top_logprobs(logprobs: mx.array, k: int) -> list[tuple[int, float]]:
    k = min(k, logprobs.shape[-1])
    idx = mx.argpartition(-logprobs, kth=k - 1)[:k]
    values = logprobs[idx]
    order = mx.argsort(-values)
    ids, vals = idx[order].tolist(), values[order].tolist()
    return [(int(i), float(v)) for i, v in zip(ids, vals, strict=True)]


class MlxEngine(Engine):
    """An mlx-lm model loaded by `mullama.loader` (from GGUF or an MLX folder)."""

    name = "mlx"
    steps_run_ahead = True

    def __init__(
        self, loaded: Any, n_ctx: int | None = None, max_sequences: int = DEFAULT_MAX_SEQUENCES
    ) -> None:
        if n_ctx is not None and (not isinstance(n_ctx, int) or n_ctx < 1):
            raise ValueError(f"n_ctx must be a positive integer, got {n_ctx!r}")
        if not isinstance(max_sequences, int) or max_sequences < 1:
            raise ValueError(f"max_sequences must be a positive integer, got {max_sequences!r}")
        self._max_sequences = max_sequences
        self._loaded = loaded
        self.model = loaded.model
        """The mlx-lm model module."""
        self._n_ctx = n_ctx
        self._closed = False

    @property
    def n_ctx_train(self) -> int:
        return int(self._loaded.n_ctx_train)

    @property
    def n_ctx(self) -> int:
        return self._n_ctx if self._n_ctx is not None else self.n_ctx_train

    @property
    def n_vocab(self) -> int:
        return int(self._loaded.n_vocab)

    @property
    def max_sequences(self) -> int:
        """How many sequences one step takes; they are computed one after another (each with
        its own KV cache), not as one batched forward pass."""
        return self._max_sequences

    @property
    def device(self) -> str:
        return mlx_gpu() or "cpu"

    def _check_open(self) -> None:
        if self._closed:
            raise GenerationError("the MLX engine is closed")

    def new_sequence(self, n_ctx: int) -> MlxSequence:
        self._check_open()
        return MlxSequence(self, n_ctx)

    def prefill(
        self,
        sequence: EngineSequence,
        ids: Sequence[int],
        should_stop: Callable[[], bool] | None = None,
    ) -> bool:
        self._check_open()
        with mx.stream(_generation_stream):
            _own(sequence)._prefill([int(i) for i in ids])
        return True

    def step(self, requests: Sequence[StepRequest]) -> StepHandle:
        self._check_open()
        with mx.stream(_generation_stream):
            handles = [_own(r.sequence)._step(r) for r in requests]
        return handles[0] if len(handles) == 1 else _Batch(handles)

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        self._check_open()
        with mx.stream(_generation_stream):
            return self._loaded.forward(ids)

    def peak_memory(self) -> int:
        return int(mx.get_peak_memory())

    def close(self) -> None:
        """Marks the engine closed; MLX frees the weights once the last reference goes."""
        self._closed = True

    def n_params(self) -> int | None:
        """Stored values: a quantized weight counts its packed words, not its weights."""
        from mlx.utils import tree_flatten

        return sum(v.size for _, v in tree_flatten(self.model.parameters()))


def _own(sequence: EngineSequence) -> MlxSequence:
    if not isinstance(sequence, MlxSequence):
        raise TypeError(f"the MLX engine got a {type(sequence).__name__}, not its own sequence")
    return sequence
