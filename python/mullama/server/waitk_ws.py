"""WebSocket /v1/ws/waitk: simultaneous generation (wait-k) from source text a client streams.

Client -> server:
  {"type": "start", "wait_k": K, "instruction"?, "max_new_words"?, "max_tokens_per_word"?,
   sampling fields (max_tokens, temperature, top_p, top_k, min_p, repeat_penalty, seed, stop),
   "id"?}                         first, once
  {"type": "source", "text": "..."}  source chunks as they arrive (words may span chunks)
  {"type": "end"}                 the source is complete
  {"type": "cancel"}              stops the generation
Server -> client:
  {"type": "word", "id", "text", "source_words_read", "target_words_generated"} per target
  word as it is written,
  {"type": "done", "id", "finish_reason", "text", "metrics"} at the end ("text": whitespace
  after the last word; "metrics": average_lagging, delays, word_lag_s, tokens recomputed),
  {"type": "error", "id", "error": {"message", "code", "status"}} for a refused request or a
  failed generation; the connection then closes.

Backpressure both ways: a client that does not read its words stops the reads of the stream
(the model parks once the stream's buffer is full); source chunks are taken only while the
policy is at most MAX_UNREAD_CHARS behind, then the server stops reading the socket.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from starlette.websockets import WebSocket, WebSocketDisconnect

from mullama import MullamaError
from mullama.server import common, params
from mullama.server.errors import APIError, bad_param, from_mullama_error
from mullama.server.state import ServerState
from mullama.server.websocket import error_event, serve_session

SOURCE_QUEUE = 16
"""Source chunks received and not yet taken by the policy's reader."""


async def endpoint(websocket: WebSocket) -> None:
    await serve_session(websocket, _WaitkSession)


class _WaitkSession:
    def __init__(self, websocket: WebSocket, state: ServerState) -> None:
        self.ws = websocket
        self.state = state
        self.scope = anyio.CancelScope()
        self.request_id: Any = None
        self.gone = False
        self.closed = anyio.Event()

    async def shut_down(self) -> None:
        """Ends the session for a server shutdown (its generation stops, the socket closes)."""
        self.scope.cancel()
        with anyio.move_on_after(5):
            await self.closed.wait()

    async def send(self, message: dict[str, Any]) -> None:
        if self.gone:
            return
        try:
            await self.ws.send_text(json.dumps(message, ensure_ascii=False))
        except WebSocketDisconnect:
            self.gone = True
            self.scope.cancel()

    async def run(self) -> None:
        try:
            with self.scope:
                await self._serve()
            if not self.gone:
                with anyio.CancelScope(shield=True):
                    if self.state.draining.is_set():
                        err = APIError(503, "the server is shutting down", code="shutting_down")
                        await self.send(error_event(self.request_id, err))
                    await self.ws.close()
        finally:
            self.closed.set()

    async def _serve(self) -> None:
        try:
            start = await self._receive()
            if start is None:
                return
            self.request_id = start.get("id")
            if start.get("type") != "start":
                raise bad_param("type", 'the first message must be {"type": "start", ...}')
            options = _options(start)
            self.state.check_running()
        except APIError as err:
            await self.send(error_event(self.request_id, err))
            return
        except MullamaError as exc:
            await self.send(error_event(self.request_id, from_mullama_error(exc)))
            return
        from mullama.aio.model import AsyncContext  # imports the engine: only when used

        served = self.state.served
        send_chunks, receive_chunks = anyio.create_memory_object_stream[str](SOURCE_QUEUE)

        async def source() -> Any:
            async with receive_chunks:
                async for chunk in receive_chunks:
                    yield chunk

        options.setdefault("max_tokens", served.default_max_tokens)
        options.setdefault("timeout_ms", served.timeout_ms)
        try:
            context = AsyncContext(served.model, served.n_ctx)
            stream = context.generate_stream_waitk(source(), **options)
        except MullamaError as exc:
            await self.send(error_event(self.request_id, from_mullama_error(exc)))
            return
        cancelled = False
        async with anyio.create_task_group() as tg:

            async def read_client() -> None:
                nonlocal cancelled
                async with send_chunks:
                    while True:
                        message = await self._receive()
                        if message is None:  # the client left: stop everything
                            self.gone = True
                            self.scope.cancel()
                            return
                        kind = message.get("type")
                        if kind == "source":
                            text = message.get("text")
                            if not isinstance(text, str):
                                await self.send(
                                    error_event(
                                        self.request_id,
                                        bad_param("text", "a source message needs a 'text' string"),
                                    )
                                )
                                continue
                            await send_chunks.send(text)
                        elif kind == "end":
                            return  # closing the channel ends the source
                        elif kind == "cancel":
                            cancelled = True
                            await stream.aclose()
                        else:
                            await self.send(
                                error_event(
                                    self.request_id,
                                    bad_param("type", "send 'source', 'end' or 'cancel'"),
                                )
                            )

            tg.start_soon(read_client)
            async with served.slot():  # counts against --parallel like any generation
                await self._stream_words(stream, lambda: cancelled)
            tg.cancel_scope.cancel()

    async def _stream_words(self, stream: Any, cancelled: Any) -> None:
        words = ""
        final = None
        try:
            async with stream:
                async for event in stream:
                    self.state.check_running()
                    words += event.text
                    if event.word_complete:
                        await self.send(
                            {
                                "type": "word",
                                "id": self.request_id,
                                "text": words,
                                "source_words_read": event.source_words_read,
                                "target_words_generated": event.target_words_generated,
                            }
                        )
                        words = ""
                    if event.finish_reason is not None:
                        final = event
        except MullamaError as exc:
            if not cancelled():
                await self.send(error_event(self.request_id, common.failure(exc)))
                return
        metrics = final.metrics if final is not None else stream.metrics
        reason = "cancelled" if cancelled() else stream.finish_reason
        await self.send(
            {
                "type": "done",
                "id": self.request_id,
                "finish_reason": reason,
                "text": words,
                "metrics": None if metrics is None else metrics.to_dict(),
            }
        )

    async def _receive(self) -> dict[str, Any] | None:
        """The next JSON message; None once the client has gone."""
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return None
            raw = message.get("text")
            if raw is None:
                raw = message.get("bytes") or b""
            try:
                return params.parse_json_object(raw, "the message")
            except APIError as err:
                await self.send(error_event(self.request_id, err))


def _options(start: dict[str, Any]) -> dict[str, Any]:
    """generate_stream_waitk's keyword arguments from the start message (APIError if bad)."""
    wait_k = params.integer(start, "wait_k", 1)
    if wait_k is None:
        raise bad_param("wait_k", "the start message needs 'wait_k' (a positive integer)")
    options: dict[str, Any] = {"wait_k": wait_k}
    instruction = params.string(start, "instruction")
    if instruction is not None:
        options["instruction"] = instruction
    max_new_words = params.integer(start, "max_new_words", 1)
    if max_new_words is not None:
        options["max_new_words"] = max_new_words
    per_word = params.integer(start, "max_tokens_per_word", 1)
    if per_word is not None:
        options["max_tokens_per_word"] = per_word
    overrides = common.sampling_overrides(start, temperature_max=2.0)
    overrides["max_tokens"] = params.integer(start, "max_tokens", 1)
    options.update({k: v for k, v in overrides.items() if v is not None})
    return options
