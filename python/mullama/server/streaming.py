"""A streaming HTTP response that stops its body as soon as the client disconnects.

Starlette's StreamingResponse only watches for the disconnect on servers speaking ASGI < 2.4;
on newer ones it waits for a failed write. This one always watches, so a client that leaves
cancels the body iterator at once, whose `finally` closes the token stream and thereby stops
the forward pass within one token.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any

import anyio
from starlette.types import Receive, Scope, Send


class DisconnectAwareStream:
    """An ASGI response streaming `body` (bytes chunks) with the given media type."""

    def __init__(
        self, body: AsyncIterator[bytes], media_type: str, headers: Mapping[str, str] | None = None
    ) -> None:
        self.body = body
        self.media_type = media_type
        self.headers = dict(headers or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_headers = [
            (b"content-type", self.media_type.encode()),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]
        raw_headers += [(k.lower().encode(), v.encode()) for k, v in self.headers.items()]
        async with anyio.create_task_group() as tg:
            tg.start_soon(_cancel_on_disconnect, receive, tg.cancel_scope)
            await send({"type": "http.response.start", "status": 200, "headers": raw_headers})
            async with aclosing(self.body) as body:
                async for chunk in body:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            tg.cancel_scope.cancel()


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return


def sse(data: Any) -> bytes:
    """One server-sent event carrying `data` (JSON, or a literal string such as [DONE])."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n".encode()


def ndjson(data: Any) -> bytes:
    return (json.dumps(data, ensure_ascii=False) + "\n").encode()
