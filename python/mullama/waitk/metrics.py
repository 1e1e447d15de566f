"""Latency and cost of a wait-k generation: Average Lagging, word lags, what reads fed."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def average_lagging(delays: Sequence[int], source_words: int) -> float | None:
    """Average Lagging as STACL and SimulEval define it.

    AL = (1/tau) * sum_{i=1..tau} [d_i - (i-1) * |X|/|Y|], where d_i is the number of source
    words read when target word i was written, |Y| = len(delays), and tau is the first i with
    d_i = |X| (all of them when the source was never read to its end). None without target
    or source words."""
    if not delays or source_words < 1:
        return None
    rate = source_words / len(delays)
    total = 0.0
    tau = 0
    for i, delay in enumerate(delays):
        total += delay - i * rate
        tau = i + 1
        if delay >= source_words:
            break
    return total / tau


@dataclass(frozen=True)
class ReadRecord:
    """One read after the first: how many source words it added and what it cost."""

    words_added: int
    tokens_fed: int
    """Prompt tokens run through the model (everything after the reused prefix)."""
    prompt_tokens: int
    """The whole prompt: what re-prefilling everything would have cost."""


@dataclass(frozen=True)
class WaitkMetrics:
    """Latency and cost of a wait-k generation (on the final event and `stream.metrics`)."""

    wait_k: int
    source_words: int
    """Source words that had arrived (all of them when `source_complete`)."""
    source_complete: bool
    delays: list[int]
    """d_i: source words read when target word i was written."""
    average_lagging: float | None
    word_lag_s: list[float | None]
    """For each source word: seconds from its arrival (when it was complete) to the first
    target word written with it read; None if no target word came after it."""
    reads: list[ReadRecord]
    first_prompt_tokens: int

    @property
    def target_words(self) -> int:
        return len(self.delays)

    @property
    def tokens_recomputed_per_source_word(self) -> float | None:
        """Prompt tokens fed per source word over the reads after the first."""
        words = sum(r.words_added for r in self.reads)
        return sum(r.tokens_fed for r in self.reads) / words if words else None

    @property
    def full_reprefill_per_source_word(self) -> float | None:
        """What re-prefilling the whole prompt at each of those reads would cost per word."""
        words = sum(r.words_added for r in self.reads)
        return sum(r.prompt_tokens for r in self.reads) / words if words else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "wait_k": self.wait_k,
            "source_words": self.source_words,
            "source_complete": self.source_complete,
            "target_words": self.target_words,
            "delays": list(self.delays),
            "average_lagging": self.average_lagging,
            "word_lag_s": list(self.word_lag_s),
            "tokens_recomputed_per_source_word": self.tokens_recomputed_per_source_word,
            "full_reprefill_per_source_word": self.full_reprefill_per_source_word,
            "reads": [dataclasses.asdict(r) for r in self.reads],
        }
