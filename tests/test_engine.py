"""Model and Context on every engine: sampling, KV reuse, stopping, errors.

Each test runs once per engine (MLX, llama.cpp). Most use the tiny random-weight models the
fixtures write (milliseconds); a few use the real SmolLM2 where realism matters.
"""

from __future__ import annotations

import gc
import threading
import time

import numpy as np
import pytest

from mullama import (
    ConfigError,
    Context,
    ContextLengthError,
    GenerationError,
    Model,
    ModelLoadError,
    StreamConfig,
    TokenizerError,
)

pytestmark = pytest.mark.timeout(300)

GREEDY = StreamConfig(max_tokens=12, temperature=0.0, timeout_ms=0)


@pytest.fixture(scope="module")
def tiny(tiny_gguf, engine_name) -> Model:
    return Model.load(tiny_gguf, engine=engine_name)


@pytest.fixture(scope="module")
def tiny_mlx(tiny_gguf) -> Model:
    return Model.load(tiny_gguf, engine="mlx")


@pytest.fixture(scope="module")
def smollm2(default_model) -> Model:
    return default_model


def _log_softmax(row: np.ndarray) -> np.ndarray:
    shifted = row - row.max()
    return shifted - np.log(np.exp(shifted).sum())


# -- loading and introspection ---------------------------------------------------------------


def test_tiny_gguf_and_folder_load_with_their_facts(tiny_gguf, tiny_mlx_folder, engine_name):
    sources = (tiny_gguf, tiny_mlx_folder) if engine_name == "mlx" else (tiny_gguf,)
    for source in sources:
        model = Model.load(source, engine=engine_name)
        assert model.engine.name == engine_name
        assert model.architecture == "llama"
        assert model.n_vocab == 300
        assert model.n_ctx_train == 256
        assert isinstance(model.metadata, dict)
        assert model.chat_template and "<|im_start|>" in model.chat_template


def test_default_model_loads_by_no_argument_and_by_name(smollm2) -> None:
    assert smollm2.architecture == "llama"
    assert smollm2.n_vocab == 49152
    assert smollm2.n_ctx_train == 8192
    assert smollm2.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert Model.load("smollm2", engine=smollm2.engine.name).path == smollm2.path
    assert "Q4_1" in smollm2.quantization


def test_missing_model_is_a_model_load_error(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        Model.load(tmp_path / "nope.gguf")


def test_helpers_round_trip_text(tiny) -> None:
    ids = tiny.tokenize("hello world <|im_end|>")
    assert ids[-1] == 2  # the control token is parsed as one token
    assert tiny.detokenize(ids) == "hello world <|im_end|>"
    plain = tiny.tokenize("<|im_end|>", special=False)
    assert 2 not in plain
    assert b"".join(tiny.token_bytes(i) for i in tiny.tokenize("hello")) == b"hello"


def test_real_model_tokenizes_like_llama_cpp(smollm2) -> None:
    ids = smollm2.tokenize("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n")
    assert ids == [1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198]


def test_logits_is_one_forward_pass(tiny) -> None:
    ids = tiny.tokenize("hello world")
    logits = tiny.logits(ids)
    assert logits.shape == (len(ids), tiny.n_vocab)
    assert np.isfinite(logits).all()
    with pytest.raises(TokenizerError, match="outside the vocabulary"):
        tiny.logits([tiny.n_vocab + 5])


# -- generation ------------------------------------------------------------------------------


def test_cached_greedy_generation_matches_full_forward_argmax(tiny) -> None:
    prompt = tiny.tokenize("hello world")
    result = Context(tiny).generate(prompt, GREEDY.replace(max_tokens=10))
    assert result.tokens, "the tiny model produced nothing"
    logits = tiny.logits(prompt + result.tokens)
    expected = logits[len(prompt) - 1 : -1].argmax(axis=-1).tolist()
    assert result.tokens == expected[: len(result.tokens)]


def test_stream_text_and_generate_agree(tiny) -> None:
    ctx = Context(tiny)
    streamed = "".join(t.text for t in ctx.generate_stream("hello", config=GREEDY))
    assert Context(tiny).generate("hello", GREEDY).text == streamed


def test_logprob_is_log_softmax_of_the_chosen_token(tiny) -> None:
    prompt = tiny.tokenize("hello world")
    events = list(
        Context(tiny).generate_stream(prompt, config=GREEDY.replace(max_tokens=3), top_logprobs=4)
    )
    first = events[0]
    row = _log_softmax(tiny.logits(prompt)[-1].astype(np.float64))
    assert first.logprob == pytest.approx(row[first.token], abs=1e-3)
    top = first.top_logprobs
    assert len(top) == 4
    assert [i for i, _ in top] == np.argsort(-row)[:4].tolist()
    assert top[0][0] == first.token  # greedy picks the most likely token


def test_same_seed_same_tokens_and_different_seeds_differ(tiny) -> None:
    config = StreamConfig(max_tokens=24, temperature=1.5, top_k=0, top_p=1.0, seed=7, timeout_ms=0)
    first = Context(tiny).generate("hello", config).tokens
    again = Context(tiny).generate("hello", config).tokens
    assert first == again
    others = {
        tuple(Context(tiny).generate("hello", config.replace(seed=s)).tokens) for s in range(1, 6)
    }
    assert len(others | {tuple(first)}) > 1


def test_top_k_one_is_greedy_at_any_temperature(tiny) -> None:
    greedy = Context(tiny).generate("hello", GREEDY).tokens
    sampled = Context(tiny).generate("hello", GREEDY.replace(temperature=2.0, top_k=1, seed=3))
    assert sampled.tokens == greedy


def test_max_tokens_ends_with_length(tiny) -> None:
    result = Context(tiny).generate("hello", GREEDY.replace(max_tokens=3))
    if result.finish_reason == "length":
        assert len(result.tokens) == 3
    else:  # the tiny model may say EOS sooner
        assert result.finish_reason == "stop" and len(result.tokens) < 3


def test_eos_ends_generation_with_stop_and_is_not_shown(smollm2) -> None:
    ctx = Context(smollm2)
    result = ctx.chat(
        [{"role": "user", "content": "Name the capital city of Germany."}],
        StreamConfig(max_tokens=40, temperature=0, timeout_ms=0),
    )
    assert result.finish_reason == "stop"
    assert "Berlin" in result.text
    assert "<|im_end|>" not in result.text
    assert 2 not in result.tokens


def test_stop_sequence_cuts_the_real_models_text(smollm2) -> None:
    messages = [{"role": "user", "content": "Write a short poem about the sea."}]
    config = StreamConfig(max_tokens=16, temperature=0, timeout_ms=0)
    full = Context(smollm2).chat(messages, config).text
    stop = full[8:12]
    cut = Context(smollm2).chat(messages, config.replace(stop_sequences=[stop]))
    assert cut.finish_reason == "stop"
    assert cut.stop_sequence == stop
    assert cut.text == full[: full.index(stop)]


# -- contexts ------------------------------------------------------------------------------


def test_second_call_prefills_only_the_new_tokens(tiny) -> None:
    ctx = Context(tiny)
    first = tiny.tokenize("hello world, this is a test")
    ctx.generate(first, GREEDY.replace(max_tokens=2))
    assert ctx.last_prefill_tokens == len(first)
    longer = first + tiny.tokenize(" and more")
    ctx.generate(longer, GREEDY.replace(max_tokens=2))
    assert ctx.last_prefill_tokens == len(longer) - len(first)
    # Reused prefix or not, the same prompt gives the same tokens.
    assert ctx.generate(longer, GREEDY).tokens == Context(tiny).generate(longer, GREEDY).tokens


def test_chat_turns_reuse_the_conversation(smollm2) -> None:
    ctx = Context(smollm2, n_ctx=1024)
    config = StreamConfig(max_tokens=6, temperature=0, timeout_ms=0)
    messages = [{"role": "user", "content": "Hi!"}]
    reply = ctx.chat(messages, config)
    first_prefill = ctx.last_prefill_tokens
    messages += [
        {"role": "assistant", "content": reply.text},
        {"role": "user", "content": "And then?"},
    ]
    ctx.chat(messages, config)
    assert ctx.last_prefill_tokens < len(smollm2.chat_ids(messages)) - first_prefill + 6


def test_prompt_over_the_context_is_a_context_length_error(tiny) -> None:
    ctx = Context(tiny, n_ctx=16)
    prompt = tiny.tokenize("hello world " * 4)
    with pytest.raises(ContextLengthError, match="exceeds the context of 16 tokens") as info:
        ctx.generate_stream(prompt, config=GREEDY.replace(max_tokens=16))
    assert info.value.n_ctx == 16
    truncating = Context(tiny, n_ctx=16, truncate=True)
    result = truncating.generate(prompt, GREEDY.replace(max_tokens=4))
    assert result.finish_reason in ("length", "stop")


def test_bad_inputs_are_typed_errors(tiny) -> None:
    ctx = Context(tiny)
    with pytest.raises(ConfigError, match="exactly one of prompt or messages"):
        ctx.generate_stream()
    with pytest.raises(ConfigError, match="empty"):
        ctx.generate_stream("")
    with pytest.raises(ConfigError, match="messages\\[0\\]"):
        ctx.generate_stream(messages=[{"content": "no role"}])
    with pytest.raises(ConfigError, match="max_tokens"):
        ctx.generate_stream("hi", max_tokens=0)
    with pytest.raises(ConfigError, match="n_ctx"):
        Context(tiny, n_ctx=0)
    with pytest.raises(TokenizerError):
        ctx.generate_stream([tiny.n_vocab])


# -- the producer ------------------------------------------------------------------------------


def test_breaking_the_loop_stops_the_forward_pass_within_one_token(tiny) -> None:
    ctx = Context(tiny)
    config = StreamConfig(max_tokens=200, temperature=1.0, seed=1, timeout_ms=0, buffer_size=64)
    consumed = 0
    for _ in ctx.generate_stream("hello", config=config):
        consumed += 1
        if consumed == 3:
            break
    # The stream was dropped at `break`: the producer's next push was told to stop.
    assert ctx.wait_idle(timeout=10)
    assert not ctx.busy
    assert ctx.cached_tokens  # the context is usable for the next request


def test_producer_counts_at_most_one_token_past_the_consumer(tiny) -> None:
    ctx = Context(tiny)
    config = StreamConfig(max_tokens=200, temperature=1.0, seed=2, timeout_ms=0, buffer_size=1)
    stream = ctx.generate_stream("hello", config=config)
    next(stream)
    time.sleep(0.2)  # let the producer run ahead as far as the buffer allows
    job = ctx.last_generation
    stream.close()
    assert job.join(timeout=10)
    # one consumed + one buffered + one computed while blocked in push, + the in-flight step
    assert job.tokens_computed <= 4


def test_forward_pass_error_becomes_generation_error_with_cause(tiny, monkeypatch) -> None:
    ctx = Context(tiny)
    boom = RuntimeError("kernel exploded")
    real = tiny.engine.step
    calls = {"n": 0}

    def failing(requests):
        calls["n"] += 1
        if calls["n"] > 3:
            raise boom
        return real(requests)

    monkeypatch.setattr(tiny.engine, "step", failing)
    with pytest.raises(GenerationError) as info:
        for _ in ctx.generate_stream("hello", config=GREEDY.replace(max_tokens=50)):
            pass
    assert info.value.__cause__ is boom
    monkeypatch.undo()
    # The context recovers: its cache was reset, the next call works.
    assert Context(tiny).generate("hello", GREEDY).tokens == ctx.generate("hello", GREEDY).tokens


def test_a_new_generation_on_a_busy_context_ends_the_old_one(tiny) -> None:
    ctx = Context(tiny)
    config = StreamConfig(max_tokens=200, temperature=1.0, seed=4, timeout_ms=0, buffer_size=1)
    old = ctx.generate_stream("hello", config=config)
    next(old)
    new = ctx.generate("hello", GREEDY)
    assert new.tokens
    with pytest.raises(GenerationError, match="replaced"):
        for _ in old:
            pass


def test_concurrent_streams_on_one_model_match_sequential_runs(tiny) -> None:
    prompts = ["hello", "world", "test 1", "abc abc"]
    expected = {p: Context(tiny).generate(p, GREEDY).tokens for p in prompts}
    got: dict[str, list[int]] = {}

    def run(prompt: str) -> None:
        got[prompt] = Context(tiny).generate(prompt, GREEDY).tokens

    threads = [threading.Thread(target=run, args=(p,)) for p in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert got == expected


def test_many_abandoned_streams_leave_no_threads(tiny) -> None:
    ctx = Context(tiny)
    config = StreamConfig(max_tokens=100, temperature=1.0, seed=5, timeout_ms=0, buffer_size=2)
    before = {t.ident for t in threading.enumerate()}
    for _ in range(50):
        stream = ctx.generate_stream("hello", config=config)
        next(stream)
        del stream
    gc.collect()
    assert ctx.wait_idle(timeout=10)
    added = [t for t in threading.enumerate() if t.ident not in before]
    assert len(added) <= 1, added  # producer threads are reused, not one per stream


@pytest.mark.parametrize("repeat_penalty", [1.0, 1.5])
def test_tokens_equal_mlx_lm_generate_step_on_the_same_weights(tiny_mlx, repeat_penalty) -> None:
    tiny = tiny_mlx
    import mlx.core as mx
    from mlx_lm.generate import generate_step
    from mlx_lm.sample_utils import make_logits_processors

    from mullama.engines.base import REPETITION_CONTEXT

    prompt = tiny.tokenize("hello world hello")
    processors = make_logits_processors(
        repetition_penalty=repeat_penalty if repeat_penalty != 1.0 else None,
        repetition_context_size=REPETITION_CONTEXT,
    )
    reference = []
    for token, _ in generate_step(
        mx.array(prompt), tiny.mlx_model, max_tokens=12, logits_processors=processors
    ):
        if token in tiny.end_of_generation_ids:
            break
        reference.append(int(token))
    config = GREEDY.replace(max_tokens=12, repeat_penalty=repeat_penalty)
    assert Context(tiny).generate(prompt, config).tokens == reference
