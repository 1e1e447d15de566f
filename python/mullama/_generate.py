"""The producer: runs the MLX forward pass in a thread and pushes token ids into the core.

One step stays in flight (`mx.async_eval`): the next token computes while the previous one
is detokenized and delivered. When the core says stop (consumer gone, stop sequence,
max_tokens, deadline) the loop ends, so at most the one in-flight step is wasted.
"""

from __future__ import annotations

import atexit
import queue
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import mlx.core as mx
from mlx_lm.sample_utils import make_logits_processors, make_sampler

from mullama._core import MullamaError, StreamConfig, TokenProducer

if TYPE_CHECKING:
    from mullama.context import Context

T = TypeVar("T")
Step = tuple[mx.array, mx.array, mx.array]  # sampled token, its row of logprobs, its logprob
PREFILL_CHUNK = 512
# Like mlx-lm's: generation work goes to its own stream, one per producer thread.
_generation_stream = mx.new_thread_local_stream(mx.default_device())
REPETITION_CONTEXT = 64


class Superseded(MullamaError):
    """A newer generation on the same Context replaced this one."""


class Interrupted(MullamaError):
    """The interpreter is exiting while this generation runs."""


_running_jobs: weakref.WeakSet[GenerationJob] = weakref.WeakSet()


class _ProducerThreads:
    """Long-lived daemon threads that run generation jobs, reused from job to job.

    A thread that exits after using MLX races the interpreter's finalization (its thread-local
    MLX state is torn down while the process exits, which aborts it), and a thread per stream
    costs a spawn per request. Threads are added when every one is busy (a producer blocked by
    backpressure holds its thread) and parked on a queue otherwise.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[queue.SimpleQueue[Callable[[], None]]] = []
        self.count = 0

    def submit(self, work: Callable[[], None]) -> None:
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
            if inbox is None:
                inbox = queue.SimpleQueue()
                self.count += 1
                name = f"mullama-producer-{self.count}"
                threading.Thread(target=self._serve, args=(inbox,), name=name, daemon=True).start()
        inbox.put(work)

    def _serve(self, inbox: queue.SimpleQueue[Callable[[], None]]) -> None:
        while True:
            work = inbox.get()
            work()
            del work
            with self._lock:
                self._idle.append(inbox)


_producer_threads = _ProducerThreads()


def run_on_mlx_thread(work: Callable[..., T], *args: Any) -> T:
    """Runs `work(*args)` on one of the long-lived producer threads and waits for it.

    For MLX work requested from short-lived threads (e.g. anyio's worker threads): a thread
    that used MLX and exits while the interpreter shuts down aborts the process."""
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work(*args)
        except BaseException as exc:  # handed to the caller
            outcome["error"] = exc
        finally:
            done.set()

    _producer_threads.submit(run)
    done.wait()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _stop_running_jobs() -> None:
    # Producers are daemon threads: at exit, one still inside MLX would be killed mid-call.
    # End every stream and wait until each job has left MLX.
    jobs = list(_running_jobs)
    for job in jobs:
        job.abort.set()
        job.producer.fail(Interrupted("the interpreter is exiting"))
    for job in jobs:
        job.join(timeout=30)


# Like concurrent.futures: runs before the interpreter starts finalizing (plain atexit is later).
_register = getattr(threading, "_register_atexit", atexit.register)
_register(_stop_running_jobs)


class GenerationJob:
    """One generation on one Context, run by `start()` in a daemon thread."""

    def __init__(
        self,
        context: Context,
        prompt_ids: list[int],
        config: StreamConfig,
        producer: TokenProducer,
        top_logprobs: int,
        on_exit: Callable[[GenerationJob], None],
    ) -> None:
        self.context = context
        self.prompt_ids = prompt_ids
        self.config = config
        self.producer = producer
        self.top_logprobs = top_logprobs
        self._on_exit = on_exit
        self.abort = threading.Event()
        self.tokens_computed = 0
        self._done = threading.Event()

    def start(self) -> None:
        _running_jobs.add(self)
        _producer_threads.submit(self._run)

    def is_running(self) -> bool:
        return not self._done.is_set()

    def join(self, timeout: float | None = None) -> bool:
        """Waits until the job has stopped; True if it did within `timeout`."""
        return self._done.wait(timeout)

    def _run(self) -> None:
        try:
            with mx.stream(_generation_stream):
                self._generate()
        except BaseException as exc:  # the consumer re-raises it as GenerationError
            self.context._invalidate_cache()
            self.producer.fail(exc)
        finally:
            _running_jobs.discard(self)
            self._on_exit(self)
            self._done.set()

    def _generate(self) -> None:
        ctx = self.context
        model = ctx.model
        lm = model.mlx_model
        lock = model.forward_lock
        config = self.config
        producer = self.producer
        eog = model.end_of_generation_ids

        sampler = make_sampler(
            temp=config.temperature,
            top_p=config.top_p if config.top_p < 1.0 else 0.0,
            min_p=config.min_p,
            top_k=config.top_k,
        )
        processors = make_logits_processors(
            repetition_penalty=config.repeat_penalty if config.repeat_penalty != 1.0 else None,
            repetition_context_size=REPETITION_CONTEXT,
        )
        if config.seed is not None:
            # MLX's random state is per thread and a producer thread runs one job at a time,
            # so seeding here makes this stream reproducible whatever other streams do.
            mx.random.seed(config.seed)
        history = list(self.prompt_ids)

        producer.set_prompt_tokens(len(self.prompt_ids))
        with lock:
            todo = ctx._reuse_prefix(self.prompt_ids)
        cache = ctx._cache

        # Prefill all but the last prompt token in chunks, letting other streams take turns.
        while len(todo) > 1:
            if self._should_stop():
                return
            n = min(PREFILL_CHUNK, len(todo) - 1)
            chunk, todo = todo[:n], todo[n:]
            with lock:
                lm(mx.array(chunk)[None], cache=cache)
                mx.eval([c.state for c in cache])
                ctx._cached_ids.extend(chunk)

        def recent_tokens(last: mx.array | None) -> mx.array | None:
            """The window the repetition penalty looks at, ending with the (lazy) `last`."""
            if not processors:
                return None
            if last is None:
                return mx.array(history[-REPETITION_CONTEXT:])
            return mx.concatenate([mx.array(history[-(REPETITION_CONTEXT - 1) :]), last])

        def step(inputs: mx.array, recent: mx.array | None) -> Step:
            logits = lm(inputs[None], cache=cache)[:, -1, :]
            for processor in processors:
                logits = processor(recent, logits)
            logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
            token = sampler(logprobs)
            # Part of the step's graph: reading it later must not queue work behind the
            # next step that is already in flight on the same stream.
            chosen = mx.take_along_axis(logprobs, token[:, None], axis=-1)
            return token, logprobs.squeeze(0), chosen

        with lock:
            y, logprobs, chosen = step(mx.array(todo), recent_tokens(None))
            mx.async_eval(y, logprobs, chosen)
            ctx._cached_ids.extend(todo)

        n_ctx = ctx.n_ctx
        while True:
            with lock:
                in_flight = None
                if len(ctx._cached_ids) < n_ctx and not self.abort.is_set():
                    # Queue the next step before reading this token, as mlx-lm does, so the
                    # device never waits on Python; if this token ends the reply, that step
                    # is wasted.
                    in_flight = step(y, recent_tokens(y))
                    mx.async_eval(*in_flight)
                token = int(y.item())
                self.tokens_computed += 1
                if in_flight is not None:
                    ctx._cached_ids.append(token)
                history.append(token)
                logprob = float(chosen.item())
                top = self._top(logprobs) if self.top_logprobs else None
                producer.set_peak_memory(int(mx.get_peak_memory()))
            if token in eog:
                producer.finish("stop", token)
                return
            if not producer.push(token, logprob, top):
                return
            if self._should_stop():
                return
            if in_flight is None:  # the context is full
                producer.finish("length", None)
                return
            y, logprobs, chosen = in_flight

    def _should_stop(self) -> bool:
        if self.abort.is_set():
            self.producer.fail(Superseded("a newer generation on this Context replaced this one"))
            return True
        return self.producer.stop_reason is not None

    def _top(self, logprobs: mx.array) -> list[tuple[int, float]]:
        k = min(self.top_logprobs, logprobs.shape[-1])
        idx = mx.argpartition(-logprobs, kth=k - 1)[:k]
        values = logprobs[idx]
        order = mx.argsort(-values)
        idx, values = idx[order].tolist(), values[order].tolist()
        return [(int(i), float(v)) for i, v in zip(idx, values, strict=True)]
