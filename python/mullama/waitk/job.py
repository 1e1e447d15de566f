"""The wait-k job: reads source words on the schedule, rebuilds the prompt through the
sequence's reuse_prefix, and writes target words (run on a producer thread, its engine calls
between the batch's steps)."""

from __future__ import annotations

import codecs
import collections
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mullama._core import ConfigError, ContextLengthError, StreamConfig, TokenProducer
from mullama.engines.base import (
    EngineSequence,
    SamplerSettings,
    StepHandle,
    StepOutput,
    StepRequest,
)
from mullama.scheduler import GenerationJob, Scheduler, ThreadedJob
from mullama.waitk.metrics import ReadRecord
from mullama.waitk.request import WaitkSettings
from mullama.waitk.source import SourceWords


@dataclass(frozen=True)
class TokenMark:
    """What one pushed token means for the schedule."""

    word_complete: bool
    source_words_read: int
    target_words_generated: int
    """Target words complete after this token."""
    at: float
    """When the job pushed it (time.monotonic())."""


PromptBuilder = Callable[[str], list[int]]
"""Source text so far -> the prompt's ids before the target (instruction, source, template)."""


class WaitkJob(ThreadedJob):
    """A wait-k generation on one engine sequence (run on a producer thread)."""

    def __init__(
        self,
        scheduler: Scheduler,
        sequence: EngineSequence,
        config: StreamConfig,
        producer: TokenProducer,
        end_of_generation_ids: frozenset[int],
        *,
        settings: WaitkSettings,
        words: SourceWords,
        build_prompt: PromptBuilder,
        token_bytes: Callable[[int], bytes],
        top_logprobs: int = 0,
        on_exit: Callable[[GenerationJob], None] | None = None,
    ) -> None:
        super().__init__(
            scheduler,
            sequence,
            [],
            config,
            producer,
            end_of_generation_ids,
            top_logprobs,
            on_exit,
        )
        self.settings = settings
        self.words = words
        self.marks: collections.deque[TokenMark] = collections.deque()
        """One mark per pushed token, in push order (the consumer side takes them)."""
        self.reads: list[ReadRecord] = []
        """The reads after the first, in order."""
        self.first_prompt_tokens = 0
        self._build_prompt = build_prompt
        self._token_bytes = token_bytes
        self._sampler = SamplerSettings.from_config(config)
        # The generation's state, touched by the producer thread only.
        self._read = 0
        self._written = 0
        self._target: list[int] = []
        self._held: StepOutput | None = None
        self._word_open = False
        self._word_tokens = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def generate(self) -> None:
        try:
            self._write_target()
        finally:
            self.words.close()

    def _write_target(self) -> None:
        carried: tuple[StepOutput, str, Any] | None = None  # a sampled token not yet placed
        feed: list[int] | None = None
        # On an engine whose steps run ahead (MLX), one step stays in flight as in
        # a solo run: the next token computes while this one is placed. A read drops it
        # (it was sampled without the new source words) and the token it fed is trimmed
        # from the cache by the read's reuse_prefix. A synchronous engine (llama.cpp) steps
        # after the token went out.
        run_ahead = self.engine.steps_run_ahead
        pending: StepHandle | None = None
        k = self.settings.wait_k
        while True:
            if self._read < k + self._written:
                n = self.words.wait_words(k + self._written, self.should_stop)
                if n is None:
                    return
                if n == 0:
                    raise ConfigError("the source is empty: it has no words")
                if n > self._read:
                    if carried is not None:
                        # It was sampled before these words were read: sample it again.
                        self._decoder.setstate(carried[2])
                        carried = None
                    pending = None
                    feed = self._read_through(n)
                    if feed is None:
                        return
            if carried is not None:
                out, text, _ = carried
                carried = None
            else:
                if pending is None:
                    pending = self.scheduler.call(self._start_step, feed)
                    feed = None
                    if pending is None:  # the context is full
                        self._end("length", None)
                        return
                out, pending = self.scheduler.call(self._read_step, pending, run_ahead)
                self.tokens_computed += 1
                self.producer.set_peak_memory(self.engine.peak_memory())
                if out.token in self.end_of_generation_ids:
                    self._end("stop", out.token)
                    return
                state = self._decoder.getstate()
                text = self._decoder.decode(self._token_bytes(out.token))
                boundary = _word_boundary(text, self._word_open)
                if boundary == 0:
                    # The word ended before this token, which starts the next one.
                    if not self._complete_held():
                        return
                    if self._finished_words():
                        return
                    carried = (out, text, state)
                    continue
            if not self._place(out, text):
                return
            if self._finished_words():
                return
            if self.should_stop():
                return

    def _start_step(self, feed: list[int] | None) -> StepHandle | None:
        """Queues a step that feeds `feed` (None: the last sampled token) and samples the next
        token; None when the context is full. Runs on the scheduler's loop (`call`)."""
        if len(self.sequence.cached_ids) >= self.sequence.n_ctx:
            return None
        return self.engine.step([StepRequest(self.sequence, feed, self.top_logprobs)])

    def _read_step(
        self, pending: StepHandle, run_ahead: bool
    ) -> tuple[StepOutput, StepHandle | None]:
        """Queues the step after `pending` when the engine runs ahead, then reads `pending`'s
        token. Runs on the scheduler's loop (`call`)."""
        ahead = self._start_step(None) if run_ahead and not self.should_stop() else None
        return pending.result()[0], ahead

    def _read_through(self, n: int) -> list[int] | None:
        """Reads source words up to `n`: rebuilds the prompt, feeds what the cache lacks.
        Returns the ids the next step feeds; None if told to stop meanwhile."""
        ids = self._build_prompt(self.words.text_through(n)) + self._target
        if len(ids) >= self.sequence.n_ctx:
            err = ContextLengthError(
                f"the wait-k prompt ({len(ids)} tokens after {n} source words) does not fit "
                f"in the context of {self.sequence.n_ctx} tokens"
            )
            # The attributes Context's own ContextLengthError carries.
            err.prompt_tokens = len(ids)  # type: ignore[attr-defined]
            err.max_tokens = self.config.max_tokens  # type: ignore[attr-defined]
            err.n_ctx = self.sequence.n_ctx  # type: ignore[attr-defined]
            raise err
        todo = self.scheduler.call(self.sequence.reuse_prefix, ids)
        if self._read == 0:
            self.first_prompt_tokens = len(ids)
            self.producer.set_prompt_tokens(len(ids))
        else:
            self.reads.append(ReadRecord(n - self._read, len(todo), len(ids)))
        self.prefill_tokens += len(todo)
        self.prompt_ids = ids
        if not self.prefill(todo[:-1]):
            return None
        settings = self._sampler
        if settings.seed is not None:
            # configure() restarts a seeded random state: vary it per read so the draws
            # after each read differ, and stay reproducible.
            settings = dataclasses.replace(settings, seed=settings.seed + len(self.reads))
        self.scheduler.call(self.sequence.configure, settings, ids[:-1])
        self._read = n
        return todo[-1:]

    def _place(self, out: StepOutput, text: str) -> bool:
        """Adds a token to the current target word; False if the stream has ended."""
        boundary = _word_boundary(text, self._word_open)
        self._target.append(out.token)
        self._word_tokens += 1
        if not self._push_held(False):
            return False
        self._held = out
        if boundary is not None:
            # The word ends inside this token. Text after the whitespace (a token holding the
            # start of the next word too, rare) stays with this word: a token is not split.
            return self._complete_held()
        self._word_open = self._word_open or has_text(text)
        if self._word_tokens >= self.settings.max_tokens_per_word:
            return self._complete_held()
        return True

    def _complete_held(self) -> bool:
        """The held token ends the current word: push it marked complete."""
        self._written += 1
        ok = self._push_held(True)
        self._word_open = False
        self._word_tokens = 0
        return ok

    def _push_held(self, complete: bool) -> bool:
        held, self._held = self._held, None
        if held is None:
            return True
        mark = TokenMark(
            word_complete=complete,
            source_words_read=self._read,
            target_words_generated=self._written,
            at=time.monotonic(),
        )
        self.marks.append(mark)
        return self.producer.push(held.token, held.logprob, held.top_logprobs)

    def _finished_words(self) -> bool:
        limit = self.settings.max_new_words
        if limit is not None and self._written >= limit:
            self.producer.finish("length", None)
            return True
        return False

    def _end(self, reason: str, token: int | None) -> None:
        if self._held is not None:
            if self._word_open:
                if not self._complete_held():
                    return
            elif not self._push_held(False):
                return
        self.producer.finish(reason, token)  # type: ignore[arg-type]


def _word_boundary(text: str, word_open: bool) -> int | None:
    """Where in `text` the current word ends: the index of the first whitespace after word
    text (text before this token counts when `word_open`); None if it does not end here."""
    for i, char in enumerate(text):
        if char.isspace():
            if word_open:
                return i
        else:
            word_open = True
    return None


def has_text(text: str) -> bool:
    return any(not c.isspace() for c in text)
