"""Wait-k on the llama.cpp engine (the default model's GGUF): the policy uses only the engine
interface, so the schedule and the KV reuse on reads hold there as on MLX. Skipped where
llama-cpp-python is not installed (a failure under CI=true)."""

from __future__ import annotations

import os

import numpy as np
import pytest

try:
    import llama_cpp  # noqa: F401
except ImportError as exc:
    if os.environ.get("CI") == "true":
        raise ImportError("CI=true but llama-cpp-python is not installed") from exc
    pytest.skip("llama-cpp-python is not installed", allow_module_level=True)

from mullama.engines.llamacpp import LlamaCppEngine
from mullama.scheduler import Scheduler
from mullama.waitk import (
    DEFAULT_INSTRUCTION,
    WaitkStream,
    chat_prompt_builder,
    open_waitk,
    waitk_request,
)
from waitk_scripted import JobRunner

pytestmark = pytest.mark.timeout(300)

SOURCE = "The old man walked to the market"


class LlamaCppModel:
    """What open_waitk needs of a Model: the default model's tokenizer and chat template
    over the llama.cpp engine."""

    def __init__(self, model, engine) -> None:
        self.engine = engine
        self.tokenizer = model.tokenizer
        self.chat_ids = model.chat_ids
        self.token_bytes = model.token_bytes
        self.end_of_generation_ids = model.end_of_generation_ids
        self.scheduler = Scheduler(engine)


@pytest.fixture(scope="module")
def engine(smollm2_path):
    eng = LlamaCppEngine(smollm2_path, n_ctx=2048)
    yield eng
    eng.close()


def test_schedule_and_reads_on_llamacpp(default_model, engine):
    model = LlamaCppModel(default_model, engine)
    runner = JobRunner(engine, n_ctx=2048)
    request = waitk_request(
        iter(w + " " for w in SOURCE.split()),
        2,
        max_new_words=4,
        max_tokens=24,
        temperature=0.0,
        repeat_penalty=1.0,
        timeout_ms=120_000,
    )
    stream, events, _ = open_waitk(model, runner.start_job, request)
    with WaitkStream(stream, events) as waitk:
        seen = list(waitk)
    metrics = waitk.metrics
    assert metrics.delays and metrics.delays == [2 + t for t in range(len(metrics.delays))]
    assert metrics.tokens_recomputed_per_source_word < metrics.full_reprefill_per_source_word
    assert all("\ufffd" not in e.text for e in seen)

    # After the first read the cache holds what a full prefill would: the first token of
    # word 2 is the greedy choice of a cache-less pass over that prompt.
    build = chat_prompt_builder(default_model.chat_ids, DEFAULT_INSTRUCTION)
    target: list[int] = []
    words_before = 0
    for event in seen:
        if event.token is None or event.token in default_model.end_of_generation_ids:
            continue
        if words_before == 1:  # the first token of word 2
            ids = build(" ".join(SOURCE.split()[: event.source_words_read])) + target
            logits = np.asarray(engine.logits(ids)[-1])
            assert logits[event.token] >= logits.max() - 0.05
            break
        target.append(event.token)
        words_before = event.target_words_generated
    else:
        pytest.fail("no second target word")
