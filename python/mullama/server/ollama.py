"""Ollama-compatible routes: /api/generate, /api/chat (NDJSON), /api/tags, /api/show,
/api/version. Durations are in nanoseconds, as Ollama reports them."""

from __future__ import annotations

import datetime
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mullama import MullamaError, __version__
from mullama.server import common, params
from mullama.server.engine import Generation, ServedModel
from mullama.server.errors import APIError, bad_param, ollama_error_response
from mullama.server.state import ServerState, ShuttingDown
from mullama.server.streaming import DisconnectAwareStream, ndjson

# `keep_alive` and `think` are accepted and ignored, as docs/server.md says: the model stays
# loaded while the server runs, and mullama has no separate reasoning output.


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def options_overrides(body: dict[str, Any]) -> dict[str, Any]:
    """StreamConfig overrides from Ollama's `options` object."""
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise bad_param("options", "'options' must be an object")
    num_predict = params.integer(options, "num_predict", -2)
    overrides = common.sampling_overrides(options, temperature_max=100.0)
    # -1 (infinite) and -2 (fill the context) both mean: as much as the server allows.
    overrides["max_tokens"] = num_predict if num_predict is not None and num_predict > 0 else None
    if num_predict == 0:
        raise bad_param("num_predict", "'num_predict' must not be 0")
    fmt = body.get("format")
    if fmt not in (None, ""):
        raise bad_param("format", "'format' (JSON mode / structured output) is not supported")
    if body.get("images"):
        raise bad_param("images", "'images' are not supported: the model reads text only")
    if body.get("tools"):
        raise bad_param("tools", "'tools' (function calling) is not supported")
    return overrides


def context_size(body: dict[str, Any], served: ServedModel) -> int | None:
    """`options.num_ctx`: the context this request runs in (None: the server's)."""
    options = body.get("options") or {}
    num_ctx = params.integer(options, "num_ctx", 1)
    if num_ctx is not None and num_ctx > served.max_n_ctx:
        raise bad_param(
            "num_ctx",
            f"'num_ctx' = {num_ctx} is over the model's context of {served.max_n_ctx} tokens",
        )
    return num_ctx


def check_model(body: dict[str, Any], served: ServedModel) -> None:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_param("model", "'model' is required")
    if not served.matches(model):
        # Ollama answers 404 for an unknown model; clients rely on it.
        raise APIError(404, f"model '{model}' not found (this server serves '{served.name}')")


def timings(generation: Generation, started: float) -> dict[str, Any]:
    last = generation.last
    prompt_tokens = len(generation.prompt_ids)
    eval_count = getattr(last, "generation_tokens", 0) or 0
    prompt_tps = getattr(last, "prompt_tps", 0.0) or 0.0
    gen_tps = getattr(last, "generation_tps", 0.0) or 0.0
    return {
        "total_duration": int((time.perf_counter() - started) * 1e9),
        "load_duration": 0,
        "prompt_eval_count": prompt_tokens,
        "prompt_eval_duration": int(prompt_tokens / prompt_tps * 1e9) if prompt_tps else 0,
        "eval_count": eval_count,
        "eval_duration": int(eval_count / gen_tps * 1e9) if gen_tps else 0,
    }


async def generate(request: Request) -> Response:
    return await _handle(request, chat=False)


async def chat(request: Request) -> Response:
    return await _handle(request, chat=True)


async def _handle(request: Request, *, chat: bool) -> Response:
    started = time.perf_counter()
    state: ServerState = request.app.state.mullama
    served = state.served
    try:
        body = await params.read_json(request, state.max_body_bytes)
        check_model(body, served)
        stream = params.boolean(body, "stream", True)
        overrides = options_overrides(body)
        n_ctx = context_size(body, served)
        inputs: dict[str, Any]
        if chat:
            if body.get("messages") == []:  # Ollama: an empty chat just loads the model
                return _loaded_reply(served, chat=True)
            inputs = {"messages": common.chat_messages(body)}
        else:
            prompt = params.string(body, "prompt") or ""
            if not prompt:
                return _loaded_reply(served, chat=False)
            system = params.string(body, "system")
            if params.boolean(body, "raw", False):
                inputs = {"prompt": prompt}
            else:
                messages = [{"role": "system", "content": system}] if system else []
                messages.append({"role": "user", "content": prompt})
                inputs = {"messages": messages}

        def start() -> Any:
            return common.start_generation(served, overrides=overrides, n_ctx=n_ctx, **inputs)

        if stream:
            generation = await common.unless_disconnected(request.receive, start)
            if generation is None:  # the client left while the request waited its turn
                return Response(status_code=499)
            lines = _lines(state, served, generation, chat=chat, started=started)
            return DisconnectAwareStream(lines, "application/x-ndjson")

        async def start_and_collect() -> dict[str, Any]:
            generation = await start()
            text = []
            async with aclosing(_texts(state, generation)) as texts:
                async for piece in texts:
                    text.append(piece)
            return _final(served, generation, chat=chat, started=started, text="".join(text))

        try:
            final = await common.unless_disconnected(request.receive, start_and_collect)
        except (ShuttingDown, MullamaError) as exc:
            raise common.failure(exc) from exc
    except APIError as err:
        return ollama_error_response(err)
    if final is None:  # the client left: nobody reads this
        return Response(status_code=499)
    return JSONResponse(final)


async def _texts(state: ServerState, generation: Generation) -> AsyncIterator[str]:
    async with aclosing(common.events(state, generation)) as events:
        async for event in events:
            yield event.text


async def _lines(
    state: ServerState, served: ServedModel, generation: Generation, *, chat: bool, started: float
) -> AsyncIterator[bytes]:
    try:
        async with aclosing(_texts(state, generation)) as texts:
            async for text in texts:
                if text:
                    yield ndjson(_piece(served, text, chat=chat))
    except (ShuttingDown, MullamaError) as exc:
        yield ndjson(common.failure(exc).ollama_body())
        return
    yield ndjson(_final(served, generation, chat=chat, started=started, text=""))


def _piece(served: ServedModel, text: str, *, chat: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": served.name, "created_at": _now()}
    if chat:
        body["message"] = {"role": "assistant", "content": text}
    else:
        body["response"] = text
    body["done"] = False
    return body


def _final(
    served: ServedModel, generation: Generation, *, chat: bool, started: float, text: str
) -> dict[str, Any]:
    body = _piece(served, text, chat=chat)
    body["done"] = True
    body["done_reason"] = common.finish_reason(generation.finish_reason, "ollama")
    body.update(timings(generation, started))
    return body


def _loaded_reply(served: ServedModel, *, chat: bool) -> Response:
    body = _piece(served, "", chat=chat)
    body["done"] = True
    body["done_reason"] = "load"
    return JSONResponse(body)


# -- model listing ------------------------------------------------------------------------------
def _details(served: ServedModel) -> dict[str, Any]:
    model = served.model
    params_count = model.metadata.get("general.size_label") if model.metadata else None
    return {
        "parent_model": "",
        "format": "gguf" if Path(model.path).suffix == ".gguf" else "mlx",
        "family": model.architecture,
        "families": [model.architecture],
        "parameter_size": str(params_count or ""),
        "quantization_level": model.quantization,
    }


async def tags(request: Request) -> Response:
    served: ServedModel = request.app.state.mullama.served
    path = Path(served.model.path)
    size = path.stat().st_size if path.is_file() else 0
    modified = datetime.datetime.fromtimestamp(served.created, datetime.timezone.utc)
    return JSONResponse(
        {
            "models": [
                {
                    "name": served.name,
                    "model": served.name,
                    "modified_at": modified.isoformat().replace("+00:00", "Z"),
                    "size": size,
                    "digest": "",
                    "details": _details(served),
                }
            ]
        }
    )


async def show(request: Request) -> Response:
    state: ServerState = request.app.state.mullama
    served = state.served
    try:
        body = await params.read_json(request, state.max_body_bytes)
        if "name" in body and "model" not in body:
            body["model"] = body["name"]
        check_model(body, served)
    except APIError as err:
        return ollama_error_response(err)
    model = served.model
    info = {
        k: v
        for k, v in (model.metadata or {}).items()
        if isinstance(v, (str, int, float, bool)) and not k.startswith("tokenizer.ggml.")
    }
    return JSONResponse(
        {
            "template": model.chat_template or "",
            "details": _details(served),
            "model_info": info,
            "capabilities": ["completion"],
        }
    )


async def version(request: Request) -> Response:
    return JSONResponse({"version": __version__})
