"""Wait-k over a scripted engine (the real core stream, a model that reads its own KV cache):
the exact read/write schedule, word boundaries, KV reuse on reads, limits, stops and errors,
and Average Lagging on hand-computed cases."""

from __future__ import annotations

import threading
import time

import anyio
import pytest

from mullama import ConfigError, GenerationError, StreamConfig, StreamTimeoutError
from mullama.aio.waitk import AsyncWaitkStream
from mullama.waitk import (
    SourceWords,
    WaitkStream,
    average_lagging,
    open_waitk,
    waitk_request,
    waitk_settings,
)
from waitk_scripted import (
    JobRunner,
    ScriptedEngine,
    ScriptedModel,
    chunked,
    expected_words,
    source_text,
)

pytestmark = pytest.mark.timeout(60)

CONFIG = StreamConfig(max_tokens=400, timeout_ms=20_000)


def start(source, k, target_words, *, separator=".", config=CONFIG, run_ahead=True, **limits):
    engine = ScriptedEngine(target_words, separator=separator, run_ahead=run_ahead)
    model = ScriptedModel(engine)
    runner = JobRunner(engine)
    request = waitk_request(source, k, "Translate:", config=config, **limits)
    stream, events, _ = open_waitk(model, runner.start_job, request)
    return WaitkStream(stream, events), engine, model


def words_of(events) -> list[tuple[int, str]]:
    """(source words read, text) of each completed target word."""
    out, text = [], ""
    for event in events:
        text += event.text
        if event.word_complete:
            out.append((event.source_words_read, text))
            text = ""
    assert not text.strip(), f"text after the last complete word: {text!r}"
    return out


def run(source, k, target_words, **kwargs):
    stream, engine, model = start(source, k, target_words, **kwargs)
    with stream:
        events = list(stream)
    return events, stream, engine, model


# -- the schedule ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("k", "source_words", "target_words"),
    [
        (1, 12, 14),
        (3, 12, 12),
        (5, 12, 10),
        (3, 2, 4),  # a source shorter than k
        (5, 7, 6),  # the source ends while the target goes on
    ],
)
@pytest.mark.parametrize("run_ahead", [True, False], ids=["steps-run-ahead", "synchronous"])
def test_schedule_over_a_live_source(k, source_words, target_words, run_ahead):
    # Chunks of 3, 1, 5 and 2 characters: most words arrive split across chunks.
    source = chunked(source_text(source_words) + " ", [3, 1, 5, 2], delay_s=0.005)
    events, stream, _, _ = run(source, k, target_words, run_ahead=run_ahead)
    expected = expected_words(k, source_words, target_words)
    assert words_of(events) == expected
    assert stream.metrics.delays == [d for d, _ in expected]
    assert events[-1].finish_reason == "stop"
    assert events[-1].target_words_generated == target_words
    assert [e.target_words_generated for e in events if e.word_complete] == list(
        range(1, target_words + 1)
    )


@pytest.mark.parametrize("k", [1, 3, 5])
def test_schedule_for_a_whole_string(k):
    events, _, _, _ = run(source_text(9), k, 8)
    assert words_of(events) == expected_words(k, 9, 8)


def test_a_word_that_ends_inside_its_last_token():
    # ". " holds the end of a word and the whitespace after it; the next word has no space.
    events, _, _, _ = run(source_text(6), 2, 7, separator=". ")
    assert words_of(events) == expected_words(2, 6, 7, separator=". ")


def test_source_of_one_chunk_per_character():
    events, _, _, _ = run(iter(source_text(5)), 3, 5)
    assert words_of(events) == expected_words(3, 5, 5)


def test_a_written_word_reaches_the_consumer_before_more_source_is_needed():
    # The source sends k words, then waits until the consumer has seen target word 1: a
    # job that held word 1 back until its next read would never get there.
    seen_first_word = threading.Event()

    def source():
        yield "s1 s2 s3 "
        assert seen_first_word.wait(10), "target word 1 never reached the consumer"
        yield "s4 s5"

    stream, _, _ = start(source(), 3, 4)
    with stream:
        events = []
        for event in stream:
            events.append(event)
            if event.word_complete:
                seen_first_word.set()
    assert words_of(events) == expected_words(3, 5, 4)


def test_source_words_read_never_runs_ahead_of_arrivals():
    source = chunked(source_text(8) + " ", [4], delay_s=0.03)
    events, stream, _, _ = run(source, 2, 8)
    metrics = stream.metrics
    assert metrics.source_words == 8 and metrics.source_complete
    assert len(metrics.word_lag_s) == 8
    assert all(lag is not None and lag >= 0 for lag in metrics.word_lag_s)


# -- KV reuse ----------------------------------------------------------------------------------
@pytest.mark.parametrize("run_ahead", [True, False], ids=["steps-run-ahead", "synchronous"])
def test_a_read_feeds_only_the_new_source_the_separator_and_the_target(run_ahead):
    events, stream, engine, model = run(source_text(10), 3, 10, run_ahead=run_ahead)
    metrics = stream.metrics
    reads = metrics.reads
    # Reads after the first: one per target word until the source is read (words 2..8).
    assert [r.words_added for r in reads] == [1] * 7
    target_tokens = 0
    words = words_of(events)
    for i, read in enumerate(reads):
        target_tokens += len(words[i][1]) - 1  # " w" is one token, the rest one per char
        assert read.tokens_fed == 1 + 1 + target_tokens  # new word, SEP, the target so far
        assert read.prompt_tokens == len(model.prompts[i + 1]) + target_tokens
    assert metrics.tokens_recomputed_per_source_word < metrics.full_reprefill_per_source_word
    # Everything the engine ran: the first prompt, the reads, one step per sampled token
    # (EOS included) and one per dropped token (one per read); with a step in flight also
    # the steps that fed each dropped token and EOS.
    sampled = sum(1 for e in events if e.token is not None)
    prompts = metrics.first_prompt_tokens - 1 + sum(r.tokens_fed - 1 for r in reads)
    in_flight = len(reads) + 1 if run_ahead else 0
    assert engine.fed == prompts + sampled + len(reads) + in_flight


# -- limits, stops, errors ------------------------------------------------------------------
def test_max_new_words_ends_with_length():
    events, _, _, _ = run(source_text(8), 2, 8, max_new_words=3)
    assert words_of(events) == expected_words(2, 8, 3)
    assert events[-1].finish_reason == "length"


def test_a_word_longer_than_max_tokens_per_word_is_cut():
    events, _, _, _ = run(source_text(6), 2, 4, max_tokens_per_word=2)
    pieces: list[list[str]] = [[]]
    for event in events:
        if event.token is not None and event.finish_reason is None or event.text:
            pieces[-1].append(event.text)
        if event.word_complete:
            pieces.append([])
    assert all(len(p) <= 2 for p in pieces)
    delays = [e.source_words_read for e in events if e.word_complete]
    assert delays == [min(2 + t, 6) for t in range(len(delays))]


def test_a_stop_sequence_ends_the_stream_and_the_word():
    config = StreamConfig(max_tokens=400, timeout_ms=20_000, stop_sequences=["w3"])
    events, stream, _, _ = run(source_text(8), 2, 8, config=config)
    text = "".join(e.text for e in events)
    assert "w3" not in text and text.endswith(" ")
    assert events[-1].finish_reason == "stop" and stream.stop_sequence == "w3"
    assert events[-1].metrics is not None and events[-1].metrics.delays == [2, 3]


def test_max_tokens_ends_inside_a_word_which_then_counts_as_written():
    config = StreamConfig(max_tokens=7, timeout_ms=20_000)
    events, stream, _, _ = run(source_text(8), 2, 8, config=config)
    assert events[-1].finish_reason == "length" and events[-1].word_complete
    assert stream.metrics.delays == [2, 3]


def test_closing_early_stops_the_job_and_the_source():
    closed = threading.Event()

    def source():
        try:
            for i in range(1, 40):
                yield f"s{i} "
                time.sleep(0.01)
        finally:
            closed.set()

    stream, _, _ = start(source(), 2, 40)
    with stream:
        for event in stream:
            if event.word_complete:
                break
    assert stream.job.join(5)
    assert closed.wait(5)


def test_a_silent_source_times_out():
    gate = threading.Event()

    def source():
        yield "s1 s2"
        gate.wait(10)

    config = StreamConfig(max_tokens=400, timeout_ms=300)
    stream, _, _ = start(source(), 3, 4, config=config)
    started = time.monotonic()
    with pytest.raises(StreamTimeoutError), stream:
        list(stream)
    assert time.monotonic() - started < 5
    assert stream.job.join(5)
    gate.set()


def test_a_failing_source_fails_the_stream_with_its_error():
    def source():
        yield "s1 s2 s3 "
        raise ValueError("recognizer lost")

    stream, _, _ = start(source(), 3, 8)
    with pytest.raises(GenerationError) as info, stream:
        list(stream)
    assert isinstance(info.value.__cause__, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"wait_k": 0}, "wait_k"),
        ({"wait_k": True}, "wait_k"),
        ({"max_tokens_per_word": 0}, "max_tokens_per_word"),
        ({"max_new_words": -1}, "max_new_words"),
        ({"instruction": 3}, "instruction"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        waitk_settings(**kwargs)


@pytest.mark.parametrize(
    ("source", "message"),
    [("   ", "empty"), (b"s1 s2", "str"), (42, "str")],
)
def test_bad_sources_are_refused_before_anything_starts(source, message):
    with pytest.raises(ConfigError, match=message):
        start(source, 2, 2)


def test_a_chunk_that_is_not_text_fails_the_stream():
    stream, _, _ = start(iter(["s1 s2 ", b"s3"]), 2, 3)
    with pytest.raises(GenerationError) as info, stream:
        list(stream)
    assert isinstance(info.value.__cause__, ConfigError)


def test_an_empty_iterable_source_fails_the_stream():
    stream, _, _ = start(iter(["  ", "\n"]), 2, 3)
    with pytest.raises(GenerationError, match="empty"), stream:
        list(stream)


# -- source words ----------------------------------------------------------------------------
def test_source_words_complete_at_whitespace_or_the_end():
    words = SourceWords()
    words.feed("  al")
    words.feed("pha\u3000be")  # an ideographic space separates words too
    assert words.wait_words(5, lambda: True) is None  # not there yet, told to stop
    words.feed("ta gam")
    assert words.wait_words(2, lambda: False) == 2
    words.end()
    assert words.wait_words(5, lambda: False) == 3
    assert words.text_through(2) == "alpha\u3000beta"
    assert words.text_through(3) == "alpha\u3000beta gam"
    arrivals, complete = words.snapshot()
    assert len(arrivals) == 3 and complete


# -- Average Lagging -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("delays", "source_words", "expected"),
    [
        # k=3, |X|=5, |Y|=4: d = 3 4 5 5; tau = 3; (3 + (4 - 1.25) + (5 - 2.5)) / 3
        ([3, 4, 5, 5], 5, 2.75),
        # k=1, |X|=|Y|=3: the ideal simultaneous translation lags one word
        ([1, 2, 3], 3, 1.0),
        # a source shorter than k: everything read before the first word; tau = 1
        ([2, 2, 2, 2], 2, 2.0),
        # the source never read to its end: tau = |Y|; rate 6/2 = 3: (2 + (3 - 3)) / 2
        ([2, 3], 6, 1.0),
        ([], 4, None),
    ],
)
def test_average_lagging_by_hand(delays, source_words, expected):
    assert average_lagging(delays, source_words) == expected


def test_final_event_carries_the_average_lagging():
    events, _, _, _ = run(source_text(5), 3, 4)
    metrics = events[-1].metrics
    assert metrics is not None
    assert metrics.delays == [3, 4, 5, 5]
    assert metrics.average_lagging == 2.75
    assert all(e.metrics is None for e in events[:-1])


# -- async (asyncio and trio) --------------------------------------------------------------
@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


def open_async(source, k, target_words, config=CONFIG):
    engine = ScriptedEngine(target_words)
    model = ScriptedModel(engine)
    runner = JobRunner(engine)
    request = waitk_request(source, k, "Translate:", config=config)

    async def opener():
        return open_waitk(model, runner.start_job, request, allow_async=True)

    return AsyncWaitkStream(opener, source)


async def async_chunks(text: str, size: int, delay_s: float):
    for at in range(0, len(text), size):
        await anyio.sleep(delay_s)
        yield text[at : at + size]


@pytest.mark.anyio
@pytest.mark.parametrize("k", [1, 3, 5])
async def test_async_source_schedule(k):
    stream = open_async(async_chunks(source_text(9), 4, 0.005), k, 9)
    async with stream:
        events = [event async for event in stream]
    assert words_of(events) == expected_words(k, 9, 9)
    assert events[-1].metrics is not None


@pytest.mark.anyio
async def test_async_stream_with_a_plain_iterable_source():
    stream = open_async(chunked(source_text(6), [2], 0.002), 2, 6)
    events = [event async for event in stream]
    assert words_of(events) == expected_words(2, 6, 6)


@pytest.mark.anyio
async def test_async_source_outside_async_with_is_refused():
    stream = open_async(async_chunks(source_text(4), 3, 0.0), 2, 3)
    with pytest.raises(ConfigError, match="async with"):
        async for _ in stream:
            pass


@pytest.mark.anyio
async def test_async_break_stops_the_job_and_closes_the_source():
    closed = anyio.Event()

    async def source():
        try:
            for i in range(1, 40):
                yield f"s{i} "
                await anyio.sleep(0.01)
        finally:
            closed.set()

    stream = open_async(source(), 2, 40)
    async with stream:
        async for event in stream:
            if event.word_complete:
                break
    with anyio.fail_after(5):
        await closed.wait()
    assert stream.job.join(5)


# -- the entry points ------------------------------------------------------------------------
def test_context_and_async_context_take_waitk_requests_arguments():
    import inspect

    from mullama import AsyncContext, Context

    expected = list(inspect.signature(waitk_request).parameters.values())
    for method in (Context.generate_stream_waitk, AsyncContext.generate_stream_waitk):
        params = list(inspect.signature(method).parameters.values())
        assert params[0].name == "self" and params[1:] == expected


def test_events_carry_the_token_events_fields():
    events, _, _, _ = run(source_text(3), 2, 2)
    event = events[0]
    for name in (
        "text",
        "token",
        "id",
        "logprob",
        "top_logprobs",
        "finish_reason",
        "stop_sequence",
        "prompt_tokens",
        "generation_tokens",
        "elapsed",
    ):
        assert getattr(event, name) == getattr(event.token_event, name)
    assert event.prompt_tokens == 1 + 2 + 1  # INSTR, the first k source words, SEP


def test_a_consumer_that_stops_reading_parks_the_job():
    config = StreamConfig(max_tokens=2000, timeout_ms=20_000, buffer_size=4)
    stream, _, _ = start(source_text(50), 1, 60, config=config)
    with stream:
        first = next(stream)
        assert first.text
        time.sleep(0.3)
        parked_at = stream.job.tokens_computed
        time.sleep(0.3)
        assert stream.job.tokens_computed == parked_at
        # The buffer's 4 events, the one being pushed, the held token and at most one more.
        assert parked_at <= 1 + 4 + 3
        rest = list(stream)
    assert rest[-1].finish_reason == "stop"
    assert stream.metrics.target_words == 60
