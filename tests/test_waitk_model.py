"""Wait-k on the default model (SmolLM2-135M-Instruct): a 12-word source arriving word by word,
the exact schedule, KV reuse against a cache-less forward pass, text rules, break and timeout.
Token counts stay small: MLX on a CPU host decodes about 10 tokens per second."""

from __future__ import annotations

import threading
import time

import anyio
import numpy as np
import pytest

from mullama import Context, StreamTimeoutError
from mullama.aio.model import AsyncContext
from mullama.waitk import DEFAULT_INSTRUCTION, chat_prompt_builder

pytestmark = pytest.mark.timeout(300)

SOURCE = "The old man walked slowly to the market to buy fresh bread"
assert len(SOURCE.split()) == 12
GREEDY = {"temperature": 0.0, "repeat_penalty": 1.0, "timeout_ms": 120_000}


def arriving(text: str, delay_s: float):
    """One word per chunk, each after `delay_s`."""
    for word in text.split():
        time.sleep(delay_s)
        yield word + " "


@pytest.fixture(scope="module")
def run_k2(default_model):
    """k = 2 over the 12-word source arriving over time (shared by the checks below)."""
    ctx = Context(default_model)
    stream = ctx.generate_stream_waitk(
        arriving(SOURCE, 0.05), wait_k=2, max_new_words=8, max_tokens=48, **GREEDY
    )
    with stream:
        events = list(stream)
    return events, stream.metrics


def test_schedule_holds(run_k2):
    events, metrics = run_k2
    delays = metrics.delays
    assert delays, "no target word was written"
    assert delays == [min(2 + t - 1, 12) for t in range(1, len(delays) + 1)]
    assert [e.source_words_read for e in events if e.word_complete] == delays
    assert events[-1].finish_reason is not None and events[-1].metrics is not None


def test_reads_recompute_less_than_a_full_reprefill(run_k2):
    _, metrics = run_k2
    assert metrics.reads, "no read after the first"
    recomputed = metrics.tokens_recomputed_per_source_word
    full = metrics.full_reprefill_per_source_word
    print(f"tokens recomputed per source word: {recomputed:.1f} (full re-prefill {full:.1f})")
    assert recomputed < full
    for read in metrics.reads:
        assert read.tokens_fed < read.prompt_tokens


def test_no_replacement_character(run_k2):
    events, _ = run_k2
    assert all("\ufffd" not in e.text for e in events)


def test_a_stop_across_a_word_boundary_shows_no_part_of_it(default_model, run_k2):
    # Greedy decoding and an exact schedule make the same tokens again: stop on text that
    # spans the end of word 2 and the start of word 3 of the run above.
    events, _ = run_k2
    words, text = [], ""
    for event in events:
        text += event.text
        if event.word_complete:
            words.append(text)
            text = ""
    assert len(words) >= 3, words
    whole = "".join(words)
    stop = words[1][-2:] + words[2][:3]
    cut = whole.find(stop)
    assert cut >= len(words[0]), (stop, whole)
    ctx = Context(default_model)
    stream = ctx.generate_stream_waitk(
        SOURCE, wait_k=2, max_new_words=8, max_tokens=48, stop_sequences=[stop], **GREEDY
    )
    with stream:
        stopped = list(stream)
    assert stream.stop_sequence == stop
    shown = "".join(e.text for e in stopped)
    assert shown == whole[:cut]
    for event in stopped:
        assert "\ufffd" not in event.text and stop not in event.text


def test_each_word_starts_as_a_fresh_forward_pass_would(default_model, run_k2):
    # The KV cache after trims and partial re-feeds must hold what a full prefill would: the
    # first token of every target word is the greedy choice of a cache-less forward pass
    # over the prompt with the words read by then, plus the target so far.
    events, metrics = run_k2
    build = chat_prompt_builder(default_model.chat_ids, DEFAULT_INSTRUCTION)
    words = SOURCE.split()
    target: list[int] = []
    word = 1
    starts_word = True
    checked = 0
    for event in events:
        if event.token is None or event.token in default_model.end_of_generation_ids:
            continue
        # Words 2 and 3: each comes after a read that trimmed the cache and re-fed the
        # target (each check is a full forward pass: slow on a CPU host).
        if starts_word and word in (2, 3):
            ids = build(" ".join(words[: event.source_words_read])) + target
            logits = np.asarray(default_model.logits(ids)[-1])
            assert logits[event.token] >= logits.max() - 0.05, (checked, event.text)
            checked += 1
        target.append(event.token)
        starts_word = event.word_complete
        word += int(event.word_complete)
    assert checked == 2


def test_break_stops_the_generation(default_model):
    ctx = Context(default_model)
    stream = ctx.generate_stream_waitk(arriving(SOURCE, 0.01), wait_k=2, max_tokens=48, **GREEDY)
    with stream:
        for event in stream:
            if event.word_complete:
                break
    assert ctx.wait_idle(5)
    assert not stream.job.is_running()


def test_a_stalled_source_times_out(default_model):
    gate = threading.Event()

    def stalls():
        yield "The old "
        gate.wait(30)

    ctx = Context(default_model)
    stream = ctx.generate_stream_waitk(
        stalls(), wait_k=3, max_tokens=16, temperature=0.0, timeout_ms=1500
    )
    started = time.monotonic()
    with pytest.raises(StreamTimeoutError), stream:
        list(stream)
    assert time.monotonic() - started < 10
    assert ctx.wait_idle(5)
    gate.set()


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.mark.anyio
async def test_async_source_on_the_default_model(default_model):
    async def arriving_async():
        for word in SOURCE.split()[:3]:
            await anyio.sleep(0.05)
            yield word + " "

    ctx = AsyncContext(default_model)
    stream = ctx.generate_stream_waitk(
        arriving_async(), wait_k=1, max_new_words=2, max_tokens=12, **GREEDY
    )
    async with stream:
        events = [event async for event in stream]
    metrics = stream.metrics
    assert metrics is not None
    assert metrics.delays == [1, 2][: len(metrics.delays)]
    assert events[-1].finish_reason is not None
