"""What a whole-reply call returns (`GenerationResult`) and the collector that builds it from a
stream's events, shared by local contexts, the async API and remote backends.

It imports nothing from mullama, so a backend can build results without loading the engine
(mullama.remote would otherwise import mullama.context, which imports mullama.model: a circle
through `Model.connect`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class GenerationResult:
    """What `Context.generate` returns: the whole reply and how it went."""

    text: str
    tokens: list[int]
    finish_reason: str | None
    stop_sequence: str | None = None
    prompt_tokens: int = 0
    prompt_tps: float = 0.0
    generation_tokens: int = 0
    generation_tps: float = 0.0
    time_to_first_token: float | None = None
    peak_memory: float = 0.0
    logprobs: list[float] = field(default_factory=list)

    def __str__(self) -> str:
        return self.text


class ResultCollector:
    """Accumulates a stream's events into a GenerationResult (sync and async alike)."""

    def __init__(self, end_of_generation_ids: frozenset[int]) -> None:
        self._eog = end_of_generation_ids
        self._parts: list[str] = []
        self._tokens: list[int] = []
        self._logprobs: list[float] = []
        self._last: Any = None

    def add(self, event: Any) -> None:
        self._parts.append(event.text)
        # The end-of-turn token that closes a reply is not part of it.
        closing_eog = event.finish_reason is not None and event.token in self._eog
        if event.token is not None and not closing_eog:
            self._tokens.append(event.token)
            if event.logprob is not None:
                self._logprobs.append(event.logprob)
        self._last = event

    def result(self, finish_reason: str | None, stop_sequence: str | None) -> GenerationResult:
        result = GenerationResult(
            text="".join(self._parts),
            tokens=self._tokens,
            finish_reason=finish_reason,
            stop_sequence=stop_sequence,
            logprobs=self._logprobs,
        )
        last = self._last
        if last is not None:
            result.prompt_tokens = last.prompt_tokens
            result.prompt_tps = last.prompt_tps
            result.generation_tokens = last.generation_tokens
            result.generation_tps = last.generation_tps
            result.time_to_first_token = last.time_to_first_token
            result.peak_memory = last.peak_memory
        return result
