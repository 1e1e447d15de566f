"""OpenAI-compatible routes: /v1/chat/completions, /v1/completions, /v1/models."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mullama import MullamaError
from mullama.server import params
from mullama.server.engine import Generation, GenerationRequest, ServedModel
from mullama.server.errors import APIError, bad_param, from_mullama_error, openai_error_response
from mullama.server.state import ServerState, ShuttingDown
from mullama.server.streaming import DisconnectAwareStream, sse

# Our finish reasons as OpenAI spells them: a deadline cuts the reply short like max_tokens.
FINISH_REASONS = {"stop": "stop", "length": "length", "timeout": "length", "cancelled": "stop"}
MAX_TOP_LOGPROBS = 20


def openai_finish_reason(reason: str | None) -> str:
    return FINISH_REASONS.get(reason or "stop", "stop")


# -- request parsing --------------------------------------------------------------------------
def sampling_overrides(body: dict[str, Any], *, max_tokens_default: int | None) -> dict[str, Any]:
    """StreamConfig overrides from the OpenAI parameters (and our extensions) a client set."""
    max_tokens = params.integer(body, "max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = params.integer(body, "max_tokens", 1)
    if max_tokens is None:
        max_tokens = max_tokens_default
    overrides: dict[str, Any] = {
        "max_tokens": max_tokens,
        "temperature": params.number(body, "temperature", 0.0, 2.0),
        "top_p": params.number(body, "top_p", 0.0, 1.0, lo_open=True),
        "top_k": params.integer(body, "top_k", 0),
        "min_p": params.number(body, "min_p", 0.0, 1.0),
        "repeat_penalty": (
            params.number(body, "repeat_penalty", 0.0, 10.0, lo_open=True)
            or params.number(body, "repetition_penalty", 0.0, 10.0, lo_open=True)
        ),
        "seed": params.seed(body),
        "stop_sequences": params.stop_sequences(body),
    }
    # Accepted for compatibility, not applied: mullama samples with repeat_penalty instead.
    params.number(body, "presence_penalty", -2.0, 2.0)
    params.number(body, "frequency_penalty", -2.0, 2.0)
    n = params.integer(body, "n", 1)
    if n not in (None, 1):
        raise bad_param("n", f"'n' = {n} is not supported: mullama returns one choice (n=1)")
    if body.get("tools"):
        raise bad_param("tools", "'tools' (function calling) is not supported")
    fmt = body.get("response_format")
    if fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        raise bad_param("response_format", "only response_format {'type': 'text'} is supported")
    return {k: v for k, v in overrides.items() if v is not None}


def chat_messages(body: dict[str, Any]) -> list[dict[str, str]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_param("messages", "'messages' must be a non-empty list of messages")
    checked = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise bad_param("messages", f"messages[{i}] must be an object with a 'role' string")
        role = "system" if message["role"] == "developer" else message["role"]
        checked.append({"role": role, "content": _text_content(message.get("content"), i)})
    return checked


def _text_content(content: Any, i: int) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise bad_param("messages", f"messages[{i}]: only text content parts are supported")
            parts.append(str(part.get("text", "")))
        return "".join(parts)
    raise bad_param("messages", f"messages[{i}]['content'] must be a string or a list of parts")


def completion_prompt(body: dict[str, Any]) -> str | list[int]:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str):
        if not prompt:
            raise bad_param("prompt", "'prompt' must not be empty")
        return prompt
    if (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt)
    ):
        return prompt
    raise bad_param(
        "prompt",
        "'prompt' must be a non-empty string or a list of token ids "
        "(batches of several prompts are not supported)",
    )


def check_model(body: dict[str, Any], served: ServedModel) -> None:
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise bad_param("model", "'model' must be a string")
    if not served.matches(model):
        raise APIError(
            400,
            f"model '{model}' is not served here; this server serves '{served.name}'",
            param="model",
            code="model_not_found",
        )


# -- logprobs -----------------------------------------------------------------------------------
def _token_text(served: ServedModel, token_id: int) -> tuple[str, list[int]]:
    raw = served.model.token_bytes(token_id)
    return raw.decode("utf-8", "replace"), list(raw)


def _pairs(top: Any) -> list[tuple[int, float]]:
    """Top logprobs as (token id, logprob) pairs, whatever shape the event carries."""
    if not top:
        return []
    out = []
    for item in top:
        if isinstance(item, (tuple, list)):
            out.append((int(item[0]), float(item[1])))
        else:
            out.append((int(item.token), float(item.logprob)))
    return out


def chat_logprob_entry(served: ServedModel, event: Any) -> dict[str, Any]:
    text, raw = _token_text(served, event.token)
    top = []
    for token_id, logprob in _pairs(getattr(event, "top_logprobs", None)):
        t_text, t_raw = _token_text(served, token_id)
        top.append({"token": t_text, "logprob": logprob, "bytes": t_raw})
    return {"token": text, "logprob": event.logprob, "bytes": raw, "top_logprobs": top}


class CompletionLogprobs:
    """The legacy completions `logprobs` object, built token by token."""

    def __init__(self, served: ServedModel) -> None:
        self.served = served
        self.offset = 0

    def entry(self, event: Any) -> dict[str, Any]:
        text, _ = _token_text(self.served, event.token)
        top = {
            _token_text(self.served, t)[0]: lp
            for t, lp in _pairs(getattr(event, "top_logprobs", None))
        }
        chunk = {
            "tokens": [text],
            "token_logprobs": [event.logprob],
            "top_logprobs": [top],
            "text_offset": [self.offset],
        }
        self.offset += len(text)
        return chunk

    @staticmethod
    def merge(chunks: list[dict[str, Any]]) -> dict[str, Any]:
        merged: dict[str, list[Any]] = {
            "tokens": [],
            "token_logprobs": [],
            "top_logprobs": [],
            "text_offset": [],
        }
        for chunk in chunks:
            for key, values in chunk.items():
                merged[key].extend(values)
        return merged


def is_content_token(served: ServedModel, event: Any) -> bool:
    """False for events without a token and for the end-of-generation token closing a reply."""
    if event.token is None:
        return False
    return not (
        event.finish_reason is not None and event.token in served.model.end_of_generation_ids
    )


def usage(generation: Generation, completion_tokens: int) -> dict[str, int]:
    prompt_tokens = len(generation.prompt_ids)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


# -- handlers -------------------------------------------------------------------------------------
async def chat_completions(request: Request) -> Response:
    return await _handle(request, chat=True)


async def completions(request: Request) -> Response:
    return await _handle(request, chat=False)


async def list_models(request: Request) -> Response:
    served: ServedModel = request.app.state.mullama.served
    return JSONResponse(
        {
            "object": "list",
            "data": [
                {
                    "id": served.name,
                    "object": "model",
                    "created": served.created,
                    "owned_by": "mullama",
                }
            ],
        }
    )


async def _handle(request: Request, *, chat: bool) -> Response:
    state: ServerState = request.app.state.mullama
    served = state.served
    try:
        body = await params.read_json(request, state.max_body_bytes)
        check_model(body, served)
        stream = params.boolean(body, "stream", False)
        options = body.get("stream_options") or {}
        if not isinstance(options, dict):
            raise bad_param("stream_options", "'stream_options' must be an object")
        include_usage = params.boolean(options, "include_usage", False)
        if chat:
            messages = chat_messages(body)
            want_logprobs = params.boolean(body, "logprobs", False)
            top = params.integer(body, "top_logprobs", 0, MAX_TOP_LOGPROBS) or 0
            if top and not want_logprobs:
                raise bad_param("top_logprobs", "'top_logprobs' needs 'logprobs': true")
            gen_request = GenerationRequest(
                messages=messages,
                top_logprobs=top,
                overrides=sampling_overrides(body, max_tokens_default=None),
            )
            echo = ""
        else:
            prompt = completion_prompt(body)
            top = params.integer(body, "logprobs", 0, MAX_TOP_LOGPROBS)
            want_logprobs = top is not None
            if body.get("suffix"):
                raise bad_param("suffix", "'suffix' (fill-in-the-middle) is not supported")
            # The completions API's documented default is 16 tokens.
            gen_request = GenerationRequest(
                prompt=prompt,
                top_logprobs=top or 0,
                overrides=sampling_overrides(body, max_tokens_default=16),
            )
            echo = prompt if params.boolean(body, "echo", False) and isinstance(prompt, str) else ""
        try:
            generation = await served.start(gen_request)
        except MullamaError as exc:
            raise from_mullama_error(exc) from exc
    except APIError as err:
        return openai_error_response(err)

    reply = _Reply(served, generation, chat=chat, logprobs=want_logprobs)
    if stream:
        return DisconnectAwareStream(
            _stream_chunks(state, reply, include_usage=include_usage, echo=echo),
            "text/event-stream",
        )
    try:
        await reply.collect(state)
    except ShuttingDown as exc:
        return openai_error_response(
            APIError(503, str(exc), type="server_error", code="shutting_down")
        )
    except MullamaError as exc:
        return openai_error_response(
            APIError(500, f"generation failed: {exc}", type="server_error", code="internal_error")
        )
    return JSONResponse(reply.body(echo))


class _Reply:
    """Accumulates one reply's text, token count and logprobs while its events arrive."""

    def __init__(
        self, served: ServedModel, generation: Generation, *, chat: bool, logprobs: bool
    ) -> None:
        self.served = served
        self.generation = generation
        self.chat = chat
        self.want_logprobs = logprobs
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.object = "chat.completion" if chat else "text_completion"
        self.parts: list[str] = []
        self.tokens = 0
        self.logprob_chunks: list[Any] = []
        self._completion_logprobs = CompletionLogprobs(served)

    def logprobs_of(self, event: Any) -> Any:
        if not self.want_logprobs or not is_content_token(self.served, event):
            return None
        if self.chat:
            return chat_logprob_entry(self.served, event)
        return self._completion_logprobs.entry(event)

    async def events(self, state: ServerState) -> AsyncIterator[tuple[str, Any]]:
        """(text, logprobs) per event, counting tokens; raises ShuttingDown on drain."""
        try:
            async for event in self.generation:
                state.check_running()
                if is_content_token(self.served, event):
                    self.tokens += 1
                    state.count_token()
                self.parts.append(event.text)
                yield event.text, self.logprobs_of(event)
        finally:
            await self.generation.aclose()

    async def collect(self, state: ServerState) -> None:
        async with aclosing(self.events(state)) as events:
            async for _, logprobs in events:
                if logprobs is not None:
                    self.logprob_chunks.append(logprobs)

    @property
    def finish_reason(self) -> str:
        return openai_finish_reason(self.generation.finish_reason)

    def body(self, echo: str) -> dict[str, Any]:
        text = echo + "".join(self.parts)
        if self.chat:
            logprobs = {"content": self.logprob_chunks} if self.want_logprobs else None
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": logprobs,
                "finish_reason": self.finish_reason,
            }
        else:
            logprobs = CompletionLogprobs.merge(self.logprob_chunks) if self.want_logprobs else None
            choice = {
                "index": 0,
                "text": text,
                "logprobs": logprobs,
                "finish_reason": self.finish_reason,
            }
        return {
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": self.served.name,
            "choices": [choice],
            "usage": usage(self.generation, self.tokens),
        }

    def chunk(self, choice: dict[str, Any], include_usage: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.created,
            "model": self.served.name,
            "choices": [choice],
        }
        if include_usage:
            body["usage"] = None
        return body

    def delta(
        self,
        text: str,
        logprobs: Any,
        finish: str | None,
        *,
        first: bool = False,
        include_usage: bool = False,
    ) -> dict[str, Any]:
        if self.chat:
            delta: dict[str, Any] = {}
            if first:
                delta["role"] = "assistant"
            if text or first:
                delta["content"] = text
            lp = {"content": [logprobs]} if logprobs is not None else None
            choice = {"index": 0, "delta": delta, "logprobs": lp, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}
        return self.chunk(choice, include_usage)


async def _stream_chunks(
    state: ServerState, reply: _Reply, *, include_usage: bool, echo: str
) -> AsyncIterator[bytes]:
    if reply.chat:
        yield sse(reply.delta("", None, None, first=True, include_usage=include_usage))
    elif echo:
        yield sse(reply.delta(echo, None, None, include_usage=include_usage))
    try:
        async with aclosing(reply.events(state)) as events:
            async for text, logprobs in events:
                if text or logprobs is not None:
                    yield sse(reply.delta(text, logprobs, None, include_usage=include_usage))
    except (ShuttingDown, MullamaError) as exc:
        err = (
            APIError(503, str(exc), type="server_error", code="shutting_down")
            if isinstance(exc, ShuttingDown)
            else APIError(
                500, f"generation failed: {exc}", type="server_error", code="internal_error"
            )
        )
        yield sse(err.openai_body())
        return
    yield sse(reply.delta("", None, reply.finish_reason, include_usage=include_usage))
    if include_usage:
        final = reply.chunk({}, False)
        final["choices"] = []
        final["usage"] = usage(reply.generation, reply.tokens)
        yield sse(final)
    yield sse("[DONE]")
