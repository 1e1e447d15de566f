"""The producer: runs an engine's forward pass in a thread and pushes token ids into the core.

One step stays in flight: the next token computes while the previous one is detokenized and
delivered. When the core says stop (consumer gone, stop sequence, max_tokens, deadline) the
loop ends, so at most the one in-flight step is wasted. Prompts are read in chunks sized to
take about PREFILL_CHUNK_S each, and stop is checked between chunks, so a long prompt can be
abandoned at once and other streams on the model get their turn.
"""

from __future__ import annotations

import atexit
import queue
import threading
import time
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from mullama._core import StreamConfig, TokenProducer
from mullama.engines.base import Engine, EngineSequence, SamplerSettings, StepRequest
from mullama.errors import Interrupted, Superseded

T = TypeVar("T")

PREFILL_CHUNK_S = 0.1
"""Target duration of one prompt chunk: the most a stop waits while a prompt is read."""
# On MLX-CPU a prompt token costs as much as a decode step (about 0.1 s on a 2-core host), so
# chunks start tiny; on engines that batch prompt tokens well they grow to the maximum.
PREFILL_FIRST_CHUNK = 2
PREFILL_MAX_CHUNK = 512

_running_jobs: weakref.WeakSet[GenerationJob] = weakref.WeakSet()


def running_jobs() -> int:
    """How many generations are running in this process (for leak checks)."""
    return len(_running_jobs)


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


def run_on_producer_thread(work: Callable[..., T], *args: Any) -> T:
    """Runs `work(*args)` on one of the long-lived producer threads and waits for it.

    For engine work requested from short-lived threads (e.g. anyio's worker threads): a
    thread that used MLX and exits while the interpreter shuts down aborts the process."""
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
    # End every stream and wait until each job has left the engine.
    jobs = list(_running_jobs)
    for job in jobs:
        job.cancel(Interrupted())
    for job in jobs:
        job.join(timeout=30)


# Like concurrent.futures: runs before the interpreter starts finalizing (plain atexit is later).
_register = getattr(threading, "_register_atexit", atexit.register)
_register(_stop_running_jobs)


class GenerationJob:
    """One generation on one engine sequence, run by `start()` on a producer thread."""

    def __init__(
        self,
        engine: Engine,
        sequence: EngineSequence,
        forward_lock: AbstractContextManager[Any],
        prompt_ids: list[int],
        config: StreamConfig,
        producer: TokenProducer,
        end_of_generation_ids: frozenset[int],
        top_logprobs: int = 0,
        on_exit: Callable[[GenerationJob], None] | None = None,
    ) -> None:
        self.engine = engine
        self.sequence = sequence
        self.prompt_ids = prompt_ids
        self.config = config
        self.producer = producer
        self.top_logprobs = top_logprobs
        self.end_of_generation_ids = end_of_generation_ids
        self.prefill_tokens = 0
        """How many prompt tokens had to run through the model (the rest were cached)."""
        self.tokens_computed = 0
        """Tokens the engine has sampled so far (the in-flight step not counted)."""
        self._lock = forward_lock
        self._on_exit = on_exit
        self._abort: BaseException | None = None
        self._done = threading.Event()

    def start(self) -> None:
        _running_jobs.add(self)
        _producer_threads.submit(self._run)

    def is_running(self) -> bool:
        return not self._done.is_set()

    def join(self, timeout: float | None = None) -> bool:
        """Waits until the job has stopped; True if it did within `timeout`."""
        return self._done.wait(timeout)

    def cancel(self, reason: BaseException | None = None) -> None:
        """Ends the stream with `reason` (default: Superseded) and stops the compute at the
        next step or prompt chunk; returns at once (join() waits)."""
        self._abort = reason if reason is not None else Superseded()
        # fail() ends the stream, which also wakes a push blocked on a full buffer.
        self.producer.fail(self._abort)

    def _run(self) -> None:
        try:
            self._generate()
        except BaseException as exc:  # the consumer re-raises it as GenerationError
            self.sequence.invalidate()
            self.producer.fail(exc)
        finally:
            _running_jobs.discard(self)
            if self._on_exit is not None:
                self._on_exit(self)
            self._done.set()

    def _should_stop(self) -> bool:
        return self._abort is not None or self.producer.stop_reason is not None

    def _generate(self) -> None:
        engine, seq, lock, producer = self.engine, self.sequence, self._lock, self.producer
        producer.set_prompt_tokens(len(self.prompt_ids))
        with lock:
            todo = seq.reuse_prefix(self.prompt_ids)
        self.prefill_tokens = len(todo)
        if not self._prefill(todo[:-1]):
            return
        eog = self.end_of_generation_ids
        run_ahead = engine.steps_run_ahead
        with lock:
            seq.configure(SamplerSettings.from_config(self.config), self.prompt_ids[:-1])
            pending = engine.step([StepRequest(seq, todo[-1:], self.top_logprobs)])
        while True:
            with lock:
                room = len(seq.cached_ids) < seq.n_ctx
                ahead = None
                if run_ahead and room and self._abort is None:
                    # Queue the next step before reading this token, as mlx-lm does, so the
                    # device never waits on Python; if this token ends the reply, that step
                    # is wasted.
                    ahead = engine.step([StepRequest(seq, None, self.top_logprobs)])
                out = pending.result()[0]
                self.tokens_computed += 1
                producer.set_peak_memory(engine.peak_memory())
            if out.token in eog:
                producer.finish("stop", out.token)
                return
            if not producer.push(out.token, out.logprob, out.top_logprobs):
                return
            if self._should_stop():
                return
            if not room:  # the context is full
                producer.finish("length", None)
                return
            if ahead is None:
                # A synchronous engine: the token went out first, so the consumer never
                # waits for the step after it.
                with lock:
                    ahead = engine.step([StepRequest(seq, None, self.top_logprobs)])
            pending = ahead

    def _prefill(self, ids: list[int]) -> bool:
        """Feeds `ids` in chunks of about PREFILL_CHUNK_S (or the engine's fixed chunk);
        False if told to stop meanwhile."""
        fixed = self.engine.prefill_chunk
        chunk = fixed or PREFILL_FIRST_CHUNK
        done = 0
        while done < len(ids):
            if self._should_stop():
                return False
            part = ids[done : done + chunk]
            with self._lock:
                started = time.perf_counter()
                fed_all = self.engine.prefill(self.sequence, part, self._should_stop)
                took = time.perf_counter() - started
            if not fed_all:
                return False
            done += len(part)
            if not fixed:
                rate = len(part) / max(took, 1e-6)
                chunk = max(1, min(PREFILL_MAX_CHUNK, int(rate * PREFILL_CHUNK_S)))
        return not self._should_stop()
