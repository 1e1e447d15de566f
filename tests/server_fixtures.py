"""Fixtures for the server tests: the default model, and mullama servers on free ports of
127.0.0.1 (uvicorn in a background thread). Test modules import the fixtures they use."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from mullama.server import BackgroundServer, ServedModel, create_app

MODEL_NAME = "smollm2"


@pytest.fixture(scope="session")
def default_model():
    from mullama.model import Model

    return Model.load()


def start_server(
    model, *, api_key: str | None = None, max_body_bytes: int | None = None, **served_options
) -> BackgroundServer:
    served = ServedModel(model, MODEL_NAME, **served_options)
    options = {} if max_body_bytes is None else {"max_body_bytes": max_body_bytes}
    return BackgroundServer(create_app(served, api_key=api_key, **options)).start()


@pytest.fixture(scope="module")
def server(default_model) -> Iterator[BackgroundServer]:
    running = start_server(default_model)
    yield running
    running.stop()


@pytest.fixture
def server_factory(default_model) -> Iterator[Callable[..., BackgroundServer]]:
    """Starts extra servers with other options (api_key, max_body_bytes, ...)."""
    started: list[BackgroundServer] = []

    def start(**options) -> BackgroundServer:
        started.append(start_server(default_model, **options))
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
