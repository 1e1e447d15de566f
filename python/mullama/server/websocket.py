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
One generation runs at a time per connection; requests are answered in order.
"""

from __future__ import annotations

import json
from contextlib import aclosing
from typing import Any

import anyio
from starlette.websockets import WebSocket, WebSocketDisconnect

from mullama import MullamaError
from mullama.server.auth import websocket_authorized
from mullama.server.engine import Generation, GenerationRequest
from mullama.server.errors import APIError, bad_param, from_mullama_error
from mullama.server.openai import chat_messages, is_content_token, sampling_overrides
from mullama.server.state import ServerState, ShuttingDown

GOING_AWAY = 1001
POLICY_VIOLATION = 1008


async def endpoint(websocket: WebSocket) -> None:
    state: ServerState = websocket.app.state.mullama
    if not websocket_authorized(websocket, state.api_key):
        await websocket.close(code=POLICY_VIOLATION, reason="invalid or missing API key")
        return
    await websocket.accept()
    session = _Session(websocket, state)
    try:
        await session.run()
    except WebSocketDisconnect:
        pass


class _Session:
    def __init__(self, websocket: WebSocket, state: ServerState) -> None:
        self.ws = websocket
        self.state = state
        self.send_lock = anyio.Lock()
        self.running: anyio.CancelScope | None = None
        self.cancelled = False

    async def send(self, message: dict[str, Any]) -> None:
        async with self.send_lock:
            await self.ws.send_text(json.dumps(message, ensure_ascii=False))

    async def run(self) -> None:
        send_requests, receive_requests = anyio.create_memory_object_stream[dict[str, Any]](16)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._read, send_requests, tg.cancel_scope)
            async with receive_requests:
                async for request in receive_requests:
                    with anyio.CancelScope() as scope:
                        self.running, self.cancelled = scope, False
                        await self._serve(request)
                    self.running = None
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
                    await self.send(_error(None, err))
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
            generation = await self.state.served.start(_generation_request(request))
        except APIError as err:
            await self.send(_error(request_id, err))
            return
        except MullamaError as exc:
            await self.send(_error(request_id, from_mullama_error(exc)))
            return
        tokens = 0
        try:
            async with aclosing(_token_events(self.state, generation)) as events:
                async for event in events:
                    if is_content_token(self.state.served, event):
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
        except ShuttingDown as exc:
            await self.send(_error(request_id, APIError(503, str(exc), code="shutting_down")))
            await self.ws.close(code=GOING_AWAY)
            return
        except MullamaError as exc:
            await self.send(
                _error(
                    request_id, APIError(500, f"generation failed: {exc}", code="internal_error")
                )
            )
            return
        finally:
            if self.cancelled:
                with anyio.CancelScope(shield=True):
                    await self.send(_done(request_id, generation, tokens, "cancelled"))
        if not self.cancelled:
            await self.send(_done(request_id, generation, tokens, generation.finish_reason))


async def _token_events(state: ServerState, generation: Generation) -> Any:
    try:
        async for event in generation:
            state.check_running()
            yield event
    finally:
        await generation.aclose()


def _parse(message: dict[str, Any]) -> dict[str, Any]:
    raw = message.get("text")
    if raw is None and message.get("bytes") is not None:
        raw = message["bytes"].decode("utf-8", "replace")
    try:
        request = json.loads(raw or "")
    except ValueError as exc:
        raise APIError(400, f"the message is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(request, dict):
        raise APIError(400, "the message must be a JSON object", code="invalid_json")
    return request


def _generation_request(request: dict[str, Any]) -> GenerationRequest:
    overrides = sampling_overrides(request, max_tokens_default=None)
    if request.get("messages") is not None:
        return GenerationRequest(messages=chat_messages(request), overrides=overrides)
    prompt = request.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise bad_param("prompt", "send a non-empty 'prompt' string or a 'messages' list")
    return GenerationRequest(prompt=prompt, overrides=overrides)


def _error(request_id: Any, err: APIError) -> dict[str, Any]:
    return {
        "type": "error",
        "id": request_id,
        "error": {"message": err.message, "code": err.code, "status": err.status},
    }


def _done(
    request_id: Any, generation: Generation, tokens: int, finish_reason: str | None
) -> dict[str, Any]:
    last = generation.last
    prompt_tokens = len(generation.prompt_ids)
    return {
        "type": "done",
        "id": request_id,
        "finish_reason": finish_reason or "stop",
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
