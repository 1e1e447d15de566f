"""What every dialect shares: chat messages, building the generation request, the per-request
event loop, the finish-reason table, and stopping work for a client that has left.

The dialect modules (openai, ollama, websocket) translate their wire formats to and from these
and import nothing from each other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import anyio
from starlette.types import Receive

from mullama import MullamaError
from mullama.request import generation_request
from mullama.server import params
from mullama.server.defaults import RETRY_AFTER_S
from mullama.server.engine import Generation, ServedModel, ServerBusy
from mullama.server.errors import APIError, bad_param, from_mullama_error
from mullama.server.state import ServerState, ShuttingDown

T = TypeVar("T")

ROLES = ("system", "user", "assistant", "tool")
"""The chat roles a request may use (OpenAI's "developer" is read as "system")."""

# mullama's finish reason -> each dialect's word for it. OpenAI and Ollama have no word for a
# deadline or a cancel: a deadline cuts the reply short like max_tokens; a cancel ends it.
FINISH_REASONS: dict[str, dict[str, str]] = {
    "stop": {"openai": "stop", "ollama": "stop", "websocket": "stop"},
    "length": {"openai": "length", "ollama": "length", "websocket": "length"},
    "timeout": {"openai": "length", "ollama": "length", "websocket": "timeout"},
    "cancelled": {"openai": "stop", "ollama": "stop", "websocket": "cancelled"},
}


def finish_reason(reason: str | None, dialect: str) -> str:
    """How `dialect` ("openai", "ollama", "websocket") spells mullama's finish `reason`."""
    return FINISH_REASONS.get(reason or "stop", FINISH_REASONS["stop"])[dialect]


# -- requests -----------------------------------------------------------------------------------
def chat_messages(body: dict[str, Any]) -> list[dict[str, str]]:
    """`body["messages"]` checked: a non-empty list of {role, content} with a known role and text
    content (a string, or OpenAI's list of text parts); images are refused."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_param("messages", "'messages' must be a non-empty list of messages")
    checked = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise bad_param("messages", f"messages[{i}] must be an object with a 'role' string")
        role = "system" if message["role"] == "developer" else message["role"]
        if role not in ROLES:
            raise bad_param(
                "messages",
                f"messages[{i}]['role'] = {message['role']!r} is not a known role "
                f"(use one of {', '.join(ROLES)})",
            )
        if message.get("images"):
            raise bad_param(
                "messages", f"messages[{i}]: images are not supported (the model reads text only)"
            )
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


def sampling_overrides(fields: dict[str, Any], *, temperature_max: float) -> dict[str, Any]:
    """The sampling fields every dialect spells alike (OpenAI's body, Ollama's `options`, the
    WebSocket's request) as StreamConfig overrides; None where unset. The reply length is
    each dialect's own field."""
    return {
        "temperature": params.number(fields, "temperature", 0.0, temperature_max),
        "top_p": params.number(fields, "top_p", 0.0, 1.0, lo_open=True),
        "top_k": params.integer(fields, "top_k", 0),
        "min_p": params.number(fields, "min_p", 0.0, 1.0),
        "repeat_penalty": params.number(fields, "repeat_penalty", 0.0, 10.0, lo_open=True),
        "seed": params.seed(fields),
        "stop_sequences": params.stop_sequences(fields),
    }


async def start_generation(
    served: ServedModel,
    *,
    prompt: str | list[int] | None = None,
    messages: list[dict[str, str]] | None = None,
    overrides: dict[str, Any],
    top_logprobs: int = 0,
    n_ctx: int | None = None,
) -> Generation:
    """Starts a generation; `overrides` are StreamConfig fields a client set (None: unset).
    A reply with no max_tokens runs to the server's default length or the end of the context.
    Refusals raise APIError (400 for bad values, a prompt over the context, ...)."""
    fields = {k: v for k, v in overrides.items() if v is not None}
    default_length = "max_tokens" not in fields
    fields.setdefault("max_tokens", served.default_max_tokens)
    fields.setdefault("timeout_ms", served.timeout_ms)
    try:
        request = generation_request(prompt, messages=messages, top_logprobs=top_logprobs, **fields)
        return await served.start(request, n_ctx=n_ctx, default_length=default_length)
    except MullamaError as exc:
        raise from_mullama_error(exc, "prompt" if messages is None else "messages") from exc
    except ServerBusy as exc:
        raise APIError(
            503, str(exc), type="server_error", code="server_busy", retry_after=RETRY_AFTER_S
        ) from exc


# -- the per-request event loop -----------------------------------------------------------------
def is_content_token(served: ServedModel, event: Any) -> bool:
    """False for events without a token and for the end-of-generation token closing a reply."""
    if event.token is None:
        return False
    return not (
        event.finish_reason is not None and event.token in served.model.end_of_generation_ids
    )


async def events(state: ServerState, generation: Generation) -> AsyncIterator[Any]:
    """The generation's Token events, counted as served; raises ShuttingDown when the server
    drains. Closing it (or leaving it) stops the generation within one token."""
    try:
        async for event in generation:
            state.check_running()
            if is_content_token(state.served, event):
                state.count_token()
            yield event
    finally:
        await generation.aclose()


def failure(exc: ShuttingDown | MullamaError) -> APIError:
    """The API error for a generation that ended badly after it started."""
    if isinstance(exc, ShuttingDown):
        return APIError(503, str(exc), type="server_error", code="shutting_down")
    return from_mullama_error(exc)


async def unless_disconnected(receive: Receive, work: Callable[[], Awaitable[T]]) -> T | None:
    """Runs `work()` while watching the ASGI `receive` for the client's disconnect; if the
    client leaves first, `work` is cancelled (a queued generation never starts, a running one
    stops within one token) and None is returned. For handlers whose body has been read."""
    result: list[T] = []
    error: list[Exception] = []
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            tg.cancel_scope.cancel()

        tg.start_soon(watch)
        try:
            result.append(await work())
        except Exception as exc:  # raised below, not wrapped in the task group's ExceptionGroup
            error.append(exc)
        tg.cancel_scope.cancel()
    if error:
        raise error[0]
    return result[0] if result else None
