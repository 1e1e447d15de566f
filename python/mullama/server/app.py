"""The ASGI application: `create_app(served, api_key=...)` returns a Starlette app."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from mullama.server import ollama, openai, page, waitk_ws, websocket
from mullama.server.auth import APIKeyMiddleware
from mullama.server.defaults import DEFAULT_MAX_BODY_BYTES
from mullama.server.engine import ServedModel
from mullama.server.errors import APIError, ollama_error_response, openai_error_response
from mullama.server.state import ServerState


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok", "model": request.app.state.mullama.served.name})


async def not_found(request: Request, exc: Exception) -> Response:
    err = APIError(404, f"no route {request.method} {request.url.path}", code="not_found")
    if request.url.path.startswith("/api/"):
        return ollama_error_response(err)
    return openai_error_response(err)


async def method_not_allowed(request: Request, exc: Exception) -> Response:
    err = APIError(
        405, f"{request.method} is not allowed on {request.url.path}", code="method_not_allowed"
    )
    return openai_error_response(err)


async def server_error(request: Request, exc: Exception) -> Response:
    err = APIError(500, f"internal error: {exc}", type="server_error", code="internal_error")
    return openai_error_response(err)


def create_app(
    served: ServedModel, *, api_key: str | None = None, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> Starlette:
    """The mullama server app for one served model. `app.state.mullama` is its ServerState
    (set `app.state.mullama.draining` to end open streams before a shutdown)."""
    routes = [
        Route("/", page.root),
        Route(page.ASSET_PREFIX + "{name}", page.asset),
        Route("/health", health),
        Route("/v1/models", openai.list_models),
        Route("/v1/models/{model_id:path}", openai.retrieve_model),
        Route("/v1/chat/completions", openai.chat_completions, methods=["POST"]),
        Route("/v1/completions", openai.completions, methods=["POST"]),
        Route("/api/generate", ollama.generate, methods=["POST"]),
        Route("/api/chat", ollama.chat, methods=["POST"]),
        Route("/api/tags", ollama.tags),
        Route("/api/show", ollama.show, methods=["POST"]),
        Route("/api/version", ollama.version),
        WebSocketRoute("/v1/ws", websocket.endpoint),
        WebSocketRoute("/v1/ws/waitk", waitk_ws.endpoint),
    ]
    middleware = [Middleware(APIKeyMiddleware, api_key=api_key)] if api_key else []
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={404: not_found, 405: method_not_allowed, 500: server_error},
    )
    app.state.mullama = ServerState(served=served, api_key=api_key, max_body_bytes=max_body_bytes)
    return app
