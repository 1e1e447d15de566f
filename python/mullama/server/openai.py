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
from mullama.server import common, params
from mullama.server.engine import Generation, ServedModel
from mullama.server.errors import APIError, bad_param, openai_error_response
from mullama.server.state import ServerState, ShuttingDown
from mullama.server.streaming import DisconnectAwareStream, sse

MAX_TOP_LOGPROBS = 20
COMPLETIONS_DEFAULT_MAX_TOKENS = 16
"""The legacy completions API's documented default reply length."""


# -- request parsing --------------------------------------------------------------------------
def sampling_overrides(body: dict[str, Any]) -> dict[str, Any]:
    """StreamConfig overrides from the OpenAI parameters (and our extensions) a client set."""
    max_tokens = params.integer(body, "max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = params.integer(body, "max_tokens", 1)
    overrides = common.sampling_overrides(body, temperature_max=2.0)
    overrides["max_tokens"] = max_tokens
    if overrides["repeat_penalty"] is None:  # the name Hugging Face uses
        overrides["repeat_penalty"] = params.number(
            body, "repetition_penalty", 0.0, 10.0, lo_open=True
        )
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
    return overrides


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


def usage(generation: Generation, completion_tokens: int) -> dict[str, Any]:
    prompt_tokens = len(generation.prompt_ids)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        # OpenAI's field for prompt tokens read from the cache, not run through the model: the
        # Context a conversation's next turn lands on already holds its earlier turns.
        "prompt_tokens_details": {"cached_tokens": generation.cached_prompt_tokens},
    }


# -- handlers -------------------------------------------------------------------------------------
async def chat_completions(request: Request) -> Response:
    return await _handle(request, chat=True)


async def completions(request: Request) -> Response:
    return await _handle(request, chat=False)


def _model_object(served: ServedModel) -> dict[str, Any]:
    return {"id": served.name, "object": "model", "created": served.created, "owned_by": "mullama"}


async def list_models(request: Request) -> Response:
    served: ServedModel = request.app.state.mullama.served
    return JSONResponse({"object": "list", "data": [_model_object(served)]})


async def retrieve_model(request: Request) -> Response:
    """GET /v1/models/{id} (the SDK's models.retrieve): the model object, or 404."""
    served: ServedModel = request.app.state.mullama.served
    model_id = request.path_params["model_id"]
    if not served.matches(model_id):
        return openai_error_response(
            APIError(
                404,
                f"model '{model_id}' does not exist; this server serves '{served.name}'",
                param="model",
                code="model_not_found",
            )
        )
    return JSONResponse(_model_object(served))


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
        overrides = sampling_overrides(body)
        echo = ""
        if chat:
            messages = common.chat_messages(body)
            want_logprobs = params.boolean(body, "logprobs", False)
            top = params.integer(body, "top_logprobs", 0, MAX_TOP_LOGPROBS) or 0
            if top and not want_logprobs:
                raise bad_param("top_logprobs", "'top_logprobs' needs 'logprobs': true")
            inputs: dict[str, Any] = {"messages": messages}
        else:
            prompt = completion_prompt(body)
            top_or_none = params.integer(body, "logprobs", 0, MAX_TOP_LOGPROBS)
            want_logprobs = top_or_none is not None
            top = top_or_none or 0
            if body.get("suffix"):
                raise bad_param("suffix", "'suffix' (fill-in-the-middle) is not supported")
            if params.boolean(body, "echo", False):
                if want_logprobs:
                    # OpenAI's legacy API scores the prompt's tokens too; mullama's engine
                    # computes the logprobs of sampled tokens only, so it refuses rather than
                    # returning entries that omit the prompt.
                    raise bad_param(
                        "echo",
                        "'echo' with 'logprobs' is not supported: prompt tokens are not scored",
                    )
                echo = prompt if isinstance(prompt, str) else ""
            if overrides["max_tokens"] is None:
                overrides["max_tokens"] = COMPLETIONS_DEFAULT_MAX_TOKENS
            inputs = {"prompt": prompt}

        def start() -> Any:
            return common.start_generation(served, overrides=overrides, top_logprobs=top, **inputs)

        if stream:
            generation = await common.unless_disconnected(request.receive, start)
            if generation is None:  # the client left while the request waited its turn
                return Response(status_code=499)
            reply = _Reply(served, generation, chat=chat, logprobs=want_logprobs)
            return DisconnectAwareStream(
                _stream_chunks(state, reply, include_usage=include_usage, echo=echo),
                "text/event-stream",
            )

        async def start_and_collect() -> _Reply:
            reply = _Reply(served, await start(), chat=chat, logprobs=want_logprobs)
            await reply.collect(state)
            return reply

        try:
            done = await common.unless_disconnected(request.receive, start_and_collect)
        except (ShuttingDown, MullamaError) as exc:
            raise common.failure(exc) from exc
    except APIError as err:
        return openai_error_response(err)
    if done is None:  # the client left: nobody reads this
        return Response(status_code=499)
    return JSONResponse(done.body(echo))


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
        if not self.want_logprobs or not common.is_content_token(self.served, event):
            return None
        if self.chat:
            return chat_logprob_entry(self.served, event)
        return self._completion_logprobs.entry(event)

    async def events(self, state: ServerState) -> AsyncIterator[tuple[str, Any]]:
        """(text, logprobs) per event, counting tokens; raises ShuttingDown on drain."""
        async with aclosing(common.events(state, self.generation)) as events:
            async for event in events:
                if common.is_content_token(self.served, event):
                    self.tokens += 1
                self.parts.append(event.text)
                yield event.text, self.logprobs_of(event)

    async def collect(self, state: ServerState) -> None:
        async with aclosing(self.events(state)) as events:
            async for _, logprobs in events:
                if logprobs is not None:
                    self.logprob_chunks.append(logprobs)

    @property
    def finish_reason(self) -> str:
        return common.finish_reason(self.generation.finish_reason, "openai")

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
        yield sse(common.failure(exc).openai_body())
        return
    yield sse(reply.delta("", None, reply.finish_reason, include_usage=include_usage))
    if include_usage:
        final = reply.chunk({}, False)
        final["choices"] = []
        final["usage"] = usage(reply.generation, reply.tokens)
        yield sse(final)
    yield sse("[DONE]")
