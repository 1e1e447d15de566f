"""Remote backends: models on OpenAI-compatible servers (`http(s)://host/v1`) and Ollama
(`ollama://host:port` or `http://host:port/api`), streamed through the same core as local
models: stop sequences, max_tokens, the deadline, backpressure and statistics apply alike.

    remote = mullama.Model.connect("http://127.0.0.1:8080/v1", model="smollm2")
    for token in remote.generate_stream(messages=[{"role": "user", "content": "Hi"}]):
        print(token.text, end="")
"""

from __future__ import annotations

from typing import Any

from mullama.remote.aio import AsyncRemoteModel
from mullama.remote.backend import RemoteModel, running_calls
from mullama.remote.errors import (
    RemoteAuthError,
    RemoteConnectionError,
    RemoteError,
    RemoteModelNotFoundError,
    RemoteProtocolError,
    RemoteRateLimitError,
    RemoteRequestError,
    RemoteServerError,
    RemoteUnavailableError,
)

__all__ = [
    "AsyncRemoteModel",
    "RemoteAuthError",
    "RemoteConnectionError",
    "RemoteError",
    "RemoteModel",
    "RemoteModelNotFoundError",
    "RemoteProtocolError",
    "RemoteRateLimitError",
    "RemoteRequestError",
    "RemoteServerError",
    "RemoteUnavailableError",
    "connect",
    "connect_async",
    "running_calls",
]


def connect(url: str, *, model: str, api_key: str | None = None, **options: Any) -> RemoteModel:
    """A RemoteModel for `url` (see RemoteModel for `options`); nothing is sent yet."""
    return RemoteModel(url, model=model, api_key=api_key, **options)


def connect_async(
    url: str, *, model: str, api_key: str | None = None, **options: Any
) -> AsyncRemoteModel:
    """An AsyncRemoteModel for `url`; nothing is sent yet."""
    return AsyncRemoteModel(connect(url, model=model, api_key=api_key, **options))
