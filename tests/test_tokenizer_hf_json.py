"""Folder tokenizers (tokenizer.json) against the `tokenizers` package, family by family:
ids, decoded text and streamed text must be identical on 2,000 random texts each."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("tokenizers", minversion="0.20")

from hf_families import FAMILIES, random_text, write_family  # noqa: E402
from mullama import _core  # noqa: E402
from mullama._core import StreamConfig, TokenizerError, open_stream  # noqa: E402
from split_fragments import FRAGMENTS  # noqa: E402

N_TEXTS = 2000


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    hf, specials = write_family(request.param, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    rng = random.Random(2024)
    texts = [random_text(rng, specials) for _ in range(N_TEXTS)]
    return request.param, hf, _core.Tokenizer.from_json(str(folder)), config, texts


def _streamed_and_dropped(tok: _core.Tokenizer, ids: list[int]) -> tuple[str, int]:
    """The text a real core stream over the tokenizer's pieces emits for `ids`, and how many
    bytes of an unfinished last character it dropped."""
    config = StreamConfig(max_tokens=len(ids) + 1, buffer_size=len(ids) + 2, timeout_ms=0)
    producer, stream = open_stream(config, tok)
    for i in ids:
        assert producer.push(i)
    producer.finish("stop")
    text = "".join(event.text for event in stream)
    return text, stream.stats["incomplete_bytes_dropped"]


def _streamed(tok: _core.Tokenizer, ids: list[int]) -> str:
    text, dropped = _streamed_and_dropped(tok, ids)
    assert dropped == 0, f"a stream of whole text dropped {dropped} bytes"
    return text


def _mismatches(pairs):
    bad = [(text, want, got) for text, want, got in pairs if want != got]
    return len(bad), bad[:3]


def test_ids_equal_the_tokenizers_package(family):
    _, hf, tok, _, texts = family
    pairs = [(t, hf.encode(t, add_special_tokens=False).ids, tok.encode(t)) for t in texts]
    assert _mismatches(pairs) == (0, [])


def test_special_token_texts_stay_text_when_not_parsed(family):
    _, hf, tok, _, texts = family
    hf.encode_special_tokens = True
    try:
        pairs = [
            (t, hf.encode(t, add_special_tokens=False).ids, tok.encode(t, special=False))
            for t in texts
        ]
    finally:
        hf.encode_special_tokens = False
    assert _mismatches(pairs) == (0, [])


def test_bos_follows_the_post_processor_or_the_config(family):
    _, hf, tok, config, texts = family
    if "add_bos_token" in config:
        bos = [hf.token_to_id(config["bos_token"])] if config["add_bos_token"] else []
        want = lambda t: bos + hf.encode(t, add_special_tokens=False).ids  # noqa: E731
    else:
        want = lambda t: hf.encode(t).ids  # noqa: E731
    assert _mismatches((t, want(t), tok.encode(t, add_bos=True)) for t in texts[:300]) == (0, [])


def test_decoded_and_streamed_text_equal_decode_all(family):
    name, hf, tok, _, texts = family
    decoded, streamed, shown = [], [], []
    for t in texts:
        ids = hf.encode(t, add_special_tokens=False).ids
        want = hf.decode(ids, skip_special_tokens=True)
        decoded.append((t, want, tok.decode(ids, skip_special=True)))
        streamed.append((t, want, _streamed(tok, ids)))
        shown.append((t, hf.decode(ids, skip_special_tokens=False), tok.decode(ids)))
    assert _mismatches(decoded) == (0, [])
    assert _mismatches(streamed) == (0, [])
    assert _mismatches(shown) == (0, [])


def test_stream_is_utf8_safe_when_a_character_spans_byte_tokens(tmp_path):
    hf, _ = write_family("llama2", tmp_path)
    tok = _core.Tokenizer.from_json(str(tmp_path))
    ids = hf.encode("x 😀 日本", add_special_tokens=False).ids
    assert any(hf.id_to_token(i).startswith("<0x") for i in ids)
    config = StreamConfig(max_tokens=64, buffer_size=64, timeout_ms=0)
    producer, stream = open_stream(config, tok)
    for i in ids:
        producer.push(i)
    producer.finish("stop")
    pieces = [event.text for event in stream]
    assert "".join(pieces) == "x 😀 日本" == hf.decode(ids)
    assert all("\ufffd" not in p for p in pieces)


# ------------------------------------------- Llama 3 / Qwen 2 splits without a regex engine
# These files' Split regex is run by mullama's hand-written matcher, not a regex engine:
# the ids must still be the package's wherever a codepoint's class or case folding matters.


@pytest.fixture(scope="module", params=["llama3", "qwen2"])
def split_family(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"split-{request.param}")
    hf, _ = write_family(request.param, folder)
    return hf, _core.Tokenizer.from_json(str(folder))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pieces=st.lists(
        st.one_of(st.sampled_from(FRAGMENTS), st.characters(exclude_categories=["Cs"])),
        max_size=40,
    )
)
def test_split_families_encode_varied_text_as_the_package(split_family, pieces):
    hf, tok = split_family
    text = "".join(pieces)
    assert tok.encode(text) == hf.encode(text, add_special_tokens=False).ids, text


def test_split_families_encode_codepoints_in_every_position_as_the_package(split_family):
    """Every codepoint below U+0800 and a sample of the rest, after a letter, a digit, a
    space, a line break, punctuation and an apostrophe, doubled, and before a letter."""
    hf, tok = split_family
    cps = [*range(0x800), *range(0x800, 0x110000, 61)]
    chars = [chr(c) for c in cps if not 0xD800 <= c < 0xE000]
    mismatched = []
    for i in range(0, len(chars), 64):
        chunk = chars[i : i + 64]
        text = "".join(f"'{c}a{c}1{c} {c}\n{c}!{c}{c}'r{c}  {c}\r\n {c}" for c in chunk)
        if tok.encode(text) != hf.encode(text, add_special_tokens=False).ids:
            mismatched.append(chunk)
    assert mismatched == []


# ----------------------------------------------------------------------- refusals


def _write(tmp_path: Path, tokenizer: dict) -> Path:
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(tokenizer), encoding="utf-8")
    return path


def _gpt2_json(tmp_path: Path) -> dict:
    write_family("gpt2", tmp_path / "base")
    return json.loads((tmp_path / "base" / "tokenizer.json").read_text(encoding="utf-8"))


def test_unknown_model_type_is_named(tmp_path):
    path = _write(tmp_path, {"model": {"type": "SuperBPE", "vocab": {}}})
    with pytest.raises(TokenizerError, match=r"SuperBPE.*supported: BPE, Unigram, WordPiece"):
        _core.Tokenizer.from_json(str(path))


def test_unknown_pre_tokenizer_is_named(tmp_path):
    data = _gpt2_json(tmp_path)
    data["pre_tokenizer"] = {"type": "Cjk"}
    with pytest.raises(TokenizerError, match="Cjk"):
        _core.Tokenizer.from_json(str(_write(tmp_path, data)))


@pytest.mark.parametrize(
    ("decoder", "named"),
    [
        (
            {"type": "CTC", "pad_token": "<pad>", "word_delimiter_token": "|", "cleanup": True},
            "CTC",
        ),
        ({"type": "BPEDecoder", "suffix": "</w>"}, "BPEDecoder"),
        ({"type": "Replace", "pattern": {"Regex": " +"}, "content": " "}, "Regex"),
        (
            {
                "type": "Sequence",
                "decoders": [
                    {"type": "Fuse"},
                    {"type": "Strip", "content": " ", "start": 0, "stop": 1},
                ],
            },
            "stop",
        ),
    ],
)
def test_decoders_a_stream_cannot_follow_are_named(tmp_path, decoder, named):
    data = _gpt2_json(tmp_path)
    data["decoder"] = decoder
    with pytest.raises(TokenizerError, match=named):
        _core.Tokenizer.from_json(str(_write(tmp_path, data)))


# ------------------------------------------------------------ generation_config.json


def test_generation_config_eos_ids_end_generation(tmp_path):
    hf, _ = write_family("llama3", tmp_path)
    eot, eom = hf.token_to_id("<|eot_id|>"), hf.token_to_id("<|eom_id|>")
    end = hf.token_to_id("<|end_of_text|>")
    # A normal token stands for a model-specific stop that no name rule would find.
    plain = hf.token_to_id("the")
    (tmp_path / "generation_config.json").write_text(
        json.dumps({"eos_token_id": [end, eom, eot, plain]}), encoding="utf-8"
    )
    tok = _core.Tokenizer.from_json(str(tmp_path))
    assert {end, eom, eot, plain} <= set(tok.end_of_generation_ids)
    assert tok.is_end_of_generation(plain)

    (tmp_path / "generation_config.json").write_text('{"eos_token_id": 9999999}')
    with pytest.raises(TokenizerError, match="eos_token_id"):
        _core.Tokenizer.from_json(str(tmp_path))


def test_random_id_sequences_stream_as_decode_all(family):
    """Ids a model may sample, not only ids of texts: broken byte runs, specials between
    byte tokens, leading markers after hidden specials."""
    _, hf, tok, _, _ = family
    rng = random.Random(11)
    n = hf.get_vocab_size()
    byte_ids = [i for i in range(n) if (hf.id_to_token(i) or "").startswith("<0x")]
    cases = []
    for _ in range(500):
        pool = byte_ids if byte_ids and rng.random() < 0.5 else range(n)
        ids = [rng.choice(pool) if rng.random() < 0.7 else rng.randrange(n) for _ in range(12)]
        want = hf.decode(ids, skip_special_tokens=True)
        streamed, dropped = _streamed_and_dropped(tok, ids)
        if dropped:
            # The reply ends inside a character: a stream drops it (decode-all shows it as
            # U+FFFD), so what it shows is decode-all less that trailing replacement.
            cut = want.rstrip("\ufffd")
            assert len(cut) < len(want) and cut.startswith(streamed[: len(cut)]), (ids, want)
            assert set(streamed[len(cut) :]) <= {"\ufffd"}, (ids, want, streamed)
        else:
            cases.append((ids, want, streamed))
        cases.append((ids, want, tok.decode(ids, skip_special=True)))
    assert _mismatches(cases) == (0, [])
