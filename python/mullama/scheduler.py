"""The scheduler: one loop per Model owns the forward pass and batches every stream on it.

Each iteration of the loop:

1. runs the engine calls other threads asked for (a Context's cached tokens, logits, close),
2. admits queued generations in arrival order, up to the engine's `max_sequences` at once,
3. prefills admitted prompts in chunks, taking turns, for about PREFILL_CHUNK_S, so a long
   prompt never stalls the streams already decoding nor a short prompt behind it,
4. runs ONE `engine.step` over every decoding sequence whose stream buffer has room, and
   pushes each sampled token into its sequence's core stream.

A sequence whose stream is full is left out of the step (parked, its KV kept) until its
consumer reads; the core notifies the loop's RoomSignal then, and when a stream ends, so a
cancelled or disconnected stream leaves the batch at the next iteration. With nothing to do
the loop sleeps on that signal (without the GIL), waking at least every IDLE_WAIT_S to notice
passed deadlines. The loop runs on one of the long-lived producer threads while there is work
and gives the thread back when there is none.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from mullama._core import RoomSignal, StreamConfig, TokenProducer
from mullama.engines.base import Engine, EngineSequence, SamplerSettings, StepRequest
from mullama.errors import Superseded
from mullama.producer import submit_to_producer_thread, track_job, untrack_job

T = TypeVar("T")

PREFILL_CHUNK_S = 0.1
"""Target duration of one prompt chunk, and of one iteration's prompt work: about the most a
decoding stream waits for other streams' prompts between two of its tokens, and the most a
stop waits while a prompt is read."""
# On MLX-CPU a prompt token costs as much as a decode step (about 0.1 s on a 2-core host), so
# chunks start tiny; on engines that batch prompt tokens well they grow to the maximum.
PREFILL_FIRST_CHUNK = 2
PREFILL_MAX_CHUNK = 512

IDLE_WAIT_S = 0.05
"""The longest the loop sleeps while sequences are parked or queued: how late a passed
deadline of a parked stream is noticed at most."""


def split_first_step(todo: list[int], fixed_chunk: int | None) -> tuple[list[int], list[int]]:
    """Splits the prompt ids a sequence lacks into (prefilled in chunks, fed by its first
    step). The first step feeds the prompt's last token, or on an engine with fixed chunks
    the prompt's last partial chunk: the same cut as a one-shot read of a short prompt, so
    a prompt's numerics do not depend on how it was scheduled."""
    tail = (len(todo) - 1) % fixed_chunk + 1 if fixed_chunk else 1
    return todo[:-tail], todo[-tail:]


def next_chunk_size(fed: int, took_s: float) -> int:
    """The next prompt chunk of an engine without fixed chunks: about PREFILL_CHUNK_S of work
    at the rate the last chunk (`fed` tokens in `took_s`) was read."""
    rate = fed / max(took_s, 1e-6)
    return max(1, min(PREFILL_MAX_CHUNK, int(rate * PREFILL_CHUNK_S)))


class GenerationJob:
    """One generation on one engine sequence, run by its Model's scheduler.

    `cancel()` ends it, `join()` waits until it has left the batch, `tokens_computed` and
    `prefill_tokens` tell how much compute it took."""

    def __init__(
        self,
        scheduler: Scheduler,
        sequence: EngineSequence,
        prompt_ids: list[int],
        config: StreamConfig,
        producer: TokenProducer,
        end_of_generation_ids: frozenset[int],
        top_logprobs: int = 0,
        on_exit: Callable[[GenerationJob], None] | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.sequence = sequence
        self.prompt_ids = prompt_ids
        self.config = config
        self.producer = producer
        self.top_logprobs = top_logprobs
        self.end_of_generation_ids = end_of_generation_ids
        self.prefill_tokens = 0
        """How many prompt tokens had to run through the model (the rest were cached)."""
        self.tokens_computed = 0
        """Tokens the engine has sampled so far."""
        self.admission: int | None = None
        """Its place in the scheduler's admission order (0 first) once it joined the batch."""
        self._on_exit = on_exit
        self._abort: BaseException | None = None
        self._done = threading.Event()
        # The scheduler's bookkeeping (only its loop thread touches these).
        self.prompt_left: list[int] = []
        """Prompt ids still to prefill (all but what the first step feeds)."""
        self.first_input: list[int] | None = None
        """The prompt's last ids, fed by the sequence's first step (None once fed)."""
        self.decoding = False
        self.prefill_chunk = PREFILL_FIRST_CHUNK
        """Prompt tokens its next chunk feeds (grown by its measured rate)."""

    @property
    def engine(self) -> Engine:
        return self.scheduler.engine

    def start(self) -> None:
        self.scheduler.submit(self)

    def is_running(self) -> bool:
        return not self._done.is_set()

    def join(self, timeout: float | None = None) -> bool:
        """Waits until the job has stopped; True if it did within `timeout`."""
        return self._done.wait(timeout)

    def cancel(self, reason: BaseException | None = None) -> None:
        """Ends the stream with `reason` (default: Superseded); the sequence leaves the batch
        at the scheduler's next iteration. Returns at once (join() waits)."""
        self._abort = reason if reason is not None else Superseded()
        # fail() ends the stream, which notifies the scheduler's signal.
        self.producer.fail(self._abort)

    def should_stop(self) -> bool:
        return self._abort is not None or self.producer.stop_reason is not None

    def exited(self) -> None:
        """Called by the scheduler once the job has left it for good."""
        untrack_job(self)
        try:
            if self._on_exit is not None:
                self._on_exit(self)
        finally:
            self._done.set()


class ThreadedJob(GenerationJob):
    """A generation whose own loop decides each engine call (wait-k waits for source words
    between steps): it runs on a producer thread and makes every engine call through
    `scheduler.call`, so its calls fall between the batch's steps and never race them."""

    def start(self) -> None:
        track_job(self)
        submit_to_producer_thread(self._run)

    def generate(self) -> None:
        """The job's work (a subclass's); an exception it raises fails the stream."""
        raise NotImplementedError

    def _run(self) -> None:
        try:
            self.generate()
        except BaseException as exc:  # the consumer re-raises it as GenerationError
            try:
                self.scheduler.call(self.sequence.invalidate)
            except Exception:  # noqa: S110 - e.g. the engine was closed: nothing to forget
                pass
            self.producer.fail(exc)
        finally:
            self.exited()

    def prefill(self, ids: list[int]) -> bool:
        """Feeds `ids` chunk by chunk (each chunk between two of the batch's steps, sized as
        the scheduler sizes a batched prompt's); False if told to stop meanwhile."""
        engine = self.engine
        fixed = engine.prefill_chunk
        chunk = fixed or PREFILL_FIRST_CHUNK
        done = 0
        while done < len(ids):
            if self.should_stop():
                return False
            part = ids[done : done + chunk]
            fed_all, took = self.scheduler.call(
                _timed, engine.prefill, self.sequence, part, self.should_stop
            )
            if not fed_all:
                return False
            done += len(part)
            if not fixed:
                chunk = next_chunk_size(len(part), took)
        return not self.should_stop()


def _timed(work: Callable[..., T], *args: Any) -> tuple[T, float]:
    began = time.perf_counter()
    value = work(*args)
    return value, time.perf_counter() - began


class _Call:
    """An engine call another thread asked the loop to run between steps."""

    def __init__(self, work: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.work = work
        self.args = args
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.value = self.work(*self.args)
        except BaseException as exc:  # handed to the caller
            self.error = exc
        finally:
            self.done.set()


class Scheduler:
    """The forward pass of one engine: admits, prefills and steps every generation on it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.max_active = max(1, engine.max_sequences)
        """The most sequences one step advances (and that are admitted at once)."""
        self._signal = RoomSignal()
        self._lock = threading.Lock()  # guards _queue, _calls and _looping
        self._queue: deque[GenerationJob] = deque()
        self._calls: deque[_Call] = deque()
        self._looping = False
        self._loop_thread: int | None = None
        self._active: list[GenerationJob] = []
        self._prefill_turn = 0
        self.admitted = 0
        """Generations admitted into the batch so far."""
        self.steps = 0
        """Batched decode steps run so far."""
        self.step_sequences = 0
        """Sequences those steps advanced, summed (step_sequences / steps = mean batch)."""

    # -- what other threads call ---------------------------------------------------------------
    @property
    def queued(self) -> int:
        """Generations waiting for a place in the batch."""
        with self._lock:
            return len(self._queue)

    @property
    def active(self) -> int:
        """Generations in the batch (prefilling, decoding or parked)."""
        return len(self._active)

    def submit(self, job: GenerationJob) -> None:
        """Queues `job`; it joins the batch in arrival order."""
        track_job(job)
        job.producer.set_room_signal(self._signal)
        with self._lock:
            self._queue.append(job)
            self._ensure_loop()
        self._signal.notify()

    def call(self, work: Callable[..., T], *args: Any) -> T:
        """Runs `work(*args)` on the loop's thread between two steps and returns its result:
        every engine call goes through the loop, so none races a step."""
        if threading.get_ident() == self._loop_thread:
            return work(*args)
        pending = _Call(work, args)
        with self._lock:
            self._calls.append(pending)
            self._ensure_loop()
        self._signal.notify()
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.value

    def _ensure_loop(self) -> None:
        # Under self._lock: the loop only stops after checking, under the same lock, that no
        # work is left, so work queued here is always picked up.
        if not self._looping:
            self._looping = True
            submit_to_producer_thread(self._loop)

    # -- the loop ----------------------------------------------------------------------------
    def _loop(self) -> None:
        self._loop_thread = threading.get_ident()
        try:
            while True:
                epoch = self._signal.epoch
                self._run_calls()
                self._drop_stopped()
                self._admit()
                progressed = self._prefill()
                progressed = self._decode() or progressed
                with self._lock:
                    if not self._active and not self._queue and not self._calls:
                        self._looping = False
                        self._loop_thread = None
                        return
                if not progressed:
                    self._signal.wait(epoch, IDLE_WAIT_S)
        except BaseException as exc:
            # A bug in the loop itself: end every stream rather than leave them hanging.
            with self._lock:
                jobs = self._active + list(self._queue)
                self._active, self._queue = [], deque()
                calls, self._calls = list(self._calls), deque()
                self._looping = False
                self._loop_thread = None
            for job in jobs:
                job.producer.fail(exc)
                job.exited()
            for pending in calls:
                pending.error = exc
                pending.done.set()
            raise

    def _run_calls(self) -> None:
        while True:
            with self._lock:
                if not self._calls:
                    return
                pending = self._calls.popleft()
            pending.run()

    def _leave(self, job: GenerationJob) -> None:
        self._active.remove(job)
        job.exited()

    def _fail(self, job: GenerationJob, exc: BaseException) -> None:
        try:
            job.sequence.invalidate()
        except Exception:  # noqa: S110 - e.g. the engine was closed: nothing is left to forget
            pass
        job.producer.fail(exc)
        self._leave(job)

    def _drop_stopped(self) -> None:
        """Cancelled, disconnected and timed-out streams leave the batch (queued ones too)."""
        for job in [j for j in self._active if j.should_stop()]:
            self._leave(job)
        with self._lock:
            stopped = [j for j in self._queue if j.should_stop()]
            for job in stopped:
                self._queue.remove(job)
        for job in stopped:
            job.exited()

    def _admit(self) -> None:
        while len(self._active) < self.max_active:
            with self._lock:
                if not self._queue:
                    return
                job = self._queue.popleft()
            self._active.append(job)
            job.admission = self.admitted
            self.admitted += 1
            try:
                job.producer.set_prompt_tokens(len(job.prompt_ids))
                todo = job.sequence.reuse_prefix(job.prompt_ids)
            except BaseException as exc:
                self._fail(job, exc)
                continue
            job.prefill_tokens = len(todo)
            job.prompt_left, job.first_input = split_first_step(todo, self.engine.prefill_chunk)

    def _prefill(self) -> bool:
        """Feeds prompt chunks for about PREFILL_CHUNK_S; True if any prompt work was done.

        Each prompt is cut as when it is read alone: in the engine's fixed chunks where its
        numerics depend on the cut (llama.cpp), else in chunks grown from PREFILL_FIRST_CHUNK
        by that prompt's measured rate. The prompts take turns (the first served rotates
        every iteration), so a short prompt is never stuck behind a long one. An engine that
        can stop inside a chunk is told to when the prompt's stream ends."""
        prefilling = [j for j in self._active if not j.decoding]
        if not prefilling:
            return False
        turn = self._prefill_turn % len(prefilling)
        self._prefill_turn += 1
        started = time.perf_counter()
        worked = False
        for job in prefilling[turn:] + prefilling[:turn]:
            if worked and time.perf_counter() - started >= PREFILL_CHUNK_S:
                break
            if job.should_stop():
                continue
            fixed = self.engine.prefill_chunk
            part = job.prompt_left[: fixed or job.prefill_chunk]
            try:
                if part:
                    began = time.perf_counter()
                    fed_all = self.engine.prefill(job.sequence, part, job.should_stop)
                    took = time.perf_counter() - began
                    worked = True
                    if not fed_all:
                        continue  # its stream ended mid-chunk: it leaves next iteration
                    del job.prompt_left[: len(part)]
                    if not fixed:
                        job.prefill_chunk = next_chunk_size(len(part), took)
                if not job.prompt_left:
                    fed_by_step = len(job.first_input or ())
                    job.sequence.configure(
                        SamplerSettings.from_config(job.config),
                        job.prompt_ids[: len(job.prompt_ids) - fed_by_step],
                    )
                    job.decoding = True
            except BaseException as exc:
                self._fail(job, exc)
        return worked

    def _decode(self) -> bool:
        """One batched step over every decoding sequence with room in its stream; True if a
        step ran."""
        ready = [
            j for j in self._active if j.decoding and not j.should_stop() and j.producer.room() > 0
        ]
        if not ready:
            return False
        requests = [StepRequest(j.sequence, j.first_input, j.top_logprobs) for j in ready]
        try:
            outputs = self.engine.step(requests).result()
        except BaseException as exc:
            for job in ready:
                self._fail(job, exc)
            return True
        self.steps += 1
        self.step_sequences += len(ready)
        peak = self.engine.peak_memory()
        for job, out in zip(ready, outputs, strict=True):
            job.first_input = None
            job.tokens_computed += 1
            producer = job.producer
            producer.set_peak_memory(peak)
            try:
                if out.token in job.end_of_generation_ids:
                    producer.finish("stop", out.token)
                    self._leave(job)
                elif not producer.push(out.token, out.logprob, out.top_logprobs):
                    self._leave(job)
                elif len(job.sequence.cached_ids) >= job.sequence.n_ctx:
                    # The next step would feed this token into a full context.
                    producer.finish("length", None)
                    self._leave(job)
            except BaseException as exc:
                self._fail(job, exc)
        return True
