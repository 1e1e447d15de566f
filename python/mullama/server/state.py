"""What every handler shares: the served model, the server's limits, and the drain flag."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from mullama.server.engine import ServedModel
from mullama.server.params import DEFAULT_MAX_BODY_BYTES


class ShuttingDown(Exception):
    """The server is stopping; open streams end with this message."""


@dataclass
class ServerState:
    served: ServedModel
    api_key: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # A threading.Event: set from a signal handler or another thread, read by every stream.
    draining: threading.Event = field(default_factory=threading.Event)
    tokens_streamed: int = 0

    def check_running(self) -> None:
        if self.draining.is_set():
            raise ShuttingDown("the server is shutting down")

    def count_token(self) -> None:
        self.tokens_streamed += 1
