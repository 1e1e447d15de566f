"""WebSocket /v1/ws: send a request JSON, receive token events, then a done event.

Client -> server:
  {"prompt": "..."} (raw text) or {"messages": [...]} (chat template), with optional
  sampling fields (max_tokens, temperature, top_p, top_k, min_p, repeat_penalty, seed, stop)
  and an "id" echoed in every reply; {"type": "cancel"} stops the running generation.
Server -> client:
  {"type": "token", "id", "text", "token", "logprob"} per event,
  {"type": "done", "id", "finish_reason", "stop_sequence", "usage", "stats"} at the end
  (finish_reason "cancelled" after a cancel),
  {"type": "error", "id", "error": {"message", "code"}} for a refused request.
On shutdown every open connection gets an error event with code "shutting_down", then close
code 1012. One generation runs at a time per connection; requests are answered in order.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import aclosing
from typing import Any, Protocol

import anyio
from starlette.websockets import WebSocket, WebSocketDisconnect

from mullama import MullamaError
from mullama.server import common, params
from mullama.server.auth import websocket_authorized
from mullama.server.errors import APIError, bad_param
from mullama.server.state import ServerState, ShuttingDown

POLICY_VIOLATION = 1008
SERVICE_RESTART = 1012
"""The close code on shutdown (uvicorn's too, for connections it closes itself)."""
GOODBYE_TIMEOUT_S = 5.0
"""How long shutdown waits for a connection to send its last event and close."""


async def endpoint(websocket: WebSocket) -> None:
    await serve_session(websocket, _Session)


class Session(Protocol):
    """A WebSocket connection's handler: `run()` serves it; `shut_down()` ends it for a
    server shutdown."""

    async def run(self) -> None: ...

    async def shut_down(self) -> None: ...


async def serve_session(
    websocket: WebSocket, make_session: Callable[[WebSocket, ServerState], Session]
) -> None:
    """Checks the API key, accepts the connection and runs its session, registered with the
    server so that a shutdown can end it."""
    state: ServerState = websocket.app.state.mullama
    if not websocket_authorized(websocket, state.api_key):
        await websocket.close(code=POLICY_VIOLATION, reason="invalid or missing API key")
        return
    await websocket.accept()
    session = make_session(websocket, state)
    state.websockets.add(session)
    try:
        await session.run()
    finally:
        state.websockets.discard(session)


class _Session:
    def __init__(self, websocket: WebSocket, state: ServerState) -> None:
        self.ws = websocket
        self.state = state
        self.send_lock = anyio.Lock()
        self.running: anyio.CancelScope | None = None
        self.running_id: Any = None
        self.cancelled = False
        self.scope = anyio.CancelScope()
        self.shutting_down = False
        self.closed = anyio.Event()
        self.gone = False
        self.goodbye_id: Any = None

    async def send(self, message: dict[str, Any]) -> None:
        """Sends `message`; if the client has gone, ends the session instead of raising (an
        exception here would leave the task group as an ExceptionGroup, which the ASGI
        server logs as an error)."""
        async with self.send_lock:
            if self.gone:
                return
            try:
                await self.ws.send_text(json.dumps(message, ensure_ascii=False))
            except WebSocketDisconnect:
                self.gone = True
                self.scope.cancel()

    async def shut_down(self) -> None:
        """Ends the connection for a server shutdown: its generation stops, it gets the
        "shutting down" event, then close code 1012. Returns once that is done."""
        self._end_for_shutdown()
        with anyio.move_on_after(GOODBYE_TIMEOUT_S):
            await self.closed.wait()

    def _end_for_shutdown(self, request_id: Any = None) -> None:
        if not self.shutting_down:
            self.shutting_down = True
            # The event names the request it ends (if one runs), as other error events do.
            self.goodbye_id = self.running_id if request_id is None else request_id
        self.scope.cancel()

    async def run(self) -> None:
        try:
            with self.scope:
                await self._serve_requests()
            if self.shutting_down and not self.gone:
                with anyio.CancelScope(shield=True):
                    err = APIError(503, "the server is shutting down", code="shutting_down")
                    await self.send(error_event(self.goodbye_id, err))
                    if not self.gone:
                        await self.ws.close(code=SERVICE_RESTART)
        finally:
            self.closed.set()

    async def _serve_requests(self) -> None:
        send_requests, receive_requests = anyio.create_memory_object_stream[dict[str, Any]](16)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._read, send_requests, tg.cancel_scope)
            async with receive_requests:
                async for request in receive_requests:
                    with anyio.CancelScope() as scope:
                        self.running, self.cancelled = scope, False
                        self.running_id = request.get("id")
                        await self._serve(request)
                    self.running = self.running_id = None
            tg.cancel_scope.cancel()

    async def _read(self, requests: Any, everything: anyio.CancelScope) -> None:
        async with requests:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    everything.cancel()  # the client left: stop the generation too
                    return
                try:
                    request = _parse(message)
                except APIError as err:
                    await self.send(error_event(None, err))
                    continue
                if request.get("type") == "cancel":
                    if self.running is not None:
                        self.cancelled = True
                        self.running.cancel()
                    continue
                await requests.send(request)

    async def _serve(self, request: dict[str, Any]) -> None:
        request_id = request.get("id")
        try:
            generation = await common.start_generation(self.state.served, **_inputs(request))
        except APIError as err:
            await self.send(error_event(request_id, err))
            return
        tokens = 0
        try:
            async with aclosing(common.events(self.state, generation)) as events:
                async for event in events:
                    if common.is_content_token(self.state.served, event):
                        tokens += 1
                    await self.send(
                        {
                            "type": "token",
                            "id": request_id,
                            "text": event.text,
                            "token": event.token,
                            "logprob": event.logprob,
                        }
                    )
        except ShuttingDown:
            self._end_for_shutdown(request_id)  # run() sends the event and closes
            return
        except MullamaError as exc:
            await self.send(error_event(request_id, common.failure(exc)))
            return
        finally:
            if self.cancelled:
                with anyio.CancelScope(shield=True):
                    await self.send(_done(request_id, generation, tokens, "cancelled"))
        if not self.cancelled:
            reason = common.finish_reason(generation.finish_reason, "websocket")
            await self.send(_done(request_id, generation, tokens, reason))


def _parse(message: dict[str, Any]) -> dict[str, Any]:
    raw = message.get("text")
    if raw is None:
        raw = message.get("bytes") or b""
    return params.parse_json_object(raw, "the message")


def _inputs(request: dict[str, Any]) -> dict[str, Any]:
    """start_generation's arguments for a WebSocket request."""
    overrides = common.sampling_overrides(request, temperature_max=2.0)
    overrides["max_tokens"] = params.integer(request, "max_tokens", 1)
    if request.get("messages") is not None:
        return {"messages": common.chat_messages(request), "overrides": overrides}
    prompt = request.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise bad_param("prompt", "send a non-empty 'prompt' string or a 'messages' list")
    return {"prompt": prompt, "overrides": overrides}


def error_event(request_id: Any, err: APIError) -> dict[str, Any]:
    """The error event for a refused request or a failed generation."""
    return {
        "type": "error",
        "id": request_id,
        "error": {"message": err.message, "code": err.code, "status": err.status},
    }


def _done(request_id: Any, generation: Any, tokens: int, finish_reason: str) -> dict[str, Any]:
    last = generation.last
    prompt_tokens = len(generation.prompt_ids)
    return {
        "type": "done",
        "id": request_id,
        "finish_reason": finish_reason,
        "stop_sequence": generation.stop_sequence,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": tokens,
            "total_tokens": prompt_tokens + tokens,
        },
        "stats": {
            "time_to_first_token": getattr(last, "time_to_first_token", None),
            "prompt_tps": getattr(last, "prompt_tps", None),
            "generation_tps": getattr(last, "generation_tps", None),
        },
    }
