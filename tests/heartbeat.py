"""A task ticking every 5 ms beside some async work: how late do its ticks get?

An event loop that some call blocks is late on most ticks while the call runs (or gets few
ticks at all); a small shared machine is late on a single tick now and then (a GC pause,
another process taking the core). So a test bounds the typical tick tightly and the worst
tick loosely, and counts the ticks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

HEARTBEAT_PERIOD_S = 0.005
# 90% of ticks within this: a loop blocked for more than a tenth of the run fails.
TYPICAL_MAX_LATENESS_S = 0.020
# Any one tick: far above scheduler noise, far below a blocking read of the whole stream.
WORST_MAX_LATENESS_S = 0.250


@dataclass(frozen=True)
class Heartbeat:
    typical: float  # 90th percentile of the ticks' lateness, seconds
    worst: float
    ticks: int

    def check(self, min_ticks: int = 10) -> None:
        assert self.ticks >= min_ticks, f"only {self.ticks} heartbeat ticks"
        assert self.typical <= TYPICAL_MAX_LATENESS_S, (
            f"heartbeat typically {self.typical * 1e3:.1f} ms late"
        )
        assert self.worst <= WORST_MAX_LATENESS_S, f"heartbeat {self.worst * 1e3:.1f} ms late"


async def heartbeat_lateness(consume: Callable[[], Awaitable[None]]) -> Heartbeat:
    """Runs `consume()` beside a task ticking every 5 ms; reports how late its ticks were."""
    lateness: list[float] = []
    done = anyio.Event()

    async def heartbeat() -> None:
        while not done.is_set():
            due = anyio.current_time() + HEARTBEAT_PERIOD_S
            await anyio.sleep_until(due)
            lateness.append(anyio.current_time() - due)

    async with anyio.create_task_group() as tg:
        tg.start_soon(heartbeat)
        await consume()
        done.set()
    ordered = sorted(lateness)
    typical = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return Heartbeat(typical=typical, worst=ordered[-1], ticks=len(ordered))
