"""Async mullama for asyncio and trio (through anyio): AsyncModel, AsyncContext and
AsyncTokenStream."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mullama.aio.stream import AsyncTokenStream

if TYPE_CHECKING:
    from mullama.aio.model import AsyncContext, AsyncModel

__all__ = ["AsyncContext", "AsyncModel", "AsyncTokenStream"]


def __getattr__(name: str) -> Any:
    # The engine (MLX, mlx-lm) loads on first use, so streams and test helpers stay light.
    if name in ("AsyncContext", "AsyncModel"):
        from mullama.aio import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
