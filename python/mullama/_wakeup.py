"""The wake-up channel between a core TokenStream and a waiting consumer.

When `try_next()` finds nothing, the core writes one byte to the registered fd as soon as an
event or the end arrives, from the producer's thread and without the GIL. A non-blocking
socketpair gives the consumer something an event loop (or `select`) can wait on, so no thread
hop is needed per token.
"""

from __future__ import annotations

import socket

from mullama._core import TokenStream

_DRAIN_CHUNK = 4096


class WakeupSocket:
    """A socketpair whose write end is registered as `stream`'s wake-up fd."""

    __slots__ = ("reader", "_writer", "_stream")

    def __init__(self, stream: TokenStream) -> None:
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        self.reader = reader
        self._writer = writer
        self._stream: TokenStream | None = stream
        try:
            stream.set_wakeup_fd(writer.fileno())
        except BaseException:
            self._stream = None
            self.close()
            raise

    def drain(self) -> None:
        """Empties the reader so the next wait blocks until the next wake-up."""
        try:
            while len(self.reader.recv(_DRAIN_CHUNK)) == _DRAIN_CHUNK:
                pass
        except (BlockingIOError, InterruptedError):
            pass

    @property
    def closed(self) -> bool:
        return self.reader.fileno() < 0

    def close(self) -> None:
        """Unregisters the fd from the stream, then closes both ends. Idempotent.

        Unregistering first matters: the producer's thread must never write to an fd number
        that was closed and possibly reused by an unrelated file.
        """
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.set_wakeup_fd(-1)
        self._writer.close()
        self.reader.close()
