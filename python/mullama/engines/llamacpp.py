"""The llama.cpp engine: llama-cpp-python's low-level API (llama_batch + llama_decode, logits
by batch index, llama_memory_seq_rm, llama.cpp's sampler chain) behind the engine interface.

It loads any GGUF llama.cpp supports and is fed token ids only: tokenization stays in the Rust
core. All sequences live in one llama.cpp context; each resident sequence is a llama.cpp seq id
with its own KV stream of `n_ctx` cells (`kv_unified` off). A shared (unified) pool would use
less memory, but where a sequence's cells land in it depends on the other sequences, and that
changes the order of the attention sums: the same prompt then gave different greedy text on a
fresh Context in one process. One more seq id than `max_sequences` is kept back for
`logits()`' scratch forward.

Logprobs are the log-softmax of the logits after the repetition penalty and before top-k /
top-p / min-p / temperature, the distribution the MLX engine reports too: the penalty is a
separate llama.cpp sampler applied first, the rest of the chain picks the token.
"""

from __future__ import annotations

import ctypes
import os
import resource
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mullama._core import ContextLengthError, GenerationError, ModelLoadError, summarize_logits
from mullama.engines.base import (
    Engine,
    EngineSequence,
    SamplerSettings,
    StepHandle,
    StepOutput,
    StepRequest,
)
from mullama.engines.hugepages import HugePageAdvisor, worth_reading

INSTALL = "pip install 'mullama[llama]'"

DEFAULT_N_CTX = 4096
"""KV cells per sequence when none is given (capped by the model's n_ctx_train), as Ollama's
default context: 4096 cells of SmolLM2-135M's f16 keys and values are about 90 MiB, and each
of the `max_sequences + 1` streams has them."""

DEFAULT_MAX_SEQUENCES = 4
"""Sequences whose KV stays resident at once (and the most one step advances)."""

DEFAULT_N_THREADS = 1
"""Decode and prefill threads. llama.cpp's workers spin between graph nodes; on a 2-core host
shared with other work two of them starve each other and the stream's own threads. Measured
with benchmarks/bench_engine_llamacpp.py (SmolLM2-135M Q4_1, load average ~3 from other
tenants): 1 thread 62 tok/s, 41 tok/s beside a busy process; 2 threads 5.4 tok/s, and beside
a busy process it did not finish 4x64 tokens in 5 minutes."""

DEFAULT_N_BATCH = 512

PREFILL_CHUNK = 64
"""Tokens per prompt chunk. A fixed size: llama.cpp's kernels differ by batch shape, and
chunks sized by the clock made greedy text differ from run to run. Small, because the other
streams on the model wait for the chunk in flight (a stop inside one comes through the abort
callback, so stopping does not wait for it)."""

_GGML_LOG_WARN = 3
_GGML_LOG_ERROR = 4

_backend_lock = threading.Lock()
_backend_ready = False
_log_lines: deque[str] = deque(maxlen=16)
"""llama.cpp's recent warnings and errors: quoted in load failures instead of printed."""
_log_callback: Any = None  # kept alive: llama.cpp holds the raw function pointer


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise ModelLoadError(
            f"the llama.cpp engine needs llama-cpp-python; install it with: {INSTALL}"
        ) from exc
    return llama_cpp


def _init_backend(lib: Any) -> None:
    """Once per process: route llama.cpp's log into `_log_lines` and init the backend."""
    global _backend_ready, _log_callback
    with _backend_lock:
        if _backend_ready:
            return

        def on_log(level: int, text: bytes | None, _user: Any) -> None:
            if level in (_GGML_LOG_WARN, _GGML_LOG_ERROR) and text:
                _log_lines.append(text.decode("utf-8", "replace").strip())

        _log_callback = lib.llama_log_callback(on_log)
        lib.llama_log_set(_log_callback, ctypes.c_void_p(0))
        lib.llama_backend_init()
        _backend_ready = True


def _last_log() -> str:
    return f" (llama.cpp: {_log_lines[-1]})" if _log_lines else ""


def _peak_rss_bytes() -> int:
    """The process's peak resident set: weights pages touched, KV caches, compute buffers and
    everything else in the process (one getrusage call: cheap enough for every token)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes there, KiB on Linux


def _summarize(logits: np.ndarray) -> tuple[int, float, float]:
    """(argmax, max, log-sum-exp) of one row of logits, by the core (vectorized)."""
    # A view re-exports the buffer with NumPy's own format code ("f"); one made over a ctypes
    # pointer exports ctypes' "<f", which the core's buffer check does not take.
    summary = summarize_logits(logits.view(np.float32))
    if summary is None:
        raise GenerationError("the model produced NaN logits (no distribution to sample from)")
    return summary


class _Aborted(Exception):
    """A prefill chunk stopped by its should_stop (llama_decode returned 2)."""


class _Done(StepHandle):
    """llama_decode is synchronous: a step's outputs are ready when `step` returns."""

    def __init__(self, outputs: list[StepOutput]) -> None:
        self._outputs = outputs

    def result(self) -> list[StepOutput]:
        return self._outputs


class _Sampler:
    """One sequence's llama.cpp samplers: the repetition penalty (None when off) and the chain
    that picks the token (None for greedy without penalty: a plain argmax, as llama.cpp's
    greedy sampler picks the first maximum too)."""

    def __init__(self, lib: Any, n_vocab: int, settings: SamplerSettings) -> None:
        self._lib = lib
        self.penalty = None
        self.chain = None
        if settings.repeat_penalty != 1.0:
            self.penalty = lib.llama_sampler_init_penalties(
                n_vocab, settings.repetition_context, settings.repeat_penalty, 0.0, 0.0
            )
        if settings.greedy and self.penalty is None:
            return
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        if settings.greedy:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
        else:
            # llama.cpp's own order (common/sampling): top-k, top-p, min-p, temperature, dist.
            if settings.top_k > 0:
                lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_k(settings.top_k))
            if settings.top_p < 1.0:
                lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(settings.top_p, 1))
            if settings.min_p > 0.0:
                lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_min_p(settings.min_p, 1))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(settings.temperature))
            seed = lib.LLAMA_DEFAULT_SEED if settings.seed is None else settings.seed & 0xFFFFFFFF
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(seed))
        self.chain = chain

    def accept(self, token: int) -> None:
        if self.penalty is not None:
            self._lib.llama_sampler_accept(self.penalty, token)
        if self.chain is not None:
            self._lib.llama_sampler_accept(self.chain, token)

    def free(self) -> None:
        for smpl in (self.penalty, self.chain):
            if smpl is not None:
                self._lib.llama_sampler_free(smpl)
        self.penalty = self.chain = None

    def __del__(self) -> None:
        # A dropped Context's sequence takes its samplers with it. Samplers hold no engine
        # state (llama.cpp's sampler objects stand alone), so no engine lock is needed here.
        if getattr(self, "_lib", None) is not None:
            self.free()


class LlamaCppSequence(EngineSequence):
    """One sequence on the engine: its cached ids, samplers and, while its KV is resident,
    a llama.cpp seq id."""

    def __init__(self, engine: LlamaCppEngine, n_ctx: int) -> None:
        self.n_ctx = n_ctx
        self.seq_id: int | None = None
        """Its llama.cpp seq id while its KV is resident; None while evicted (or new)."""
        self.last_use = 0
        self.engine = engine
        self.ids: list[int] = []
        self.pending: int | None = None
        """The token the last step sampled: the next step feeds it unless given input_ids."""
        self.sampler: _Sampler | None = None
        self.closed = False

    @property
    def cached_ids(self) -> list[int]:
        return list(self.ids)

    def reuse_prefix(self, ids: Sequence[int]) -> list[int]:
        ids = list(ids)
        if not ids:
            raise ValueError("reuse_prefix needs at least one token")
        keep = 0
        limit = min(len(self.ids), len(ids) - 1)  # the last id is always fed again
        while keep < limit and self.ids[keep] == ids[keep]:
            keep += 1
        self.engine.truncate(self, keep)
        return ids[keep:]

    def trim(self, n: int) -> None:
        if n < 0:
            raise ValueError(f"trim needs n >= 0, got {n}")
        self.engine.truncate(self, max(len(self.ids) - n, 0))

    def invalidate(self) -> None:
        self.engine.truncate(self, 0)

    def configure(self, settings: SamplerSettings, history: Sequence[int]) -> None:
        self.engine.configure(self, settings, history)

    def close(self) -> None:
        self.engine.release(self)


class LlamaCppEngine(Engine):
    """A GGUF model in llama.cpp: one context, up to `max_sequences` sequences per step.

    Any number of sequences may be open; `max_sequences` of them hold KV at once. When a
    sequence that is not resident is used and all seq ids are taken, the least recently used
    sequence outside the current step is evicted, and an evicted sequence's cached tokens are
    fed again when it is next used: eviction costs time, never correctness.

    `n_ctx`: KV cells of each sequence (default min(n_ctx_train, 4096)). `n_threads` decodes,
    `n_threads_batch` prefills (default: the same).
    `flash_attn`: off by default, as in llama-cpp-python's `Llama`, whose greedy output this
    engine then reproduces token for token (llama.cpp's "auto" turns it on for CPU and moves
    logits by ~0.2); None lets llama.cpp choose.
    `huge_pages`: on Linux, where the weights take at most half the free memory, read them
    into memory backed by transparent huge pages instead of mapping the file (a decode step
    reads every weight; see `mullama.engines.hugepages`); False maps the file, as llama.cpp
    does by default (shared by every process that maps it)."""

    name = "llama.cpp"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        n_ctx: int | None = None,
        max_sequences: int = DEFAULT_MAX_SEQUENCES,
        n_threads: int = DEFAULT_N_THREADS,
        n_threads_batch: int | None = None,
        n_batch: int = DEFAULT_N_BATCH,
        flash_attn: bool | None = False,
        huge_pages: bool = True,
    ) -> None:
        for label, value in (("max_sequences", max_sequences), ("n_threads", n_threads)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{label} must be a positive integer, got {value!r}")
        if not isinstance(n_batch, int) or n_batch < max_sequences:
            raise ValueError(f"n_batch must be an integer >= max_sequences, got {n_batch!r}")
        lib = _import_llama_cpp()
        self._lib = lib
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelLoadError(f"model not found: {self.path}")
        _init_backend(lib)
        self._model = None
        self._ctx = None
        self._lock = threading.Lock()

        _log_lines.clear()
        model_params = lib.llama_model_default_params()
        advisor = None
        if huge_pages and worth_reading(self.path.stat().st_size):
            advisor = HugePageAdvisor()
            # The weights go into memory llama.cpp allocates (no file mapping), advised
            # for huge pages at the first progress report that follows its allocation;
            # what was read before that (the first tensor) is collapsed after loading.
            model_params.load_mode = lib.LLAMA_LOAD_MODE_NONE

            def on_progress(_progress: float, _data: Any) -> bool:
                # False would cancel the load: a failed advice only costs speed.
                try:
                    advisor.advise()
                except Exception:  # noqa: BLE001 - see above
                    pass
                return True

            progress = lib.llama_progress_callback(on_progress)
            model_params.progress_callback = progress
        self._model = lib.llama_model_load_from_file(str(self.path).encode(), model_params)
        self.huge_page_bytes = 0
        """How much of the weights' memory is in huge pages (0 with the file mapped)."""
        if self._model and advisor is not None:
            self.huge_page_bytes = advisor.collapse()
        if not self._model:
            self._model = None
            raise ModelLoadError(f"llama.cpp could not load {self.path}{_last_log()}")
        vocab = lib.llama_model_get_vocab(self._model)
        self._n_vocab = int(lib.llama_vocab_n_tokens(vocab))
        self._n_ctx_train = int(lib.llama_model_n_ctx_train(self._model))

        per_sequence = n_ctx if n_ctx is not None else min(self._n_ctx_train, DEFAULT_N_CTX)
        if not isinstance(per_sequence, int) or per_sequence < 1:
            self.close()
            raise ValueError(f"n_ctx must be a positive integer, got {n_ctx!r}")
        params = lib.llama_context_default_params()
        params.n_ctx = per_sequence * (max_sequences + 1)
        params.n_batch = params.n_ubatch = n_batch
        params.n_seq_max = max_sequences + 1  # + logits()' scratch sequence
        params.kv_unified = False
        params.n_threads = n_threads
        params.n_threads_batch = n_threads_batch if n_threads_batch is not None else n_threads
        params.no_perf = True
        if flash_attn is not None:
            params.flash_attn_type = (
                lib.LLAMA_FLASH_ATTN_TYPE_ENABLED
                if flash_attn
                else lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
            )
        self._ctx = lib.llama_init_from_model(self._model, params)
        if not self._ctx:
            self._ctx = None
            self.close()
            raise ModelLoadError(
                f"llama.cpp could not create a context for {self.path}{_last_log()}"
            )
        self._mem = lib.llama_get_memory(self._ctx)
        # llama.cpp pads the streams (to a multiple of 256); the cells asked for are the limit.
        self._n_ctx = min(int(lib.llama_n_ctx_seq(self._ctx)), per_sequence)
        self._n_batch = n_batch
        self._max_sequences = max_sequences
        self._n_threads = n_threads
        self._scratch_id = max_sequences
        self._free_ids = list(range(max_sequences - 1, -1, -1))
        self._live: dict[int, LlamaCppSequence] = {}
        """The resident sequences, by seq id."""
        self._clock = 0
        self._batch = _Batch(lib, n_batch)
        self._logit_rows: dict[int, np.ndarray] = {}
        """Views of logits rows, by address (see `_logits_row`)."""
        self._stop_check: Callable[[], bool] | None = None

        def abort_requested(_data: Any) -> bool:
            check = self._stop_check
            return bool(check is not None and check())

        # Kept alive on the engine: llama.cpp holds the raw function pointers.
        self._abort_callback = lib.ggml_abort_callback(abort_requested)
        self._no_abort = lib.ggml_abort_callback()  # NULL: llama.cpp checks nothing
        self.prefill_chunk = min(PREFILL_CHUNK, n_batch)
        # One candidates buffer for every sequence's sampling (steps run one at a time).
        self._cand = np.zeros(
            self._n_vocab, dtype=[("id", np.int32), ("logit", np.float32), ("p", np.float32)]
        )
        self._vocab_ids = np.arange(self._n_vocab, dtype=np.int32)
        self._cand_array = lib.llama_token_data_array(
            data=self._cand.ctypes.data_as(lib.llama_token_data_p),
            size=self._n_vocab,
            selected=-1,
            sorted=False,
        )

    # ------------------------------------------------------------ properties

    @property
    def n_ctx_train(self) -> int:
        return self._n_ctx_train

    @property
    def n_vocab(self) -> int:
        return self._n_vocab

    @property
    def n_ctx(self) -> int:
        """KV cells of each sequence."""
        return self._n_ctx

    @property
    def max_sequences(self) -> int:
        return self._max_sequences

    @property
    def n_threads(self) -> int:
        return self._n_threads

    def _check_open(self) -> None:
        if self._ctx is None:
            raise GenerationError("the llama.cpp engine is closed")

    def _check_sequence(self, seq: EngineSequence) -> LlamaCppSequence:
        self._check_open()
        if not isinstance(seq, LlamaCppSequence) or seq.engine is not self:
            raise ValueError("the sequence does not belong to this llama.cpp engine")
        if seq.closed:
            raise ValueError("the sequence is closed")
        return seq

    # ------------------------------------------------------------ sequences

    def new_sequence(self, n_ctx: int) -> LlamaCppSequence:
        with self._lock:
            self._check_open()
            if not isinstance(n_ctx, int) or n_ctx < 1:
                raise ValueError(f"n_ctx must be a positive integer, got {n_ctx!r}")
            if n_ctx > self._n_ctx:
                raise ContextLengthError(
                    f"a sequence of n_ctx={n_ctx} does not fit the llama.cpp engine's "
                    f"{self._n_ctx} KV cells per sequence (load the model with a larger n_ctx)"
                )
            return LlamaCppSequence(self, n_ctx)

    # ------------------------------------------------------------ residency

    def _evict(self, seq: LlamaCppSequence) -> None:
        """Frees `seq`'s KV cells and seq id; its ids stay, to be fed again on next use."""
        assert seq.seq_id is not None
        self._lib.llama_memory_seq_rm(self._mem, seq.seq_id, -1, -1)
        del self._live[seq.seq_id]
        self._free_ids.append(seq.seq_id)
        seq.seq_id = None

    def _evict_one(self, protected: set[int]) -> bool:
        """Evicts the least recently used resident sequence not in `protected` (ids of the
        sequences objects in the current step); False when there is none."""
        idle = [s for s in self._live.values() if id(s) not in protected]
        if not idle:
            return False
        self._evict(min(idle, key=lambda s: s.last_use))
        return True

    def _make_resident(self, seq: LlamaCppSequence, protected: set[int]) -> None:
        """Gives `seq` a seq id (evicting if all are taken) and feeds its cached ids again
        if it was evicted."""
        self._clock += 1
        seq.last_use = self._clock
        if seq.seq_id is not None:
            return
        if not self._free_ids and not self._evict_one(protected):
            raise GenerationError(
                f"one step advances at most {self._max_sequences} llama.cpp sequences "
                "(load the engine with a larger max_sequences)"
            )
        restore, seq.ids = seq.ids, []
        seq.seq_id = self._free_ids.pop()
        self._live[seq.seq_id] = seq
        self._lib.llama_memory_seq_rm(self._mem, seq.seq_id, -1, -1)
        self._feed(seq, restore)

    def truncate(self, seq: EngineSequence, keep: int) -> None:
        """Keeps the first `keep` cached tokens of `seq` (the sequences' trim and reuse)."""
        with self._lock:
            seq = self._check_sequence(seq)
            keep = max(0, min(keep, len(seq.ids)))
            if seq.seq_id is None:
                del seq.ids[keep:]
            elif keep < len(seq.ids) or keep == 0:
                if not self._lib.llama_memory_seq_rm(self._mem, seq.seq_id, keep, -1):
                    # Only recurrent memories refuse a partial removal; start them over.
                    self._lib.llama_memory_seq_rm(self._mem, seq.seq_id, -1, -1)
                    keep = 0
                del seq.ids[keep:]
            seq.pending = None

    def configure(
        self, seq: EngineSequence, settings: SamplerSettings, history: Sequence[int]
    ) -> None:
        with self._lock:
            seq = self._check_sequence(seq)
            sampler = _Sampler(self._lib, self._n_vocab, settings)
            if sampler.penalty is not None:
                for token in list(history)[-settings.repetition_context :]:
                    self._lib.llama_sampler_accept(sampler.penalty, int(token))
            self._drop_sampler(seq)
            seq.sampler = sampler

    def _drop_sampler(self, seq: LlamaCppSequence) -> None:
        if seq.sampler is not None:
            seq.sampler.free()
            seq.sampler = None

    def release(self, seq: EngineSequence) -> None:
        """Frees `seq`'s KV cells, samplers and seq id (the sequences' close)."""
        with self._lock:
            if not isinstance(seq, LlamaCppSequence) or seq.engine is not self or seq.closed:
                return
            seq.closed = True
            if self._ctx is None:
                return
            if seq.seq_id is not None:
                self._evict(seq)
            seq.ids = []
            self._drop_sampler(seq)

    # ------------------------------------------------------------ forward passes

    def _check_room(self, feeds: list[tuple[LlamaCppSequence, list[int]]]) -> None:
        """Makes every sequence of a step resident with room for its new ids."""
        for seq, ids in feeds:
            if len(seq.ids) + len(ids) > seq.n_ctx:
                raise ContextLengthError(
                    f"the sequence would hold {len(seq.ids) + len(ids)} tokens, "
                    f"more than its n_ctx={seq.n_ctx}"
                )
        protected = {id(seq) for seq, _ in feeds}
        for seq, _ in feeds:
            self._make_resident(seq, protected)

    def _decode(self, rows: list[tuple[int, int, int, bool]]) -> None:
        """One llama_decode of (token, seq id, position, wants logits) rows."""
        batch = self._batch
        batch.fill(rows)
        rc = self._lib.llama_decode(self._ctx, batch.struct)
        if rc != 0:
            # llama.cpp removes what the failed batch wrote; make sure of it per sequence.
            for seq_id in {r[1] for r in rows}:
                seq = self._live.get(seq_id)
                start = len(seq.ids) if seq is not None else 0
                self._lib.llama_memory_seq_rm(self._mem, seq_id, start, -1)
            if rc == 2 and self._stop_check is not None:
                raise _Aborted()
            meaning = {1: "no KV slot for the batch", 2: "aborted", -1: "invalid batch"}
            raise GenerationError(
                f"llama_decode failed with return code {rc}"
                f" ({meaning.get(rc, 'compute error')}){_last_log()}"
            )

    def _feed(self, seq: LlamaCppSequence, ids: list[int]) -> None:
        """Decodes `ids` into resident `seq` in n_batch chunks without logits."""
        assert seq.seq_id is not None
        for start in range(0, len(ids), self._n_batch):
            chunk = ids[start : start + self._n_batch]
            pos = len(seq.ids)
            self._decode([(t, seq.seq_id, pos + i, False) for i, t in enumerate(chunk)])
            seq.ids.extend(chunk)

    def prefill(
        self,
        sequence: EngineSequence,
        ids: Sequence[int],
        should_stop: Callable[[], bool] | None = None,
    ) -> bool:
        """With `should_stop`, llama.cpp polls it between the graph's nodes (its abort
        callback): a chunk stops within milliseconds of a close, a deadline or Ctrl+C."""
        with self._lock:
            seq = self._check_sequence(sequence)
            ids = [int(t) for t in ids]
            if not ids:
                return True
            self._check_room([(seq, ids)])
            seq.pending = None
            if should_stop is None:
                self._feed(seq, ids)
                return True
            self._stop_check = should_stop
            self._lib.llama_set_abort_callback(self._ctx, self._abort_callback, None)
            try:
                self._feed(seq, ids)
            except _Aborted:
                return False
            finally:
                # Decode steps run without it: a Python call per graph node costs time.
                self._lib.llama_set_abort_callback(self._ctx, self._no_abort, None)
                self._stop_check = None
            return True

    def step(self, requests: Sequence[StepRequest]) -> StepHandle:
        with self._lock:
            self._check_open()
            feeds: list[tuple[LlamaCppSequence, list[int], int]] = []
            seen: set[int] = set()
            from_pending: dict[int, bool] = {}
            if len(requests) > self._max_sequences:
                raise ValueError(
                    f"a step of {len(requests)} sequences exceeds max_sequences="
                    f"{self._max_sequences}"
                )
            for req in requests:
                seq = self._check_sequence(req.sequence)
                if id(seq) in seen:
                    raise ValueError("a sequence appears twice in one step")
                seen.add(id(seq))
                if seq.sampler is None:
                    raise ValueError("configure() the sequence before stepping it")
                from_pending[id(seq)] = req.input_ids is None
                if req.input_ids is not None:
                    ids = [int(t) for t in req.input_ids]
                    if not ids:
                        raise ValueError("a step's input_ids must not be empty")
                elif seq.pending is not None:
                    ids = [seq.pending]
                else:
                    raise ValueError("nothing to feed: give input_ids (no token is pending)")
                feeds.append((seq, ids, max(0, int(req.top_logprobs))))
            self._check_room([(s, ids) for s, ids, _ in feeds])

            for seq, ids, _ in feeds:
                if not from_pending[id(seq)]:
                    # Fed ids join the repetition window, as a sampled token did when sampled.
                    for token in ids:
                        seq.sampler.accept(token)  # type: ignore[union-attr]  # checked above
            # When the inputs overflow one batch, all but their last tokens go in first
            # without logits; then one batch advances every sequence together.
            if sum(len(ids) for _, ids, _ in feeds) > self._n_batch:
                for seq, ids, _ in feeds:
                    self._feed(seq, ids[:-1])
                feeds = [(seq, ids[-1:], top_n) for seq, ids, top_n in feeds]
            rows: list[tuple[int, int, int, bool]] = []
            out_index: list[int] = []
            for seq, ids, _ in feeds:
                seq.pending = None
                pos = len(seq.ids)
                last = len(ids) - 1
                rows.extend((t, seq.seq_id, pos + i, i == last) for i, t in enumerate(ids))
                out_index.append(len(rows) - 1)
            self._decode(rows)
            for seq, ids, _ in feeds:
                seq.ids.extend(ids)

            outputs = []
            for (seq, _, top_n), index in zip(feeds, out_index, strict=True):
                out = self._sample(seq, index, top_n)
                seq.pending = out.token
                outputs.append(out)
            return _Done(outputs)

    def _logits_row(self, index: int) -> np.ndarray:
        """The logits of batch row `index` as an array over llama.cpp's buffer. A view per
        address is kept: building one costs more than the rest of sampling a greedy token,
        and the rows stay where they are from step to step (a row at an address seen before
        is that address's n_vocab floats, whatever buffer holds them now)."""
        pointer = self._lib.llama_get_logits_ith(self._ctx, index)
        address = ctypes.cast(pointer, ctypes.c_void_p).value
        if not address:
            raise GenerationError(f"llama.cpp has no logits for batch row {index}{_last_log()}")
        row = self._logit_rows.get(address)
        if row is None:
            if len(self._logit_rows) >= 4 * (self._max_sequences + 1):
                self._logit_rows.clear()  # the output buffer moved: forget the old rows
            row = np.ctypeslib.as_array(pointer, (self._n_vocab,))
            self._logit_rows[address] = row
        return row

    def _sample(self, seq: LlamaCppSequence, index: int, top_n: int) -> StepOutput:
        lib = self._lib
        sampler = seq.sampler
        assert sampler is not None
        raw = self._logits_row(index)
        summary = None
        if sampler.penalty is None and sampler.chain is None:
            logits = raw
            summary = _summarize(raw)
            token = summary[0]
        else:
            cand = self._cand
            cand["id"] = self._vocab_ids
            cand["logit"] = raw
            cand["p"] = 0.0
            arr = self._cand_array
            arr.size = self._n_vocab
            arr.selected = -1
            arr.sorted = False
            if sampler.penalty is not None:
                lib.llama_sampler_apply(sampler.penalty, ctypes.byref(arr))
                logits = cand["logit"].copy()  # the chain below rewrites it in place
            else:
                logits = raw
            if sampler.chain is None:
                token = int(np.argmax(logits))
            else:
                lib.llama_sampler_apply(sampler.chain, ctypes.byref(arr))
                if not 0 <= arr.selected < arr.size:
                    raise GenerationError("llama.cpp's sampler chain selected no token")
                token = int(cand["id"][arr.selected])
        sampler.accept(token)
        lse = (summary or _summarize(logits))[2]
        top = None
        if top_n:
            k = min(top_n, self._n_vocab)
            idx = np.argpartition(-logits, k - 1)[:k]
            idx = idx[np.argsort(-logits[idx], kind="stable")]
            top = [(int(i), float(logits[i]) - lse) for i in idx]
        return StepOutput(token=token, logprob=float(logits[token]) - lse, top_logprobs=top)

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        with self._lock:
            self._check_open()
            ids = [int(t) for t in ids]
            if not ids:
                return np.zeros((0, self._n_vocab), dtype=np.float32)
            if len(ids) > self._n_ctx:
                raise ContextLengthError(
                    f"logits() of {len(ids)} tokens does not fit the llama.cpp engine's "
                    f"{self._n_ctx} KV cells per sequence"
                )
            out = np.empty((len(ids), self._n_vocab), dtype=np.float32)
            scratch = self._scratch_id
            try:
                for start in range(0, len(ids), self._n_batch):
                    chunk = ids[start : start + self._n_batch]
                    self._decode([(t, scratch, start + i, True) for i, t in enumerate(chunk)])
                    rows = np.ctypeslib.as_array(
                        self._lib.llama_get_logits(self._ctx), (len(chunk), self._n_vocab)
                    )
                    out[start : start + len(chunk)] = rows
            finally:
                self._lib.llama_memory_seq_rm(self._mem, scratch, -1, -1)
            return out

    # ------------------------------------------------------------ lifecycle

    def n_params(self) -> int | None:
        with self._lock:
            self._check_open()
            return int(self._lib.llama_model_n_params(self._model))

    def peak_memory(self) -> int:
        """The process's peak resident set in bytes: llama.cpp's weights, KV caches and
        compute buffers live in the process, not in a device allocator that could tell."""
        return _peak_rss_bytes()

    def close(self) -> None:
        with self._lock:
            lib = self._lib
            for seq in list(getattr(self, "_live", {}).values()):
                seq.closed = True
                self._drop_sampler(seq)
            if self._ctx is not None:
                getattr(self, "_logit_rows", {}).clear()  # views into the context's memory
                lib.llama_free(self._ctx)
                self._ctx = None
            if self._model is not None:
                lib.llama_model_free(self._model)
                self._model = None

    def __del__(self) -> None:
        # A forgotten engine still frees its C memory; a half-built one may lack attributes.
        # At interpreter exit the OS takes the memory back: freeing the context and weights
        # there (the final garbage collection reaches the Model through its scheduler's
        # reference cycles) delayed the exit after Ctrl+C by half a second.
        if getattr(self, "_lock", None) is not None and not sys.is_finalizing():
            self.close()


class _Batch:
    """A llama_batch over numpy arrays this engine owns (filled with vector ops, never freed
    through llama_batch_free), one seq id per token."""

    def __init__(self, lib: Any, capacity: int) -> None:
        self.capacity = capacity
        self.token = np.zeros(capacity, dtype=np.int32)
        self.pos = np.zeros(capacity, dtype=np.int32)
        self.n_seq_id = np.ones(capacity, dtype=np.int32)
        self.seq = np.zeros(capacity, dtype=np.int32)
        self.want = np.zeros(capacity, dtype=np.int8)
        i32p = ctypes.POINTER(ctypes.c_int32)
        base = self.seq.ctypes.data
        self._seq_ptrs = (i32p * capacity)(
            *(ctypes.cast(base + 4 * i, i32p) for i in range(capacity))
        )
        self.struct = lib.llama_batch(
            n_tokens=0,
            token=self.token.ctypes.data_as(i32p),
            embd=None,
            pos=self.pos.ctypes.data_as(i32p),
            n_seq_id=self.n_seq_id.ctypes.data_as(i32p),
            seq_id=ctypes.cast(self._seq_ptrs, ctypes.POINTER(i32p)),
            logits=self.want.ctypes.data_as(ctypes.POINTER(ctypes.c_int8)),
        )

    def fill(self, rows: list[tuple[int, int, int, bool]]) -> None:
        n = len(rows)
        if n > self.capacity:
            raise ValueError(f"{n} tokens do not fit a batch of {self.capacity}")
        if n == 1:
            # A decode step of one sequence: four scalar stores cost less than the slices.
            self.token[0], self.seq[0], self.pos[0], self.want[0] = rows[0]
            self.struct.n_tokens = 1
            return
        tokens, seqs, positions, wants = zip(*rows, strict=True)
        self.token[:n] = tokens
        self.seq[:n] = seqs
        self.pos[:n] = positions
        self.want[:n] = wants
        self.struct.n_tokens = n
