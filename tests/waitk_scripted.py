"""A scripted engine and model for wait-k tests: the "model" reads its own KV cache.

Prompt layout: INSTR, one id per source word, SEP, then the target. The engine's next token
depends only on the cached ids: target word j is " w" j "r" n "." where n is the number of
source words in the cache when the word is written, so a word's text tells which source
words the model had seen, and a token sampled before a read cannot survive it unnoticed.
After `target_words` words it samples EOS. With `separator=". "` a word ends inside its
last token (". ") and the next starts with "w" instead of " w".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from mullama._core import PieceTable
from mullama.engines.base import (
    Engine,
    EngineSequence,
    SamplerSettings,
    StepHandle,
    StepOutput,
    StepRequest,
)
from mullama.scheduler import GenerationJob, Scheduler

EOS, INSTR, SEP = 0, 1, 2
SPECIAL = [b"", b"", b""]
TARGET_PIECES = [b" w", b"w", b"r", b".", b". ", *(str(d).encode() for d in range(10))]
MAX_SOURCE_WORDS = 60
SOURCE_WORDS = [f"s{i}" for i in range(1, MAX_SOURCE_WORDS + 1)]
PIECES = [*SPECIAL, *(w.encode() for w in SOURCE_WORDS), *TARGET_PIECES]
SOURCE_ID = {w: len(SPECIAL) + i for i, w in enumerate(SOURCE_WORDS)}
PIECE_ID = {p: i for i, p in enumerate(PIECES) if i >= len(SPECIAL) + MAX_SOURCE_WORDS}


def source_text(n: int) -> str:
    return " ".join(SOURCE_WORDS[:n])


class ScriptedSequence(EngineSequence):
    def __init__(self, n_ctx: int) -> None:
        self.n_ctx = n_ctx
        self.ids: list[int] = []
        self.last: int | None = None
        self.configured = 0

    @property
    def cached_ids(self) -> list[int]:
        return list(self.ids)

    def reuse_prefix(self, ids: Sequence[int]) -> list[int]:
        ids = list(ids)
        common = 0
        limit = min(len(self.ids), len(ids) - 1)
        while common < limit and self.ids[common] == ids[common]:
            common += 1
        self.trim(len(self.ids) - common)
        return ids[common:]

    def trim(self, n: int) -> None:
        if n > 0:
            del self.ids[len(self.ids) - n :]

    def invalidate(self) -> None:
        self.ids = []
        self.last = None

    def configure(self, settings: SamplerSettings, history: Sequence[int]) -> None:
        self.configured += 1
        self.last = None


class _Done(StepHandle):
    def __init__(self, outputs: list[StepOutput]) -> None:
        self._outputs = outputs

    def result(self) -> list[StepOutput]:
        return self._outputs


class ScriptedEngine(Engine):
    name = "scripted"

    def __init__(
        self,
        target_words: int,
        *,
        separator: str = ".",
        step_delay_s: float = 0.0,
        run_ahead: bool = True,
    ) -> None:
        self.steps_run_ahead = run_ahead
        """Whether the job keeps a step in flight (as on MLX) or steps after each token."""
        self.target_words = target_words
        self.separator = separator
        self.step_delay_s = step_delay_s
        self.fed = 0
        """Every token run through the model (prefill and steps)."""

    @property
    def n_ctx_train(self) -> int:
        return 4096

    @property
    def n_vocab(self) -> int:
        return len(PIECES)

    def new_sequence(self, n_ctx: int) -> ScriptedSequence:
        return ScriptedSequence(n_ctx)

    def prefill(
        self,
        sequence: EngineSequence,
        ids: Sequence[int],
        should_stop: Callable[[], bool] | None = None,
    ) -> bool:
        assert isinstance(sequence, ScriptedSequence)
        sequence.ids.extend(ids)
        self.fed += len(ids)
        return True

    def step(self, requests: Sequence[StepRequest]) -> StepHandle:
        outputs = []
        for request in requests:
            seq = request.sequence
            assert isinstance(seq, ScriptedSequence)
            if request.input_ids is None:
                assert seq.last is not None, "a step fed the previous token without one"
                fed = [seq.last]
            else:
                fed = list(request.input_ids)
            seq.ids.extend(fed)
            self.fed += len(fed)
            if self.step_delay_s:
                time.sleep(self.step_delay_s)
            token = self.next_token(seq.ids)
            seq.last = token
            outputs.append(StepOutput(token, -0.5))
        return _Done(outputs)

    def next_token(self, ids: list[int]) -> int:
        sep = ids.index(SEP)
        n_source = sep - 1
        target = b"".join(PIECES[i] for i in ids[sep + 1 :]).decode()
        end = self.separator
        lead = " w" if end == "." else "w"
        words_done = target.count(end)
        tail = target.split(end)[-1]
        if not tail:
            if words_done >= self.target_words:
                return EOS
            return PIECE_ID[lead.encode()]
        expected = f"{lead}{words_done + 1}r{n_source}"
        if tail != expected and expected.startswith(tail):
            return PIECE_ID[expected[len(tail)].encode()]
        return PIECE_ID[end.encode()]  # the word is whole (or was cut): end it

    def logits(self, ids: Sequence[int]) -> Any:
        return np.zeros((len(ids), len(PIECES)), dtype=np.float32)


class ScriptedModel:
    """What open_waitk needs of a Model, over the scripted engine."""

    def __init__(self, engine: ScriptedEngine) -> None:
        self.engine = engine
        self.tokenizer = PieceTable(PIECES)
        self.scheduler = Scheduler(engine)
        self.end_of_generation_ids = frozenset({EOS})
        self.prompts: list[list[int]] = []

    def chat_ids(self, messages: list[dict[str, str]]) -> list[int]:
        content = messages[-1]["content"]
        source = content.split("\n\n", 1)[1]
        ids = [INSTR, *(SOURCE_ID[w] for w in source.split()), SEP]
        self.prompts.append(ids)
        return ids

    def token_bytes(self, token_id: int) -> bytes:
        return PIECES[token_id]


class JobRunner:
    """A Context's start_job for the scripted model: one sequence, jobs one at a time."""

    def __init__(self, engine: ScriptedEngine, n_ctx: int = 4096) -> None:
        self.sequence = engine.new_sequence(n_ctx)
        self.jobs: list[GenerationJob] = []

    def start_job(self, build: Any) -> GenerationJob:
        for job in self.jobs:
            job.cancel()
            job.join()
        job = build(self.sequence, lambda job: None)
        self.jobs.append(job)
        job.start()
        return job


def chunked(text: str, sizes: Sequence[int], delay_s: float) -> Iterator[str]:
    """`text` in chunks of the given sizes (cycled; words split across chunks), each after
    `delay_s`."""
    at = 0
    i = 0
    while at < len(text):
        time.sleep(delay_s)
        size = sizes[i % len(sizes)]
        yield text[at : at + size]
        at += size
        i += 1


def expected_words(k: int, source_words: int, target_words: int, separator: str = ".") -> list:
    """(delay, text) of each target word under wait-k."""
    lead = " w" if separator == "." else "w"
    out = []
    for t in range(1, target_words + 1):
        d = min(k + t - 1, source_words)
        out.append((d, f"{lead}{t}r{d}{separator}"))
    return out
