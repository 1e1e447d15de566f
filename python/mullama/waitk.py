"""Simultaneous generation with the wait-k policy (STACL, Ma et al. 2019) over a live source.

The source (text chunks arriving over time) is cut into words as it arrives. Target word t
is written only after min(k + t - 1, |source|) source words have been read; once the source
has ended and been read, the target runs to its end.

The prompt is the model's chat template around "instruction, source so far", followed by
the target so far (as the token ids already written). A read rebuilds that prompt with the
new source words and hands it to the sequence's `reuse_prefix`, which trims the KV cache to
the longest common prefix (instruction and old source), so only the new source words, the
template's closing tokens and the target so far are fed again. A target word is complete at
the first whitespace after its text (or at the end of generation, or after
max_tokens_per_word tokens); when a word ends at a token that starts the next word and the
schedule asks for a read first, that token is dropped and sampled again after the read.

Tokens travel through one core stream (exact stops, UTF-8, deadline, backpressure); the job
holds each token back until the next one shows whether it ends its word, and tells the
consumer side what each pushed token means (`TokenMark`) through a queue beside the stream.
"""

from __future__ import annotations

import codecs
import collections
import dataclasses
import inspect
import threading
import time
from collections.abc import AsyncIterable, Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from mullama._core import (
    ConfigError,
    ContextLengthError,
    StreamConfig,
    Token,
    TokenProducer,
    TokenStream,
    open_stream,
)
from mullama.engines.base import Engine, EngineSequence, SamplerSettings, StepOutput, StepRequest
from mullama.producer import GenerationJob
from mullama.request import build_config, check_top_logprobs, with_signature_of

DEFAULT_INSTRUCTION = "Translate the following text into French."
MAX_UNREAD_CHARS = 64 * 1024
"""Source text the reader takes ahead of the policy before it waits (backpressure on the
source; the whole source must fit in the context anyway)."""
SOURCE_POLL_S = 0.05
"""How often a job waiting for source words checks whether it was told to stop."""

Source = str | Iterable[str] | AsyncIterable[str]


# ---------------------------------------------------------------- settings and metrics


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


# ---------------------------------------------------------------- the source


class SourceWords:
    """Source text arriving in chunks, cut into words as it comes (thread-safe).

    A word is a run of non-whitespace characters; it is complete, and counts as arrived,
    once whitespace follows it or the source ends. Feeding waits while more than
    MAX_UNREAD_CHARS of text are ahead of what the policy has read."""

    def __init__(self, max_unread_chars: int = MAX_UNREAD_CHARS) -> None:
        self._cond = threading.Condition()
        self._text: list[str] = []
        self._length = 0
        self._spans: list[tuple[int, int]] = []  # complete words: (start, end) in the text
        self._arrivals: list[float] = []
        self._open_start: int | None = None  # start of the word still being received
        self._ended = False
        self._closed = False
        self._error: BaseException | None = None
        self._read_chars = 0
        self._wanted = 0
        self._max_unread = max_unread_chars
        self._joined = ""

    # -- the source side ---------------------------------------------------------------
    def feed(self, chunk: str) -> bool:
        """Adds a chunk; False once the reader is gone (stop feeding). Waits (bounded by the
        reader's polling) while too much is unread."""
        if not isinstance(chunk, str):
            self.fail(
                ConfigError(f"source chunks must be str, got {type(chunk).__name__}: {chunk!r:.40}")
            )
            return False
        with self._cond:
            while self._must_wait():
                self._cond.wait(SOURCE_POLL_S)
            if self._closed or self._ended:
                return False
            self._take(chunk, time.monotonic())
            self._cond.notify_all()
            return True

    def room(self) -> bool:
        """Whether a feed would not wait (for async feeders, which must not block)."""
        with self._cond:
            return not self._must_wait()

    def _must_wait(self) -> bool:
        # Only while the reader has all the words it asked for: a reader waiting for a
        # word that is not complete yet must get the text that completes it.
        return (
            not self._closed
            and self._length - self._read_chars > self._max_unread
            and len(self._spans) >= self._wanted
        )

    def end(self) -> None:
        """The source has ended: its last word is complete."""
        with self._cond:
            if self._ended:
                return
            if self._open_start is not None:
                self._spans.append((self._open_start, self._length))
                self._arrivals.append(time.monotonic())
                self._open_start = None
            self._ended = True
            self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        """The source failed: the generation ends with `error`."""
        with self._cond:
            if self._error is None:
                self._error = error
            self._ended = True
            self._cond.notify_all()

    def _take(self, chunk: str, now: float) -> None:
        base = self._length
        self._text.append(chunk)
        self._length += len(chunk)
        self._joined = ""
        start = self._open_start
        for offset, char in enumerate(chunk):
            if char.isspace():
                if start is not None:
                    self._spans.append((start, base + offset))
                    self._arrivals.append(now)
                    start = None
            elif start is None:
                start = base + offset
        self._open_start = start

    # -- the reader side ---------------------------------------------------------------
    def close(self) -> None:
        """The reader is gone: feeding stops."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def wait_words(self, n: int, should_stop: Callable[[], bool]) -> int | None:
        """Waits until `n` words are complete or the source has ended; returns how many
        words to read (n, or all there are if fewer), None if `should_stop()` meanwhile.
        Raises the source's error."""
        with self._cond:
            if n > self._wanted:
                self._wanted = n
                self._cond.notify_all()
            while True:
                if self._error is not None:
                    raise self._error
                if len(self._spans) >= n:
                    return n
                if self._ended:
                    return len(self._spans)
                if should_stop():
                    return None
                self._cond.wait(SOURCE_POLL_S)

    def text_through(self, n: int) -> str:
        """The source text from its first word to the end of word `n` (original spacing);
        marks that much as read."""
        with self._cond:
            if n == 0:
                return ""
            start, end = self._spans[0][0], self._spans[n - 1][1]
            self._read_chars = max(self._read_chars, end)
            self._cond.notify_all()
            if not self._joined:
                self._joined = "".join(self._text)
            return self._joined[start:end]

    def snapshot(self) -> tuple[list[float], bool]:
        """(arrival time of each complete word, whether the source has ended)."""
        with self._cond:
            return list(self._arrivals), self._ended and self._error is None


def pump_source(source: Iterable[str], words: SourceWords) -> None:
    """Feeds a (possibly blocking) iterable of chunks into `words`, then ends it; run on
    its own thread. Stops after the chunk in hand once the reader is gone."""
    iterator = iter(source)
    try:
        for chunk in iterator:
            if not words.feed(chunk):
                break
        else:
            words.end()
    except BaseException as exc:  # the generation ends with the source's error
        words.fail(exc)
    finally:
        if inspect.isgenerator(iterator):  # never the caller's file or socket
            iterator.close()


async def pump_async_source(source: AsyncIterable[str], words: SourceWords) -> None:
    """Feeds an async iterable of chunks into `words`, then ends it (an event-loop task)."""
    import anyio

    iterator = source.__aiter__()
    try:
        while True:
            try:
                chunk = await iterator.__anext__()
            except StopAsyncIteration:
                words.end()
                return
            # The reader is far behind: wait on the loop, not in feed(), which would block it.
            while not words.room():
                await anyio.sleep(SOURCE_POLL_S)
            if not words.feed(chunk):
                return
    except Exception as exc:  # the generation ends with the source's error
        words.fail(exc)
    finally:
        if inspect.isasyncgen(iterator):
            with anyio.CancelScope(shield=True):
                await iterator.aclose()


def source_kind(source: Any, *, allow_async: bool) -> str:
    """ "text", "iterable" or "async" for a valid source; ConfigError otherwise (before
    anything starts)."""
    if isinstance(source, str):
        if not source.strip():
            raise ConfigError("the source is empty: it has no words")
        return "text"
    if isinstance(source, AsyncIterable):
        if not allow_async:
            raise ConfigError(
                "an async iterable source needs AsyncContext.generate_stream_waitk; "
                "Context takes a str or an iterable of str"
            )
        return "async"
    if isinstance(source, bytes | bytearray) or not isinstance(source, Iterable):
        raise ConfigError(
            f"source must be a str or an iterable of str chunks, got {type(source).__name__}"
        )
    return "iterable"


def start_source(source: Source, kind: str, words: SourceWords) -> None:
    """Starts reading a "text" or "iterable" source into `words` (an "async" one is the
    caller's event loop's to pump with `pump_async_source`)."""
    if kind == "text":
        assert isinstance(source, str)
        words.feed(source)
        words.end()
    elif kind == "iterable":
        # A daemon thread: a source blocked in a read (a pipe, a socket) must not keep the
        # process alive; it stops feeding at its next chunk once the generation is over.
        threading.Thread(
            target=pump_source, args=(source, words), name="mullama-waitk-source", daemon=True
        ).start()


def open_waitk(
    model: Any,
    start_job: Callable[[Callable[..., GenerationJob]], GenerationJob],
    request: WaitkRequest,
    *,
    allow_async: bool = False,
) -> tuple[TokenStream, WaitkEvents, str]:
    """Starts a wait-k generation of `model` through `start_job` (a Context's); returns the
    core stream, the event converter, and the source's kind ("async": the caller pumps)."""
    source, settings, config = request.source, request.settings, request.config
    top_logprobs = request.top_logprobs
    kind = source_kind(source, allow_async=allow_async)
    words = SourceWords()
    producer, stream = open_stream(config, model.tokenizer)
    build_prompt = chat_prompt_builder(model.chat_ids, settings.instruction)

    def build(sequence: EngineSequence, on_exit: Callable[[GenerationJob], None]) -> WaitkJob:
        return WaitkJob(
            model.engine,
            sequence,
            model.forward_lock,
            config,
            producer,
            model.end_of_generation_ids,
            settings=settings,
            words=words,
            build_prompt=build_prompt,
            token_bytes=model.token_bytes,
            top_logprobs=top_logprobs,
            on_exit=on_exit,
        )

    job = start_job(build)
    assert isinstance(job, WaitkJob)
    try:
        start_source(source, kind, words)
    except BaseException:
        stream.close()
        raise
    return stream, WaitkEvents(job, model.end_of_generation_ids), kind


# ---------------------------------------------------------------- the job


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


class WaitkJob(GenerationJob):
    """A wait-k generation on one engine sequence (run on a producer thread)."""

    def __init__(
        self,
        engine: Engine,
        sequence: EngineSequence,
        forward_lock: AbstractContextManager[Any],
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
            engine,
            sequence,
            forward_lock,
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
                    feed = self._read_through(n)
                    if feed is None:
                        return
            if carried is not None:
                out, text, _ = carried
                carried = None
            else:
                with self.forward_lock:
                    if len(self.sequence.cached_ids) >= self.sequence.n_ctx:
                        out = None
                    else:
                        step = StepRequest(self.sequence, feed, self.top_logprobs)
                        out = self.engine.step([step]).result()[0]
                        self.tokens_computed += 1
                        self.producer.set_peak_memory(self.engine.peak_memory())
                feed = None
                if out is None:  # the context is full
                    self._end("length", None)
                    return
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

    def _read_through(self, n: int) -> list[int] | None:
        """Reads source words up to `n`: rebuilds the prompt, feeds what the cache lacks.
        Returns the ids the next step feeds; None if told to stop meanwhile."""
        ids = self._build_prompt(self.words.text_through(n)) + self._target
        if len(ids) >= self.sequence.n_ctx:
            err = ContextLengthError(
                f"the wait-k prompt ({len(ids)} tokens after {n} source words) does not fit "
                f"in the context of {self.sequence.n_ctx} tokens"
            )
            err.prompt_tokens = len(ids)
            err.n_ctx = self.sequence.n_ctx
            raise err
        with self.forward_lock:
            todo = self.sequence.reuse_prefix(ids)
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
        with self.forward_lock:
            self.sequence.configure(settings, ids[:-1])
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
            # The word ends inside this token; what follows the whitespace, if anything,
            # starts the next word (a token holding both is kept whole).
            return self._complete_held(next_open=_has_text(text[boundary:]))
        self._word_open = self._word_open or _has_text(text)
        if self._word_tokens >= self.settings.max_tokens_per_word:
            return self._complete_held()
        return True

    def _complete_held(self, next_open: bool = False) -> bool:
        """The held token ends the current word: push it marked complete."""
        self._written += 1
        ok = self._push_held(True)
        self._word_open = next_open
        self._word_tokens = 1 if next_open else 0
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


def _has_text(text: str) -> bool:
    return any(not c.isspace() for c in text)


# ---------------------------------------------------------------- the consumer side


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
        if not complete and event.finish_reason is not None and _has_text(self._word_text):
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


def chat_prompt_builder(
    chat_ids: Callable[[list[dict[str, str]]], list[int]], instruction: str
) -> PromptBuilder:
    """The prompt layout: one user turn "instruction, blank line, source so far" in the
    model's chat template, ready for the assistant's reply (the target)."""

    def build(source_text: str) -> list[int]:
        content = f"{instruction}\n\n{source_text}" if instruction else source_text
        return chat_ids([{"role": "user", "content": content}])

    return build


__all__ = [
    "DEFAULT_INSTRUCTION",
    "ReadRecord",
    "SourceWords",
    "TokenMark",
    "WaitkEvent",
    "WaitkEvents",
    "WaitkJob",
    "WaitkMetrics",
    "WaitkRequest",
    "WaitkSettings",
    "WaitkStream",
    "average_lagging",
    "chat_prompt_builder",
    "waitk_request",
    "waitk_settings",
]
