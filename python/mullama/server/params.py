"""Reading request bodies and checking parameter values, with errors that name the field."""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.requests import Request

from mullama.server.errors import APIError, bad_param

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024


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
    raw = b"".join(chunks)
    if not raw.strip():
        raise APIError(400, "the request body is empty: send a JSON object", code="invalid_json")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise APIError(
            400, f"the request body is not valid JSON: {exc}", code="invalid_json"
        ) from exc
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object", code="invalid_json")
    return body


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
        limit = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise bad_param(key, f"'{key}' = {value} is outside {limit}")
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
