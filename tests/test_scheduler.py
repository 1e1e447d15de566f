"""The scheduler: many streams on one Model share one batched step, each stream under its own
backpressure; cancelled streams leave the batch at once; admission is first come first served.

Every test runs on each engine. On llama.cpp the step is one llama_batch over all sequences,
each in its own KV stream (`kv_unified` off), so greedy text in a batch equals the solo text
token for token (asserted exactly). On MLX the sequences of a step are computed one after
another, each with its own cache, so the same exactness holds.
"""

from __future__ import annotations

import threading
import time

import pytest

from mullama import Context, GenerationError, Model, StreamConfig
from mullama.producer import running_jobs

pytestmark = pytest.mark.timeout(300)

GREEDY = StreamConfig(max_tokens=24, temperature=0.0, timeout_ms=0)
PROMPTS = [
    "1, 2, 3, 4,",
    "Once upon a time in a land far away",
    "The quick brown fox",  # the tiny model ends this one after 2 tokens
    "Hello! How are",
    "Rust and Python meet",
    "x y z",
    "def fibonacci(n):",
    "The weather today is",
]
WAIT_S = 60.0
"""Bound of every wait for something that should happen at once (a failure, not a hang)."""


def poll(condition, timeout: float = WAIT_S) -> bool:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.002)
    return True


@pytest.fixture(scope="module")
def tiny8(tiny_gguf, engine_name) -> Model:
    """The tiny model with room for 8 sequences per step."""
    return Model.load(tiny_gguf, engine=engine_name, parallel=8)


def solo_tokens(model: Model, prompt: str, config: StreamConfig = GREEDY) -> list[int]:
    return Context(model).generate(prompt, config).tokens


def reply_tokens(model: Model, events) -> list[int]:
    """The reply's tokens as `generate` reports them (the closing end-of-turn token left out)."""
    eog = model.end_of_generation_ids
    return [
        e.token
        for e in events
        if e.token is not None and not (e.finish_reason is not None and e.token in eog)
    ]


def batched_tokens(model: Model, prompts: list[str], config: StreamConfig = GREEDY):
    """Starts every prompt at once (one thread each, released together) and returns each
    reply's tokens and the batch sizes the scheduler ran."""
    contexts = [Context(model) for _ in prompts]
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(prompts))

    def run(i: int) -> None:
        try:
            barrier.wait(WAIT_S)
            results[i] = contexts[i].generate(prompts[i], config).tokens
        except BaseException as exc:
            errors.append(exc)

    steps_before = model.scheduler.steps
    seqs_before = model.scheduler.step_sequences
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S * 2)
    assert not errors, errors
    steps = model.scheduler.steps - steps_before
    sequences = model.scheduler.step_sequences - seqs_before
    return [results[i] for i in range(len(prompts))], sequences / max(steps, 1)


def test_greedy_in_a_batch_of_4_equals_each_solo_run(tiny8):
    prompts = PROMPTS[:4]
    solo = [solo_tokens(tiny8, p) for p in prompts]
    batched, mean_batch = batched_tokens(tiny8, prompts)
    assert batched == solo
    # The four really shared steps (not one after another).
    assert mean_batch > 1.5, f"mean sequences per step {mean_batch:.2f}"


def test_default_model_greedy_in_a_batch_of_4_equals_solo(default_model):
    config = StreamConfig(max_tokens=16, temperature=0.0, timeout_ms=0)
    prompts = PROMPTS[:4]
    solo = [solo_tokens(default_model, p, config) for p in prompts]
    batched, _ = batched_tokens(default_model, prompts, config)
    assert batched == solo


def test_a_seeded_sampled_stream_is_the_same_alone_and_in_a_batch(tiny8):
    config = StreamConfig(max_tokens=24, temperature=0.9, seed=1234, timeout_ms=0)
    prompts = PROMPTS[:4]
    solo = [solo_tokens(tiny8, p, config) for p in prompts]
    batched, _ = batched_tokens(tiny8, prompts, config)
    assert batched == solo


def test_a_parked_stream_does_not_hold_back_the_others_and_resumes_to_its_solo_text(tiny8):
    buffer_size = 4
    config = StreamConfig(max_tokens=60, temperature=0.0, timeout_ms=0, buffer_size=buffer_size)
    parked_prompt, others = PROMPTS[0], PROMPTS[1:4]
    solo_parked = solo_tokens(tiny8, parked_prompt, config)
    solo_others = [solo_tokens(tiny8, p, config) for p in others]
    assert len(solo_parked) > buffer_size + 1, "the reply must outlast the buffer"

    parked_ctx = Context(tiny8)
    parked = parked_ctx.generate_stream(parked_prompt, config)
    job = parked_ctx.last_generation
    assert job is not None
    # Nobody reads the parked stream: its buffer fills.
    assert poll(lambda: job.tokens_computed >= buffer_size)
    # The others run to the end meanwhile (they would hang if the loop blocked on A).
    batched, _ = batched_tokens(tiny8, others, config)
    assert batched == solo_others
    assert job.is_running()
    assert job.tokens_computed <= buffer_size + 1
    assert reply_tokens(tiny8, parked) == solo_parked
    assert job.join(WAIT_S)


def test_cancelling_one_of_8_leaves_within_one_step_and_spares_the_others(tiny8):
    config = StreamConfig(max_tokens=48, temperature=0.0, timeout_ms=0, buffer_size=2)
    solo = [solo_tokens(tiny8, p, config) for p in PROMPTS]
    contexts = [Context(tiny8) for _ in PROMPTS]
    streams = [c.generate_stream(p, config) for c, p in zip(contexts, PROMPTS, strict=True)]
    firsts = [[next(s)] for s in streams]  # all eight are decoding now
    victim = 3
    job = contexts[victim].last_generation
    assert job is not None and job.is_running()
    steps_at_cancel = tiny8.scheduler.steps
    computed_at_cancel = job.tokens_computed
    streams[victim].close()
    assert job.join(WAIT_S), "the cancelled sequence stayed in the batch"
    # It left before the scheduler's next step, or right after the one already running.
    assert tiny8.scheduler.steps - steps_at_cancel <= 1 or job.tokens_computed <= (
        computed_at_cancel + 1
    )
    assert job.tokens_computed <= computed_at_cancel + 1
    for i, stream in enumerate(streams):
        if i != victim:
            assert reply_tokens(tiny8, firsts[i] + list(stream)) == solo[i], f"stream {i}"


def test_200_cancels_leak_no_sequence_and_leave_the_kv_usable(tiny8):
    config = StreamConfig(max_tokens=100, temperature=0.0, timeout_ms=0, buffer_size=2)
    contexts = [Context(tiny8) for _ in range(8)]
    for round_ in range(25):
        streams = [
            c.generate_stream(PROMPTS[(round_ + i) % len(PROMPTS)], config)
            for i, c in enumerate(contexts)
        ]
        for i, stream in enumerate(streams):
            if i % 2 == 0:
                next(stream)  # some are cancelled mid-reply, some before their first token
            stream.close()
    for c in contexts:
        assert c.wait_idle(WAIT_S)
    assert poll(lambda: tiny8.scheduler.active == 0 and tiny8.scheduler.queued == 0)
    assert poll(lambda: running_jobs() == 0)
    for c in contexts:
        # The cache holds what it says: the next call reuses it and gets the solo reply.
        cached = c.cached_tokens
        assert len(cached) <= c.n_ctx
        assert c.generate(PROMPTS[0], GREEDY).tokens == solo_tokens(tiny8, PROMPTS[0])


def test_queued_streams_are_admitted_first_come_first_served(tiny_gguf, engine_name):
    model = Model.load(tiny_gguf, engine=engine_name, parallel=2)
    config = StreamConfig(max_tokens=16, temperature=0.0, timeout_ms=0, buffer_size=1)
    contexts = [Context(model) for _ in range(6)]
    streams = [c.generate_stream(PROMPTS[i], config) for i, c in enumerate(contexts)]
    jobs = [c.last_generation for c in contexts]
    # Nobody reads yet: two streams fill their buffers, the other four wait their turn.
    assert poll(lambda: model.scheduler.active == 2 and model.scheduler.queued == 4)
    assert [j.admission is not None for j in jobs] == [True, True] + [False] * 4
    # Each finished stream frees a place: the longest-waiting stream must take it.
    for stream in streams:
        list(stream)
    base = jobs[0].admission
    assert [j.admission - base for j in jobs] == list(range(6))


def test_a_parked_stream_past_its_deadline_leaves_the_batch(tiny8):
    config = StreamConfig(max_tokens=100, temperature=0.0, timeout_ms=300, buffer_size=2)
    ctx = Context(tiny8)
    stream = ctx.generate_stream(PROMPTS[0], config)
    job = ctx.last_generation
    assert job is not None
    assert job.join(WAIT_S), "the timed-out stream still holds its place"
    assert job.tokens_computed <= 3
    with pytest.raises(Exception, match="timed out|timeout|deadline"):
        list(stream)


def test_model_close_fails_running_streams(tiny_gguf, engine_name):
    model = Model.load(tiny_gguf, engine=engine_name)
    ctx = Context(model)
    stream = ctx.generate_stream(PROMPTS[0], StreamConfig(max_tokens=200, buffer_size=1))
    next(stream)
    model.close()
    with pytest.raises(GenerationError):
        list(stream)
    assert ctx.wait_idle(WAIT_S)


def test_a_closed_context_frees_its_sequence_and_refuses_to_generate(tiny8):
    with Context(tiny8) as first:
        assert first.generate("1, 2, 3, 4,", GREEDY).tokens
    with pytest.raises(GenerationError, match="closed"):
        first.generate("1, 2, 3, 4,", GREEDY)
    first.close()  # a second close is harmless
    # More Contexts than the engine keeps resident, each closed: none is left holding KV, and
    # a fresh Context still gets the solo text.
    for _ in range(3 * tiny8.engine.max_sequences):
        with Context(tiny8) as ctx:
            ctx.generate("x y z", StreamConfig(max_tokens=2, temperature=0.0, timeout_ms=0))
    assert Context(tiny8).generate(PROMPTS[1], GREEDY).tokens == solo_tokens(tiny8, PROMPTS[1])
