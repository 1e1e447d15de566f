"""A FIFO lock: forward passes of concurrent streams on one model take turns in arrival order."""

from __future__ import annotations

import threading
from collections import deque


class FairLock:
    """Like threading.Lock, but waiters acquire in the order they asked.

    A plain Lock lets the thread that just released it win again at once, so one stream could
    starve the others between its steps.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._waiters: deque[threading.Lock] = deque()
        self._held = False

    def acquire(self) -> None:
        with self._mutex:
            if not self._held:
                self._held = True
                return
            gate = threading.Lock()
            gate.acquire()
            self._waiters.append(gate)
        # Ownership is handed over directly by release(): no thread can barge in.
        gate.acquire()

    def release(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._held = False

    def __enter__(self) -> FairLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
