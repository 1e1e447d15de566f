"""--api-key: every route but the health check and the chat page (its HTML, scripts and style:
the API calls it makes send the key) needs `Authorization: Bearer KEY`.

Browsers cannot set headers on a WebSocket, so /v1/ws also takes `?api_key=KEY`.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from mullama.server import page
from mullama.server.errors import APIError

OPEN_PATHS = frozenset({"/health"})
"""Public besides the page's own paths (`page.is_public`)."""


def _key_matches(presented: str | None, expected: str) -> bool:
    return presented is not None and hmac.compare_digest(presented.encode(), expected.encode())


def _bearer(headers: dict[bytes, bytes]) -> str | None:
    value = headers.get(b"authorization", b"").decode("latin-1")
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    key = headers.get(b"x-api-key")
    return key.decode("latin-1") if key else None


class APIKeyMiddleware:
    """Answers 401 (OpenAI-style JSON) to HTTP requests without the right key."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if scope["type"] != "http" or path in OPEN_PATHS or page.is_public(path):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        if _key_matches(_bearer(headers), self.api_key):
            await self.app(scope, receive, send)
            return
        from starlette.responses import JSONResponse

        err = APIError(
            401,
            "invalid or missing API key: send 'Authorization: Bearer KEY'",
            code="invalid_api_key",
        )
        body = err.ollama_body() if scope["path"].startswith("/api/") else err.openai_body()
        await JSONResponse(body, status_code=401)(scope, receive, send)


def websocket_authorized(websocket: WebSocket, api_key: str | None) -> bool:
    if api_key is None:
        return True
    headers = dict(websocket.scope.get("headers", []))
    presented = _bearer(headers) or websocket.query_params.get("api_key")
    return _key_matches(presented, api_key)
