"""What every handler shares: the served model, the server's limits, the drain flag, and the
open WebSocket connections (which a shutdown tells goodbye before the server closes them)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol

import anyio

from mullama.server.defaults import DEFAULT_MAX_BODY_BYTES
from mullama.server.engine import ServedModel


class ShuttingDown(Exception):
    """The server is stopping; open streams end with this message."""


class OpenConnection(Protocol):
    async def shut_down(self) -> None:
        """Ends the connection with a "shutting down" event; returns once it is closed."""


@dataclass
class ServerState:
    served: ServedModel
    api_key: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # A threading.Event: set from a signal handler or another thread, read by every stream.
    draining: threading.Event = field(default_factory=threading.Event)
    tokens_streamed: int = 0
    websockets: set[OpenConnection] = field(default_factory=set)

    def check_running(self) -> None:
        if self.draining.is_set():
            raise ShuttingDown("the server is shutting down")

    def count_token(self) -> None:
        self.tokens_streamed += 1

    async def close_websockets(self) -> None:
        """Sends every open WebSocket its "shutting down" event and closes it (1012)."""
        self.draining.set()
        async with anyio.create_task_group() as tg:
            for connection in list(self.websockets):
                tg.start_soon(connection.shut_down)
