"""Fixtures for the server and CLI tests: model files, loaded models, and mullama servers on
free ports of 127.0.0.1 (uvicorn in a background thread). Test modules take them through
`pytest_plugins = ["server_fixtures"]`.

Most tests use the tiny random-weight Llama (hundreds of tokens per second; its replies are
byte soup, but deterministic under greedy decoding). A few keep the built-in SmolLM2, whose
replies are real text, to check the whole path with a realistic model.
"""

from __future__ import annotations

import json
import logging
import socket
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

from mullama.server import BackgroundServer, ServedModel, create_app

TINY_NAME = "tiny"
DEFAULT_NAME = "smollm2"
# The tiny model's weights with a longer context than conftest's copy (256 tokens), so
# streams of thousands of tokens (backpressure, disconnects, signals) fit.
TINY_CONTEXT = 8192


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama (conftest's weights) as an F32 GGUF with an 8192-token context."""
    from mullama.testing.tiny_models import TinyConfig, write_tiny_gguf

    folder = tmp_path_factory.mktemp("served_models")
    return write_tiny_gguf(folder / "tiny.gguf", TinyConfig(context_length=TINY_CONTEXT))


@pytest.fixture(scope="session")
def tiny_model(tiny_model_path: Path, engine_name: str):
    """The tiny model on each engine in turn (conftest's `engine_name`)."""
    from mullama.model import Model

    return Model.load(tiny_model_path, engine=engine_name, n_ctx=TINY_CONTEXT)


def start_server(
    model,
    name: str = TINY_NAME,
    *,
    api_key: str | None = None,
    max_body_bytes: int | None = None,
    **served_options,
) -> BackgroundServer:
    served = ServedModel(model, name, **served_options)
    options = {} if max_body_bytes is None else {"max_body_bytes": max_body_bytes}
    return BackgroundServer(create_app(served, api_key=api_key, **options)).start()


@pytest.fixture(scope="module")
def server(tiny_model) -> Iterator[BackgroundServer]:
    """The tiny model served as 'tiny'."""
    running = start_server(tiny_model)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def default_server(default_model) -> Iterator[BackgroundServer]:
    """SmolLM2 served as 'smollm2'."""
    running = start_server(default_model, DEFAULT_NAME)
    yield running
    running.stop()


@pytest.fixture
def server_factory(tiny_model) -> Iterator[Callable[..., BackgroundServer]]:
    """Starts extra tiny-model servers with other options (api_key, max_body_bytes, ...)."""
    started: list[BackgroundServer] = []

    def start(**options) -> BackgroundServer:
        started.append(start_server(tiny_model, **options))
        return started[-1]

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def poll() -> Callable[..., bool]:
    return wait_until


def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Polls `predicate` until it holds or the time is up (for effects in another thread)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


class LogCapture(logging.Handler):
    """The records uvicorn logs while a test runs (its loggers do not propagate to pytest's)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        return "\n".join(
            self.format(r)
            + ("\n" + "".join(traceback.format_exception(*r.exc_info)) if r.exc_info else "")
            for r in self.records
        )


@pytest.fixture
def server_log() -> Iterator[LogCapture]:
    """What uvicorn logged ("uvicorn.error": e.g. 'Exception in ASGI application')."""
    capture = LogCapture()
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(capture)
    yield capture
    logger.removeHandler(capture)


def record_starts(running: BackgroundServer, monkeypatch) -> tuple[list, list, list]:
    """(requests that asked to start, Generations started, requests whose start was
    cancelled) on `running`'s ServedModel."""
    served = running.app.state.mullama.served
    asked, started, cancelled = [], [], []
    original = served.start

    async def recording_start(request, **options):
        asked.append(request)
        try:
            generation = await original(request, **options)
        except anyio.get_cancelled_exc_class():
            cancelled.append(request)
            raise
        started.append(generation)
        return generation

    monkeypatch.setattr(served, "start", recording_start)
    return asked, started, cancelled


def raw_post(url: str, path: str, body: dict) -> socket.socket:
    """Sends a JSON POST on a raw socket, so the test decides exactly when the client leaves."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    data = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    sock.sendall(head.encode() + data)
    return sock
