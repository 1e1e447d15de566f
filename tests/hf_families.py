"""tokenizer.json files in the configurations real model families ship (pre-tokenizer,
normalizer, model options, decoder, post-processor), trained on generated text with the
`tokenizers` package, and random texts to compare mullama against that package with.

The configurations follow the published tokenizer.json files of each family; only the
vocabularies are small and trained here (no download).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from tokenizers import (
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPM = "\u2581"

# Pieces random texts are built from: scripts, emoji (with ZWJ and skin tones),
# combining marks (NFC changes them), digits, whitespace runs, contractions.
WORDS = [
    "the",
    "The",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "hello",
    "world",
    "I'm",
    "don't",
    "we'LL",
    "it's",
    "they've",
    "you'd",
    "naïve",
    "café",
    "Straße",
    "über",
    "Привет",
    "мир",
    "日本語",
    "中文字符",
    "東京",
    "한국어",
    "مرحبا",
    "שלום",
    "ελληνικά",
    "हिन्दी",
    "ไทย",
    "e\u0301",
    "n\u0303o",
    "a\u030a\u0301",
    "😀",
    "👍🏽",
    "👨‍👩‍👧",
    "🇫🇷",
    "🤖✨",
    "(x)",
    "[1]",
    "{a:b}",
    "->",
    "==",
    "...",
    "!?",
    "#tag",
    "@user",
    "x_y",
    "a-b",
    "$5",
    "3.14",
    "12345678",
    "0",
    "007",
    "\u00a0",
    "\u200b",
    "\ufeff",
    "tab\there",
]
SPACES = [" ", " ", " ", "  ", "   ", "\n", "\n\n", "\t", " \n ", "\r\n", "", "      "]


def random_text(rng: random.Random, specials: list[str]) -> str:
    parts: list[str] = []
    for _ in range(rng.randint(0, 14)):
        r = rng.random()
        if r < 0.06 and specials:
            parts.append(rng.choice(specials))
        elif r < 0.12:
            parts.append(str(rng.randint(0, 10 ** rng.randint(1, 9))))
        elif r < 0.17:
            parts.append("".join(chr(rng.randint(0x20, 0x2FFF)) for _ in range(rng.randint(1, 4))))
        else:
            parts.append(rng.choice(WORDS))
        parts.append(rng.choice(SPACES))
    if rng.random() < 0.2:
        parts.insert(0, rng.choice(SPACES))
    return "".join(parts)


def _corpus(n: int) -> list[str]:
    rng = random.Random(7)
    # Training text leaves out emoji and rare scripts, so byte fallback is exercised.
    plain = [w for w in WORDS if all(ord(c) < 0x3000 for c in w)]
    return [
        " ".join(rng.choice(plain) for _ in range(rng.randint(3, 20)))
        + rng.choice(SPACES)
        + str(rng.randint(0, 99999))
        for _ in range(n)
    ]


def _add_byte_tokens(tok: Tokenizer, after: int) -> Tokenizer:
    """SentencePiece-BPE vocabularies hold <0x00>..<0xFF> as ordinary tokens right after
    the first specials; the trainer cannot make them, so they are spliced in."""
    data = json.loads(tok.to_str())
    vocab: dict[str, int] = data["model"]["vocab"]
    order = sorted(vocab, key=vocab.get)
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    order = order[:after] + byte_tokens + [t for t in order[after:] if t not in byte_tokens]
    data["model"]["vocab"] = {t: i for i, t in enumerate(order)}
    for added in data["added_tokens"]:
        added["id"] = order.index(added["content"])
    return Tokenizer.from_str(json.dumps(data))


def _template(tok: Tokenizer, bos: str) -> processors.TemplateProcessing:
    bos_id = tok.token_to_id(bos)
    return processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]
    )


def _byte_level_bpe(split: str | None, specials: list[str], **bpe: Any) -> Tokenizer:
    tok = Tokenizer(models.BPE(**bpe))
    if split is None:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(split), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=900,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(3000), trainer)
    return tok


def _spm_bpe(specials: list[str], *, legacy: bool, strip: bool = True) -> Tokenizer:
    """SentencePiece-style BPE with byte fallback. `legacy`: Llama 2 / Phi-3 / Gemma
    spell spaces in the normalizer; newer Mistral files use a Metaspace pre-tokenizer."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    # Training splits at the space marker so merges stay within words, as SentencePiece's.
    tok.normalizer = normalizers.Replace(" ", SPM)
    tok.pre_tokenizer = pre_tokenizers.Split(SPM, behavior="merged_with_next")
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(_corpus(3000), trainer)
    tok = _add_byte_tokens(tok, after=len(specials))
    if legacy:
        steps = [normalizers.Prepend(SPM)] if strip else []
        tok.normalizer = normalizers.Sequence([*steps, normalizers.Replace(" ", SPM)])
        tok.pre_tokenizer = None
        chain = [decoders.Replace(SPM, " "), decoders.ByteFallback(), decoders.Fuse()]
        if strip:
            chain.append(decoders.Strip(" ", 1, 0))
        tok.decoder = decoders.Sequence(chain)
    else:
        # transformers' conversion with legacy=False: the space marker comes from the
        # pre-tokenizer, decoding stays Llama 2's.
        tok.normalizer = None
        tok.pre_tokenizer = pre_tokenizers.Metaspace(SPM, prepend_scheme="first", split=False)
        tok.decoder = decoders.Sequence(
            [
                decoders.Replace(SPM, " "),
                decoders.ByteFallback(),
                decoders.Fuse(),
                decoders.Strip(" ", 1, 0),
            ]
        )
    return tok


def _unigram(specials: list[str]) -> Tokenizer:
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(SPM, prepend_scheme="always")
    tok.decoder = decoders.Metaspace(SPM, prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=600, special_tokens=specials, unk_token="<unk>", show_progress=False
    )
    tok.train_from_iterator(_corpus(3000), trainer)
    return tok


def _wordpiece(specials: list[str]) -> Tokenizer:
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    trainer = trainers.WordPieceTrainer(
        vocab_size=700, special_tokens=specials, show_progress=False
    )
    tok.train_from_iterator(_corpus(3000), trainer)
    return tok


def build_family(name: str) -> tuple[Tokenizer, dict[str, Any], list[str]]:
    """The family's tokenizer, its tokenizer_config.json, and its special token texts."""
    if name == "llama3":
        specials = [
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
            "<|eom_id|>",
        ]
        tok = _byte_level_bpe(LLAMA3_SPLIT, specials, ignore_merges=True)
        tok.post_processor = processors.Sequence(
            [processors.ByteLevel(trim_offsets=False), _template(tok, "<|begin_of_text|>")]
        )
        config = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
    elif name == "qwen2":
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        tok = _byte_level_bpe(QWEN2_SPLIT, specials)
        tok.normalizer = normalizers.NFC()
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        config = {"bos_token": None, "eos_token": "<|im_end|>", "add_bos_token": False}
    elif name == "gpt2":
        specials = ["<|endoftext|>"]
        tok = _byte_level_bpe(None, specials)
        tok.post_processor = processors.ByteLevel(trim_offsets=True)
        config = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}
    elif name == "llama2":
        specials = ["<unk>", "<s>", "</s>"]
        tok = _spm_bpe(specials, legacy=True)
        tok.post_processor = _template(tok, "<s>")
        config = {"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True}
    elif name == "mistral":
        specials = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]"]
        tok = _spm_bpe(specials, legacy=False)
        tok.post_processor = _template(tok, "<s>")
        config = {"bos_token": "<s>", "eos_token": "</s>"}
    elif name == "gemma":
        specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
        tok = _spm_bpe(specials, legacy=True, strip=False)
        tok.post_processor = _template(tok, "<bos>")
        config = {"bos_token": "<bos>", "eos_token": "<eos>", "add_bos_token": True}
    elif name == "phi3":
        specials = [
            "<unk>",
            "<s>",
            "</s>",
            "<|endoftext|>",
            "<|assistant|>",
            "<|end|>",
            "<|user|>",
            "<|system|>",
        ]
        tok = _spm_bpe(specials, legacy=True)
        tok.post_processor = _template(tok, "<s>")
        config = {"bos_token": "<s>", "eos_token": "<|endoftext|>", "add_bos_token": False}
    elif name == "unigram":
        specials = ["<pad>", "</s>", "<unk>"]
        tok = _unigram(specials)
        config = {"eos_token": "</s>"}
    elif name == "wordpiece":
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        tok = _wordpiece(specials)
        config = {}
    else:
        raise ValueError(name)
    return tok, config, specials


FAMILIES = ["llama3", "qwen2", "gpt2", "llama2", "mistral", "gemma", "phi3", "unigram", "wordpiece"]


def write_family(name: str, folder: Path) -> tuple[Tokenizer, list[str]]:
    """Writes tokenizer.json and tokenizer_config.json of `name` into `folder`."""
    tok, config, specials = build_family(name)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return tok, specials
