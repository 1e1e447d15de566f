"""A wait-k generation's arguments, checked once for Context and AsyncContext."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mullama._core import ConfigError, StreamConfig
from mullama.request import build_config, check_top_logprobs, with_signature_of
from mullama.waitk.source import Source, source_kind

DEFAULT_INSTRUCTION = "Translate the following text into French."


@dataclass(frozen=True)
class WaitkSettings:
    """The policy's knobs (checked by `waitk_settings`)."""

    wait_k: int = 3
    instruction: str = DEFAULT_INSTRUCTION
    max_new_words: int | None = None
    max_tokens_per_word: int = 50


def waitk_settings(
    wait_k: int = 3,
    instruction: str = DEFAULT_INSTRUCTION,
    max_new_words: int | None = None,
    max_tokens_per_word: int = 50,
) -> WaitkSettings:
    """WaitkSettings from user arguments; a bad one raises ConfigError naming it."""
    _positive_int("wait_k", wait_k)
    _positive_int("max_tokens_per_word", max_tokens_per_word)
    if max_new_words is not None:
        _positive_int("max_new_words", max_new_words)
    if not isinstance(instruction, str):
        raise ConfigError(f"instruction must be a str, got {type(instruction).__name__}")
    return WaitkSettings(wait_k, instruction, max_new_words, max_tokens_per_word)


@dataclass(frozen=True)
class WaitkRequest:
    """A wait-k generation: the source, the policy, the stream's config."""

    source: Source
    settings: WaitkSettings
    config: StreamConfig
    top_logprobs: int = 0


def waitk_request(
    source: Source,
    wait_k: int = 3,
    instruction: str = DEFAULT_INSTRUCTION,
    max_new_words: int | None = None,
    max_tokens_per_word: int = 50,
    config: StreamConfig | None = None,
    *,
    top_logprobs: int = 0,
    **overrides: Any,
) -> WaitkRequest:
    """Checks a wait-k generation's arguments (a bad one raises ConfigError before anything
    starts). `source`: a str, or an iterable (or, async, an async iterable) of text chunks
    arriving over time; `overrides`: StreamConfig fields."""
    settings = waitk_settings(wait_k, instruction, max_new_words, max_tokens_per_word)
    stream_config = build_config(config, overrides)
    check_top_logprobs(top_logprobs)
    source_kind(source, allow_async=True)
    return WaitkRequest(source, settings, stream_config, top_logprobs)


takes_waitk_request = with_signature_of(waitk_request)
"""Decorates `method(self, request)` into a method with `waitk_request`'s arguments (one
signature for Context and AsyncContext)."""


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"invalid {name} = {value!r}: must be a positive integer")
