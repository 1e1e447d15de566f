"""The Llama 3 and Qwen2 pre-tokenizers (`_core.pretokenize`) against an independent
implementation of the same regexes: the `tokenizers` package's Split, which runs them with
Oniguruma. No llama.cpp vectors exist for these families, so agreement with the regex on
many mixed texts is the evidence.

Each family is checked against two spellings of its regex: llama.cpp's rewrite, whose
contractions are `'[sS]|'[tT]|...` (what llama.cpp matches), and the original
`(?i:'s|'t|...)` from the models' tokenizer.json (what Hugging Face matches)."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mullama import _core
from split_fragments import FRAGMENTS

tokenizers = pytest.importorskip("tokenizers")

_REST_LLAMA3 = (
    r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_REST_QWEN2 = r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_CONTRACTIONS_LLAMA_CPP = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|"
_CONTRACTIONS_ORIGINAL = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|"

# (pre-tokenizer name, regex) pairs; each name must split exactly like its regex.
ORACLES = {
    "llama-bpe": _REST_LLAMA3,
    "qwen2": _REST_QWEN2,
}


def _oracle(regex: str):
    split = tokenizers.pre_tokenizers.Split(tokenizers.Regex(regex), behavior="isolated")
    return lambda text: [word for word, _ in split.pre_tokenize_str(text)]


SPLITTERS = {
    (name, spelling): _oracle(contractions + rest)
    for name, rest in ORACLES.items()
    for spelling, contractions in (
        ("llama.cpp", _CONTRACTIONS_LLAMA_CPP),
        ("original", _CONTRACTIONS_ORIGINAL),
    )
}


def _random_texts(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 30))) for _ in range(count)]


CORPUS = _random_texts(seed=20240501, count=10000)


def _disagreements(name: str, spelling: str, texts: list[str]) -> list[tuple[str, list, list]]:
    oracle = SPLITTERS[(name, spelling)]
    out = []
    for text in texts:
        ours, theirs = _core.pretokenize(name, text), oracle(text)
        if ours != theirs:
            out.append((text, ours, theirs))
    return out


# Oniguruma's (?i) case-folds U+017F (long s) to "s"; llama.cpp only lowercases, which
# leaves it alone. Texts holding it are compared with llama.cpp's spelling only.
LONG_S = "\u017f"


@pytest.mark.parametrize("name", sorted(ORACLES))
def test_random_texts_split_exactly_like_llama_cpps_regex(name):
    bad = _disagreements(name, "llama.cpp", CORPUS)
    agreed = len(CORPUS) - len(bad)
    assert not bad, f"{agreed}/{len(CORPUS)} agree; first differences: {bad[:3]}"


@pytest.mark.parametrize("name", sorted(ORACLES))
def test_random_texts_split_exactly_like_the_original_regex(name):
    texts = [text for text in CORPUS if LONG_S not in text]
    assert len(texts) > len(CORPUS) // 2
    bad = _disagreements(name, "original", texts)
    agreed = len(texts) - len(bad)
    assert not bad, f"{agreed}/{len(texts)} agree; first differences: {bad[:3]}"


@pytest.mark.parametrize("name", sorted(ORACLES))
def test_long_s_is_no_contraction_as_in_llama_cpp(name):
    text = "'\u017fup"
    assert _core.pretokenize(name, text) == [text]
    assert SPLITTERS[(name, "original")](text) == ["'\u017f", "up"]


ASSIGNED = st.characters(max_codepoint=0x2FFFF, exclude_categories=("Cs", "Cn"))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(ORACLES)),
    text=st.lists(
        st.sampled_from(FRAGMENTS) | st.text(ASSIGNED, max_size=4),
        max_size=20,
    ).map("".join),
)
@example(name="llama-bpe", text="I'M here 'sup\r\n\r\n  x   ")
@example(name="qwen2", text="x 1234\n\n\n")
def test_generated_texts_split_exactly_like_the_regex(name, text):
    # Arbitrary codepoints (st.text) may be newer than the oracle's Unicode tables; only
    # texts whose every codepoint the oracle classifies like ours are compared.
    oracle = SPLITTERS[(name, "llama.cpp")]
    for char in set(text):
        probe = f"x{char}x 1{char}1 .{char}. {char}  {char}\n{char}"
        if _core.pretokenize(name, probe) != oracle(probe):
            return
    assert _core.pretokenize(name, text) == oracle(text)


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("llama-bpe", "Hello 12345 world!!\n\n", ["Hello", " ", "123", "45", " world", "!!\n\n"]),
        ("llama-bpe", "you'RE  fine\t\tok", ["you", "'RE", " ", " fine", "\t", "\tok"]),
        ("qwen2", "Hello 12345", ["Hello", " ", "1", "2", "3", "4", "5"]),
        ("qwen2", "a \n\n b  ", ["a", " \n\n", " b", "  "]),
    ],
)
def test_hand_written_cases(name, text, words):
    assert _core.pretokenize(name, text) == words


@pytest.mark.parametrize("name", ["llama3", "llama-bpe", "falcon3", "pixtral", "dbrx", "smaug-bpe"])
def test_llama3_family_names_split_like_llama3(name):
    assert _core.pretokenize(name, "x 1234") == ["x", " ", "123", "4"]


@pytest.mark.parametrize("name", ["qwen2", "deepseek-r1-qwen", "megrez", "stablelm2"])
def test_qwen2_family_names_split_like_qwen2(name):
    assert _core.pretokenize(name, "x 1234") == ["x", " ", "1", "2", "3", "4"]


def test_existing_pre_tokenizers_are_unchanged():
    assert _core.pretokenize("smollm", "x 42 it's") == ["x", " ", "4", "2", " it", "'s"]
    assert _core.pretokenize("gpt-2", "x 42  y") == ["x", " 42", " ", " y"]


def test_unknown_pre_tokenizer_raises_tokenizer_error():
    with pytest.raises(_core.TokenizerError, match="no-such-pre"):
        _core.pretokenize("no-such-pre", "text")
