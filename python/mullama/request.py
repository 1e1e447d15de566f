"""One request type for every front end: what to generate and how.

`Context`, `AsyncContext`, `AsyncModel` and the server all describe a generation with a
`GenerationRequest`; the public methods take their keyword arguments from
`generation_request`, so a new option is added here once.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

from mullama._core import ConfigError, StreamConfig
from mullama.chat import Message
from mullama.progress import ProgressCallback, progress_clock

MAX_TOP_LOGPROBS = 20


@dataclass(frozen=True)
class GenerationRequest:
    """A raw `prompt` (text or token ids) or chat `messages`, the stream's `config`, how many
    alternatives to report per token, and an optional progress callback."""

    prompt: str | list[int] | None
    messages: list[Message] | None
    config: StreamConfig
    top_logprobs: int = 0
    on_progress: ProgressCallback | None = None
    progress_interval_s: float | None = None


def build_config(config: StreamConfig | None, overrides: dict[str, Any]) -> StreamConfig:
    """`config` with keyword overrides applied (e.g. generate_stream(p, max_tokens=50))."""
    base = config if config is not None else StreamConfig()
    if not isinstance(base, StreamConfig):
        raise ConfigError(f"config must be a StreamConfig, got {type(base).__name__}")
    return base.replace(**overrides) if overrides else base


def check_top_logprobs(top_logprobs: Any) -> None:
    if (
        not isinstance(top_logprobs, int)
        or isinstance(top_logprobs, bool)
        or not 0 <= top_logprobs <= MAX_TOP_LOGPROBS
    ):
        raise ConfigError(f"invalid top_logprobs = {top_logprobs!r}: must be 0..{MAX_TOP_LOGPROBS}")


def generation_request(
    prompt: str | Sequence[int] | None = None,
    config: StreamConfig | None = None,
    *,
    messages: Sequence[Message] | None = None,
    top_logprobs: int = 0,
    on_progress: ProgressCallback | None = None,
    progress_interval_s: float | None = None,
    **overrides: Any,
) -> GenerationRequest:
    """Checks a generation's arguments (every bad one raises ConfigError before anything
    starts) and returns them as a request. `overrides` are StreamConfig fields."""
    if (prompt is None) == (messages is None):
        raise ConfigError("pass exactly one of prompt or messages")
    if prompt is not None and not isinstance(prompt, str):
        if not isinstance(prompt, Sequence):
            raise ConfigError(
                f"prompt must be a str or a list of token ids, got {type(prompt).__name__}"
            )
        prompt = list(prompt)
    if messages is not None:
        if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
            raise ConfigError(
                f"messages must be a list of {{'role', 'content'}} dicts, got "
                f"{type(messages).__name__}"
            )
        messages = list(messages)
    check_top_logprobs(top_logprobs)
    progress_clock(on_progress, progress_interval_s)
    return GenerationRequest(
        prompt=prompt,
        messages=messages,
        config=build_config(config, overrides),
        top_logprobs=top_logprobs,
        on_progress=on_progress,
        progress_interval_s=progress_interval_s,
    )


Owner = TypeVar("Owner")
Request = TypeVar("Request")
Result = TypeVar("Result")
RequestArgs = ParamSpec("RequestArgs")


def with_signature_of(
    builder: Callable[RequestArgs, Request],
) -> Callable[
    [Callable[[Owner, Request], Result]],
    Callable[Concatenate[Owner, RequestArgs], Result],
]:
    """Decorates `method(self, request)` into a method with `builder`'s arguments, which
    builds (and checks) the request."""
    builder_params = list(inspect.signature(builder).parameters.values())

    def decorate(
        method: Callable[[Owner, Request], Result],
    ) -> Callable[Concatenate[Owner, RequestArgs], Result]:
        @functools.wraps(method)
        def public(self: Owner, *args: RequestArgs.args, **kwargs: RequestArgs.kwargs) -> Result:
            return method(self, builder(*args, **kwargs))

        own = inspect.signature(method)
        self_param = next(iter(own.parameters.values()))
        public.__signature__ = own.replace(  # type: ignore[attr-defined]
            parameters=[self_param, *builder_params]
        )
        return public

    return decorate


takes_request = with_signature_of(generation_request)
"""Decorates `method(self, request)` into `method(self, prompt=None, config=None, *, ...)`
with `generation_request`'s keyword arguments (and its checks)."""
