"""Producer threads: the long-lived threads that run engine work (the schedulers' loops,
model loading for async callers), and the registry of running generations.

A generation itself is a `mullama.scheduler.GenerationJob`, run by its Model's scheduler.
"""

from __future__ import annotations

import atexit
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from mullama.errors import Interrupted

T = TypeVar("T")


class RunningJob(Protocol):
    """What the exit hook needs of a running generation (a scheduler's GenerationJob)."""

    def cancel(self, reason: BaseException | None = None) -> None: ...
    def join(self, timeout: float | None = None) -> bool: ...


_running_jobs: weakref.WeakSet[RunningJob] = weakref.WeakSet()


def running_jobs() -> int:
    """How many generations are running in this process (for leak checks)."""
    return len(_running_jobs)


def track_job(job: RunningJob) -> None:
    """Counts `job` as running until `untrack_job` (stopped at interpreter exit)."""
    _running_jobs.add(job)


def untrack_job(job: RunningJob) -> None:
    _running_jobs.discard(job)


class _ProducerThreads:
    """Long-lived daemon threads that run generation jobs, reused from job to job.

    A thread that exits after using MLX races the interpreter's finalization (its thread-local
    MLX state is torn down while the process exits, which aborts it), and a thread per stream
    costs a spawn per request. Threads are added when every one is busy and parked on a queue
    otherwise.
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


def submit_to_producer_thread(work: Callable[[], None]) -> None:
    """Runs `work()` on one of the long-lived producer threads; returns at once."""
    _producer_threads.submit(work)


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
    # Producer threads are daemons: at exit, one still inside MLX would be killed mid-call.
    # End every stream and wait until each job has left its scheduler.
    jobs = list(_running_jobs)
    for job in jobs:
        job.cancel(Interrupted())
    for job in jobs:
        job.join(timeout=30)


# Like concurrent.futures: runs before the interpreter starts finalizing (plain atexit is later).
_register = getattr(threading, "_register_atexit", atexit.register)
_register(_stop_running_jobs)
