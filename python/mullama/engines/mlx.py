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
from mlx_lm.models.cache import (
    KVCache,
    can_trim_prompt_cache,
    make_prompt_cache,
    trim_prompt_cache,
)
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

    def _feed(self, request: StepRequest) -> mx.array:
        """Books the request's input as fed and returns it (shape [n], lazy where it is the
        previous step's unread token)."""
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
        return inputs

    def _sample(self, logits: mx.array, top_logprobs: int) -> MlxStepHandle:
        """Samples from this sequence's last-position logits ([1, vocab]); not evaluated."""
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
        handle = MlxStepHandle(token, logprobs.squeeze(0), chosen, top_logprobs)
        self._last = handle
        return handle

    def _step(self, request: StepRequest) -> MlxStepHandle:
        inputs = self._feed(request)
        logits = self._engine.model(inputs[None], cache=self._cache)[:, -1, :]
        handle = self._sample(logits, request.top_logprobs)
        handle.schedule()
        return handle

    def _can_batch(self) -> bool:
        # Plain growing caches only: a sliding-window (rotating) or quantized cache keeps
        # its keys in an order or form the batched view below does not rebuild.
        return all(type(layer) is KVCache for layer in self._cache)


class _BatchedLayerCache:
    """One layer's caches of B sequences seen as one left-padded batch for a [B, 1] decode.

    Each sequence's new key/value goes into its own cache (so its prefix reuse, trimming and
    parking stay per sequence); attention reads every sequence's keys left-padded to the
    longest, the padding masked out, and RoPE uses each sequence's own position."""

    def __init__(self, caches: list[KVCache]) -> None:
        self._caches = caches
        lengths = [cache.offset for cache in caches]
        self._padding = [max(lengths) - n for n in lengths]
        self.offset = mx.array(lengths)

    def make_mask(self, n: int, **_: Any) -> mx.array:
        if n != 1:
            raise ValueError("the batched cache takes one new token per sequence")
        longest = max(cache.offset for cache in self._caches) + 1
        positions = mx.arange(longest)[None]
        mask = mx.array(self._padding)[:, None] <= positions
        return mask[:, None, None, :]

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple[mx.array, mx.array]:
        rows_k, rows_v = [], []
        for i, (cache, pad) in enumerate(zip(self._caches, self._padding, strict=True)):
            k, v = cache.update_and_fetch(keys[i : i + 1], values[i : i + 1])
            if pad:
                widths = [(0, 0), (0, 0), (pad, 0), (0, 0)]
                k, v = mx.pad(k, widths), mx.pad(v, widths)
            rows_k.append(k)
            rows_v.append(v)
        return mx.concatenate(rows_k), mx.concatenate(rows_v)


class MlxStepHandle(StepHandle):
    """One sequence's step: lazy arrays until read."""

    def __init__(self, token: mx.array, logprobs: mx.array, chosen: mx.array, top: int) -> None:
        self.lazy_token = token
        self.logprobs = logprobs
        self._chosen = chosen
        self._top = top
        self._output: StepOutput | None = None

    @property
    def arrays(self) -> list[mx.array]:
        """The lazy values `output()` reads: what to start computing."""
        return [self.lazy_token, self.logprobs, self._chosen]

    def schedule(self) -> None:
        """Starts computing the step's values (one step stays in flight)."""
        mx.async_eval(*self.arrays)

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
        self,
        loaded: Any,
        n_ctx: int | None = None,
        max_sequences: int = DEFAULT_MAX_SEQUENCES,
        batch_decode: bool = True,
    ) -> None:
        if n_ctx is not None and (not isinstance(n_ctx, int) or n_ctx < 1):
            raise ValueError(f"n_ctx must be a positive integer, got {n_ctx!r}")
        if not isinstance(max_sequences, int) or max_sequences < 1:
            raise ValueError(f"max_sequences must be a positive integer, got {max_sequences!r}")
        if not isinstance(batch_decode, bool):
            raise ValueError(f"batch_decode must be True or False, got {batch_decode!r}")
        self._max_sequences = max_sequences
        self.batch_decode = batch_decode
        """Whether a step of several one-token sequences runs as one [B, 1] forward pass (the
        weights read once per step); False computes them one after another."""
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
        """How many sequences one step takes. Each keeps its own KV cache; a step where each
        feeds one token is one batched forward pass (see `batch_decode`)."""
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
        sequences = [_own(r.sequence) for r in requests]
        with mx.stream(_generation_stream):
            if self._batchable(requests, sequences):
                handles = self._batched_step(requests, sequences)
            else:
                handles = [seq._step(r) for seq, r in zip(sequences, requests, strict=True)]
        return handles[0] if len(handles) == 1 else _Batch(handles)

    def _batchable(self, requests: Sequence[StepRequest], sequences: list[MlxSequence]) -> bool:
        return (
            self.batch_decode
            and len(requests) > 1
            and len({id(seq) for seq in sequences}) == len(sequences)
            and all(r.input_ids is None or len(r.input_ids) == 1 for r in requests)
            and all(seq._can_batch() for seq in sequences)
        )

    def _batched_step(
        self, requests: Sequence[StepRequest], sequences: list[MlxSequence]
    ) -> list[MlxStepHandle]:
        inputs = mx.concatenate([seq._feed(r) for seq, r in zip(sequences, requests, strict=True)])
        layers = zip(*(seq._cache for seq in sequences), strict=True)
        cache = [_BatchedLayerCache(list(caches)) for caches in layers]
        logits = self.model(inputs[:, None], cache=cache)[:, -1, :]
        handles = [
            seq._sample(logits[i : i + 1], r.top_logprobs)
            for i, (seq, r) in enumerate(zip(sequences, requests, strict=True))
        ]
        mx.async_eval([array for handle in handles for array in handle.arrays])
        return handles

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
