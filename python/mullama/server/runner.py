"""Running the app on uvicorn: in the foreground (`mullama serve`) or in a background thread
(tests, benchmarks, notebooks). Both end open streams before the server stops."""

from __future__ import annotations

import signal
import socket
import threading
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from mullama.server.defaults import DEFAULT_HOST, DEFAULT_LOG_LEVEL, DEFAULT_PORT

GRACEFUL_SHUTDOWN_S = 10


class _DrainingServer(uvicorn.Server):
    """A uvicorn server that, on SIGINT/SIGTERM, first tells every open stream to end."""

    def __init__(self, config: uvicorn.Config, app: Starlette) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._app.state.mullama.draining.set()
        # Not super(): uvicorn would re-raise the signal after shutting down, turning a
        # clean stop into a KeyboardInterrupt or a death by SIGTERM.
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn closes open WebSockets with 1012 at once, before any lifespan hook: each
        # gets its "shutting down" event first, so every client learns why.
        await self._app.state.mullama.close_websockets()
        await super().shutdown(sockets)


def _config(app: Starlette, host: str, port: int, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="off",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        ws="websockets-sansio",
        access_log=log_level == "debug",
    )


def bind_socket(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> socket.socket:
    """A bound socket; raises OSError (e.g. address in use) before anything starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def run_server(
    app: Starlette,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    log_level: str = DEFAULT_LOG_LEVEL,
    sock: socket.socket | None = None,
) -> None:
    """Serves until SIGINT or SIGTERM, then ends open streams and returns."""
    sock = sock or bind_socket(host, port)
    host, port = sock.getsockname()[:2]
    _DrainingServer(_config(app, host, port, log_level), app).run(sockets=[sock])


class BackgroundServer:
    """The app on uvicorn in a daemon thread, bound to 127.0.0.1 on a free port.

    with BackgroundServer(app) as server:
        httpx.get(server.url + "/v1/models")
    """

    def __init__(
        self, app: Starlette, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
    ) -> None:
        self.app = app
        self._sock = bind_socket(host, port)
        self.host, self.port = self._sock.getsockname()[:2]
        self._server = _DrainingServer(_config(app, self.host, self.port, log_level), app)
        self._thread = threading.Thread(target=self._run, name="mullama-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        self._server.run(sockets=[self._sock])

    def start(self, timeout_s: float = 30.0) -> BackgroundServer:
        self._thread.start()
        deadline = threading.Event()
        waited = 0.0
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server thread exited before it started")
            deadline.wait(0.01)
            waited += 0.01
            if waited > timeout_s:
                raise TimeoutError("the server did not start in time")
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ends open streams, then stops the server and waits for its thread."""
        self.app.state.mullama.draining.set()
        self._server.should_exit = True
        self._thread.join(timeout_s)
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
