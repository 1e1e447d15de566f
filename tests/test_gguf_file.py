"""The core's GGUF reader as seen from Python (`mullama._core.GgufFile`): it agrees with
the `gguf` package's independent reader, uses one set of type names, turns broken
files into a ModelLoadError naming the file, and a model load parses the header once."""

from __future__ import annotations

import math
from pathlib import Path

import gguf
import numpy as np
import pytest

import mullama.loader.gguf_check as gguf_check
import mullama.model as model_module
from mullama import Model, ModelLoadError
from mullama._core import GgufFile, Tokenizer
from mullama.loader.quant import tensor_bytes


def test_tensor_directory_matches_the_gguf_package_reader(tiny_gguf_variants):
    for path in tiny_gguf_variants.values():
        ours = GgufFile.open(path)
        theirs = gguf.GGUFReader(path)
        assert ours.data_offset == theirs.data_offset
        assert ours.data_offset % ours.alignment == 0
        assert ours.file_size == path.stat().st_size
        assert [t.name for t in ours.tensors] == [t.name for t in theirs.tensors]
        for mine, ref in zip(ours.tensors, theirs.tensors, strict=True):
            assert mine.type == ref.tensor_type.name
            assert mine.shape == tuple(int(d) for d in reversed(ref.shape))
            assert (mine.offset, mine.nbytes) == (ref.data_offset, ref.n_bytes)
            assert ours.tensor(mine.name).offset == mine.offset
            expected = np.asarray(ref.data).view(np.uint8).reshape(-1)
            np.testing.assert_array_equal(tensor_bytes(ours, mine).reshape(-1), expected)
        assert ours.tensor("no.such.tensor") is None


def _write(path: Path, fill) -> Path:
    writer = gguf.GGUFWriter(str(path), "llama")
    fill(writer)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_every_ggml_tensor_type_has_its_ggml_name_and_block_size(tmp_path: Path):
    """The core's table of ggml types agrees with the gguf package's on every type."""
    types = list(gguf.GGMLQuantizationType)

    def fill(writer):
        for ty in types:
            block, size = gguf.GGML_QUANT_SIZES[ty]
            rows, cols = 3, 2 * 256 // block * size  # 512 elements per row
            writer.add_tensor(f"t.{ty.name}", np.zeros((rows, cols), np.uint8), raw_dtype=ty)

    file = GgufFile.open(_write(tmp_path / "types.gguf", fill))
    assert [(t.name, t.type) for t in file.tensors] == [(f"t.{ty.name}", ty.name) for ty in types]
    for t, ty in zip(file.tensors, types, strict=True):
        block, size = gguf.GGML_QUANT_SIZES[ty]
        assert t.shape == (3, 512)
        assert t.nbytes == math.prod(t.shape) // block * size


def test_metadata_type_names_are_the_specification_names(tmp_path: Path):
    """Arrays too long to list are summarised with the element type's GGUF name, the
    same names as the gguf package's GGUFValueType (lower case), e.g. "string"."""
    vt = gguf.GGUFValueType
    element_types = [t for t in vt if t != vt.ARRAY]

    def fill(writer):
        for t in element_types:
            value = ["x"] * 1001 if t == vt.STRING else [1] * 1001
            writer.add_key_value(f"long.{t.name}", value, vt.ARRAY, sub_type=t)

    file = GgufFile.open(_write(tmp_path / "kv.gguf", fill))
    meta = file.metadata
    for t in element_types:
        assert meta[f"long.{t.name}"] == {
            "type": "array",
            "element_type": t.name.lower(),
            "length": 1001,
        }
        assert len(file.get(f"long.{t.name}")) == 1001
    assert file.get("long.STRING")[0] == "x"
    assert file.get("no.such.key", 7) == 7
    assert file.architecture == meta["general.architecture"] == "llama"


def test_truncated_and_corrupt_files_name_the_file(tiny_gguf_q4: Path, tmp_path: Path):
    data = tiny_gguf_q4.read_bytes()
    header_end = GgufFile.open(tiny_gguf_q4).data_offset
    for cut in (3, 10, 200, header_end - 7, header_end + 100, len(data) - 1):
        path = tmp_path / f"cut{cut}.gguf"
        path.write_bytes(data[:cut])
        with pytest.raises(ModelLoadError, match="truncated|not a GGUF") as info:
            GgufFile.open(path)
        assert str(path) in str(info.value)
        with pytest.raises(ModelLoadError) as info:
            Model.load(path)
        assert str(path) in str(info.value)
    corrupt = bytearray(data)
    corrupt[8:16] = (1 << 40).to_bytes(8, "little")  # tensor count
    path = tmp_path / "corrupt.gguf"
    path.write_bytes(bytes(corrupt))
    with pytest.raises(ModelLoadError, match="tensor count .*corrupt") as info:
        GgufFile.open(path)
    assert str(path) in str(info.value)
    with pytest.raises(ModelLoadError, match="nope.gguf"):
        GgufFile.open(tmp_path / "nope.gguf")


def test_tokenizer_from_a_parsed_file_equals_the_one_from_its_path(smollm2_path: Path):
    from_file = Tokenizer.from_gguf(GgufFile.open(smollm2_path))
    from_path = Tokenizer.from_gguf(smollm2_path)
    text = "Hello, world! <|im_start|>user\n1234 naïve"
    assert from_file.encode(text) == from_path.encode(text)
    assert from_file.end_of_generation_ids == from_path.end_of_generation_ids
    assert from_file.chat_template == from_path.chat_template
    with pytest.raises(TypeError, match="path or a GgufFile"):
        Tokenizer.from_gguf(42)


def test_a_model_load_parses_the_header_once(
    tiny_gguf_q4: Path, tmp_path: Path, monkeypatch, engine_name: str
):
    """The loader opens the file once (whichever engine then runs it); the tokenizer is built
    from that parse. To prove it reads nothing, the file is moved away while the tokenizer is
    built."""
    path = tmp_path / "model.gguf"
    path.write_bytes(tiny_gguf_q4.read_bytes())
    opened: list[GgufFile] = []

    class CountingGgufFile:
        @staticmethod
        def open(p):
            opened.append(GgufFile.open(p))
            return opened[-1]

    class FileMovedAwayTokenizer:
        @staticmethod
        def from_gguf(source):
            aside = path.rename(tmp_path / "aside.gguf")
            try:
                return Tokenizer.from_gguf(source)
            finally:
                aside.rename(path)

    monkeypatch.setattr(gguf_check, "GgufFile", CountingGgufFile)
    monkeypatch.setattr(model_module, "Tokenizer", FileMovedAwayTokenizer)
    model = Model.load(path, engine=engine_name)
    assert len(opened) == 1
    assert model.tokenizer.vocab_size == opened[0].tensor("token_embd.weight").shape[0]
    assert model.chat_template == opened[0].get("tokenizer.chat_template")
