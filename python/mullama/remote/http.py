"""One HTTP/1.1 request whose body is read only as fast as the stream's consumer takes it.

A plain socket with h11 (the HTTP state machine uvicorn uses) rather than a client library:
the body is read with `recv` only when the producer asks for more, so a full stream buffer
stops the reading and TCP's flow control carries the backpressure to the server; every wait
lasts at most POLL_S before `should_stop` is asked again, so a cancel or the deadline closes
the connection within that time; and `close()` from any thread ends the request.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11

from mullama.remote.errors import RemoteConnectionError, RemoteProtocolError

POLL_S = 0.05
"""The longest a socket wait lasts before the stop check: the latency of a cancel."""
RECV_BYTES = 16 * 1024
USER_AGENT = "mullama"

StopCheck = Callable[[], bool]


class Stopped(Exception):
    """`should_stop` said so while the request waited: the caller abandons the request."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    """Lower-cased names; a repeated header keeps its last value."""

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


class HTTPRequest:
    """POSTs `body` (JSON bytes) to `url`; `response()` waits for the status line and
    headers, `read()` returns the next piece of the body."""

    def __init__(
        self,
        url: str,
        body: bytes,
        headers: dict[str, str],
        *,
        connect_timeout_s: float,
        should_stop: StopCheck,
        deadline: float | None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url
        self._ssl_context = ssl_context
        self._should_stop = should_stop
        self._deadline = deadline
        self._lock = threading.Lock()
        self._closed = False
        parts = urlsplit(url)
        host = parts.hostname or ""
        secure = parts.scheme == "https"
        port = parts.port or (443 if secure else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._sock = self._connect(host, port, secure, connect_timeout_s)
        self._conn = h11.Connection(our_role=h11.CLIENT)
        host_header = parts.netloc.rsplit("@", 1)[-1]
        request_headers = [
            ("Host", host_header),
            ("User-Agent", USER_AGENT),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            # One request per connection: closing it is how a reply is abandoned.
            ("Connection", "close"),
            *headers.items(),
        ]
        try:
            data = self._conn.send(
                h11.Request(method="POST", target=target, headers=request_headers)
            )
            data += self._conn.send(h11.Data(data=body)) or b""
            data += self._conn.send(h11.EndOfMessage()) or b""
            self._send(data or b"")
        except BaseException:
            self.close()
            raise

    def _connect(self, host: str, port: int, secure: bool, timeout_s: float) -> socket.socket:
        if self._deadline is not None:
            timeout_s = max(0.001, min(timeout_s, self._deadline - time.monotonic()))
        try:
            sock = socket.create_connection((host, port), timeout=timeout_s)
        except (OSError, ValueError) as exc:
            raise RemoteConnectionError(
                f"cannot connect to {self.url}: {_describe(exc)}", url=self.url
            ) from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if secure:
                context = self._ssl_context or ssl.create_default_context()
                sock = context.wrap_socket(sock, server_hostname=host)
            sock.settimeout(POLL_S)
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise RemoteConnectionError(
                f"cannot connect to {self.url}: {_describe(exc)}", url=self.url
            ) from exc
        return sock

    def _check(self) -> None:
        if self._closed or self._should_stop():
            raise Stopped
        if self._deadline is not None and time.monotonic() >= self._deadline:
            raise Stopped

    def _send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            self._check()
            try:
                sent = self._sock.send(view)
            except TimeoutError:
                continue
            except OSError as exc:
                raise self._lost(exc) from exc
            view = view[sent:]

    def _next_event(self) -> h11.Event:
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise RemoteProtocolError(
                    f"{self.url} sent malformed HTTP: {exc}", url=self.url
                ) from exc
            if event is not h11.NEED_DATA:
                return event
            self._check()
            try:
                data = self._sock.recv(RECV_BYTES)
            except TimeoutError:
                continue
            except OSError as exc:
                self._check()  # closed by close() from another thread: a stop, not a loss
                raise self._lost(exc) from exc
            self._conn.receive_data(data)

    def _lost(self, exc: BaseException) -> RemoteConnectionError:
        return RemoteConnectionError(
            f"the connection to {self.url} broke: {_describe(exc)}", url=self.url
        )

    def response(self) -> Response:
        """Waits for the status line and headers (raises Stopped if told to stop)."""
        while True:
            event = self._next_event()
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                headers = {
                    name.decode("latin-1").lower(): value.decode("latin-1")
                    for name, value in event.headers
                }
                return Response(event.status_code, headers)
            raise RemoteProtocolError(
                f"{self.url} closed the connection without answering", url=self.url
            )

    def read(self) -> bytes | None:
        """The next piece of the body; None at its end."""
        event = self._next_event()
        if isinstance(event, h11.Data):
            return bytes(event.data)
        if isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            return None
        raise RemoteProtocolError(f"{self.url} sent an unexpected {event!r}", url=self.url)

    def read_all(self, limit: int) -> bytes:
        """The whole body (an error reply or a non-streamed answer), at most `limit` bytes."""
        parts: list[bytes] = []
        size = 0
        while (piece := self.read()) is not None:
            parts.append(piece)
            size += len(piece)
            if size > limit:
                raise RemoteProtocolError(
                    f"{self.url} sent a reply body over {limit} bytes", url=self.url
                )
        return b"".join(parts)

    def close(self) -> None:
        """Ends the request (the server sees the connection close). Any thread, any time."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            # shutdown wakes a recv blocked in another thread; close alone may not.
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror or exc})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    return str(exc) or type(exc).__name__
