"""Reading request bodies and checking parameter values, with errors that name the field."""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.requests import Request

from mullama.server.errors import APIError, bad_param


async def read_json(request: Request, max_bytes: int) -> dict[str, Any]:
    """The request's JSON object; 413 past `max_bytes` (checked while reading, so a huge
    body is never held in memory), 400 for anything that is not a JSON object."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    return parse_json_object(b"".join(chunks), "the request body")


def parse_json_object(raw: bytes | str, what: str) -> dict[str, Any]:
    """`raw` as a JSON object whose strings are all valid Unicode; APIError 400 otherwise
    (`what` names the thing in the message: "the request body", "the message")."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise APIError(400, f"{what} is not UTF-8: {exc}", code="invalid_json") from exc
    if not raw.strip():
        raise APIError(400, f"{what} is empty: send a JSON object", code="invalid_json")
    try:
        body = json.loads(raw)
    except RecursionError as exc:
        # The C parser recurses per nesting level and stops cleanly at the recursion limit.
        raise APIError(400, f"{what} nests too deeply", code="invalid_json") from exc
    except ValueError as exc:
        raise APIError(400, f"{what} is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise APIError(400, f"{what} must be a JSON object", code="invalid_json")
    field = _lone_surrogate(body)
    if field is not None:
        # JSON's \ud800 escape decodes to a lone surrogate, which is not text: it cannot be
        # tokenized (nor encoded as UTF-8), so the request is refused before it reaches the model.
        raise bad_param(
            field.partition(".")[0].partition("[")[0],
            f"'{field}' contains a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape): "
            "send valid Unicode text",
        )
    return body


def _lone_surrogate(body: dict[str, Any]) -> str | None:
    """The path (e.g. "messages[0].content") of the first string holding a lone surrogate."""
    todo: list[tuple[str, Any]] = [("", body)]
    while todo:
        path, value = todo.pop()
        if isinstance(value, str):
            if not _is_text(value):
                return path
        elif isinstance(value, dict):
            for key, item in value.items():
                if not _is_text(key):
                    return f"{path}.<key>" if path else "<key>"
                todo.append((f"{path}.{key}" if path else key, item))
        elif isinstance(value, list):
            todo.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
    return None


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _too_large(max_bytes: int) -> APIError:
    return APIError(
        413, f"the request body is larger than {max_bytes} bytes", code="request_too_large"
    )


def number(
    body: dict[str, Any], key: str, lo: float, hi: float, *, lo_open: bool = False
) -> float | None:
    """body[key] as a float in [lo, hi] (or (lo, hi]); None when absent or null."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad_param(key, f"'{key}' must be a number, got {value!r}")
    below = value <= lo if lo_open else value < lo
    if below or value > hi:
        bracket = "(" if lo_open else "["
        raise bad_param(key, f"'{key}' = {value!r} is outside {bracket}{lo}, {hi}]")
    return float(value)


def integer(body: dict[str, Any], key: str, lo: int, hi: int | None = None) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_param(key, f"'{key}' must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        limit = f"be in [{lo}, {hi}]" if hi is not None else f"be >= {lo}"
        raise bad_param(key, f"'{key}' = {value}: must {limit}")
    return value


def boolean(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad_param(key, f"'{key}' must be true or false, got {value!r}")
    return value


def string(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_param(key, f"'{key}' must be a string, got {type(value).__name__}")
    return value


def stop_sequences(body: dict[str, Any], key: str = "stop") -> list[str] | None:
    """`stop` as a string or a list of non-empty strings."""
    value = body.get(key)
    if value is None:
        return None
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise bad_param(key, f"'{key}' must be a string or a list of strings")
    if any(s == "" for s in stops):
        raise bad_param(key, f"'{key}' must not contain an empty string")
    return stops


def seed(body: dict[str, Any], key: str = "seed") -> int | None:
    # Clients send any 64-bit integer; the sampler wants an unsigned one.
    value = integer(body, key, -(2**63), 2**64 - 1)
    return None if value is None else value % 2**64
