"""A task ticking every 5 ms beside some async work: how late do its ticks get?"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

HEARTBEAT_PERIOD_S = 0.005


async def heartbeat_lateness(consume: Callable[[], Awaitable[None]]) -> tuple[float, int]:
    """Runs `consume()` beside a task ticking every 5 ms; returns the worst lateness of a
    tick and the number of ticks."""
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
    return max(lateness), len(lateness)
