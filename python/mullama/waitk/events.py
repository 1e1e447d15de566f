"""The consumer side: core Token events turned into WaitkEvents with the job's marks, and
the sync stream."""

from __future__ import annotations

import time
from dataclasses import dataclass

from mullama._core import Token, TokenStream
from mullama.waitk.job import WaitkJob, has_text
from mullama.waitk.metrics import WaitkMetrics, average_lagging


@dataclass(frozen=True)
class WaitkEvent:
    """A Token event of a wait-k stream with its place in the schedule."""

    token_event: Token
    """The core's event (text, token, logprob, finish reason, running stats)."""
    word_complete: bool
    """This event ends a target word."""
    source_words_read: int
    """Source words read when this token was written."""
    target_words_generated: int
    """Target words complete so far (this one included)."""
    metrics: WaitkMetrics | None = None
    """On the final event: latency and cost."""

    @property
    def text(self) -> str:
        return self.token_event.text

    @property
    def token(self) -> int | None:
        return self.token_event.token

    @property
    def logprob(self) -> float | None:
        return self.token_event.logprob

    @property
    def finish_reason(self) -> str | None:
        return self.token_event.finish_reason

    @property
    def stop_sequence(self) -> str | None:
        return self.token_event.stop_sequence

    @property
    def id(self) -> int | None:
        return self.token_event.id

    @property
    def top_logprobs(self) -> list[tuple[int, float]]:
        return self.token_event.top_logprobs

    @property
    def prompt_tokens(self) -> int:
        """Tokens of the first prompt (instruction and the first k source words)."""
        return self.token_event.prompt_tokens

    @property
    def prompt_tps(self) -> float:
        return self.token_event.prompt_tps

    @property
    def generation_tokens(self) -> int:
        return self.token_event.generation_tokens

    @property
    def generation_tps(self) -> float:
        return self.token_event.generation_tps

    @property
    def time_to_first_token(self) -> float | None:
        return self.token_event.time_to_first_token

    @property
    def elapsed(self) -> float:
        return self.token_event.elapsed

    @property
    def peak_memory(self) -> float:
        return self.token_event.peak_memory


class WaitkEvents:
    """Turns core events into WaitkEvents with the job's marks, and keeps the schedule seen
    so far (shared by the sync and async streams)."""

    def __init__(self, job: WaitkJob, end_of_generation_ids: frozenset[int]) -> None:
        self.job = job
        self._eog = end_of_generation_ids
        self.delays: list[int] = []
        self.written_at: list[float] = []
        self._read = 0
        self._word_text = ""  # text shown since the last complete word

    def convert(self, event: Token) -> WaitkEvent:
        pushed = event.token is not None and event.token not in self._eog
        mark = self.job.marks.popleft() if pushed and self.job.marks else None
        if mark is not None:
            self._read = mark.source_words_read
        read = self._read
        self._word_text += event.text
        complete = mark is not None and mark.word_complete
        written_at = mark.at if mark is not None else time.monotonic()
        if not complete and event.finish_reason is not None and has_text(self._word_text):
            # The stream ended on its own (stop sequence, max_tokens, ...) inside a word:
            # what it showed of the word is the word.
            complete, written_at = True, time.monotonic()
        if complete:
            self.delays.append(read)
            self.written_at.append(written_at)
            self._word_text = ""
        metrics = self.metrics() if event.finish_reason is not None else None
        return WaitkEvent(event, complete, read, len(self.delays), metrics)

    def metrics(self) -> WaitkMetrics:
        arrivals, complete = self.job.words.snapshot()
        lags: list[float | None] = []
        for j, arrived in enumerate(arrivals, start=1):
            lag = None
            for delay, at in zip(self.delays, self.written_at, strict=True):
                if delay >= j:
                    lag = max(0.0, at - arrived)
                    break
            lags.append(lag)
        return WaitkMetrics(
            wait_k=self.job.settings.wait_k,
            source_words=len(arrivals),
            source_complete=complete,
            delays=list(self.delays),
            average_lagging=average_lagging(self.delays, len(arrivals)),
            word_lag_s=lags,
            reads=list(self.job.reads),
            first_prompt_tokens=self.job.first_prompt_tokens,
        )


class WaitkStream:
    """Iterator of WaitkEvents (use `with` or `close()` to end it early)."""

    def __init__(self, stream: TokenStream, events: WaitkEvents) -> None:
        self._stream = stream
        self._events = events

    def __iter__(self) -> WaitkStream:
        return self

    def __next__(self) -> WaitkEvent:
        return self._events.convert(next(self._stream))

    def close(self) -> None:
        """Stops the generation (the producer stops within one token) and the source."""
        self._stream.close()
        self._events.job.words.close()

    def __enter__(self) -> WaitkStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def metrics(self) -> WaitkMetrics:
        """The schedule and latency so far (final once the stream has ended)."""
        return self._events.metrics()

    @property
    def job(self) -> WaitkJob:
        return self._events.job

    @property
    def finish_reason(self) -> str | None:
        return self._stream.finish_reason

    @property
    def stop_sequence(self) -> str | None:
        return self._stream.stop_sequence
