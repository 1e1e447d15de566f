"""Bad model files end in a ModelLoadError that names the problem: never a crash,
a bare KeyError or an MLX error message."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest

from mullama import ModelLoadError
from mullama._core import GgufFile
from mullama.loader import load_gguf, load_model
from mullama.testing.tiny_models import write_tiny_gguf


def _copy_with(src: Path, dst: Path, data: bytes) -> Path:
    dst.write_bytes(data)
    return dst


def test_missing_path(tmp_path: Path):
    with pytest.raises(ModelLoadError, match="not found"):
        load_gguf(tmp_path / "nope.gguf")
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(str(tmp_path / "nope.gguf"))


def test_directory_given_to_load_gguf(tmp_path: Path):
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        load_gguf(tmp_path)


@pytest.mark.parametrize(
    "content",
    [b"", b"GG", b"hello, this is a text file, not a model" * 4, b"\x00" * 64],
    ids=["empty", "two-bytes", "text", "zeros"],
)
def test_not_a_gguf_file(tmp_path: Path, content: bytes):
    path = _copy_with(tmp_path, tmp_path / "model.gguf", content)
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        load_gguf(path)


def test_load_model_rejects_a_file_that_is_neither_gguf_nor_folder(tmp_path: Path):
    path = _copy_with(tmp_path, tmp_path / "weights.bin", b"\x01\x02\x03\x04" * 16)
    with pytest.raises(ModelLoadError, match="neither a GGUF file nor a model folder"):
        load_model(str(path))


def test_truncated_files_fail_cleanly_at_every_cut(tiny_gguf_q4: Path, tmp_path: Path):
    """Cuts inside the header, the metadata, the tensor directory and the tensor data."""
    data = tiny_gguf_q4.read_bytes()
    gguf_file = GgufFile.open(tiny_gguf_q4)
    cuts = sorted(
        {
            5,
            16,
            30,
            200,
            2000,
            gguf_file.data_offset - 7,
            gguf_file.data_offset + 100,
            len(data) // 2,
            len(data) - 1000,
            len(data) - 1,
        }
    )
    for cut in cuts:
        path = _copy_with(tmp_path, tmp_path / f"cut{cut}.gguf", data[:cut])
        with pytest.raises(ModelLoadError, match="truncated|corrupt|not a GGUF"):
            load_gguf(path)


def test_tensor_data_past_the_end_is_named(tiny_gguf: Path, tmp_path: Path):
    data = tiny_gguf.read_bytes()
    path = _copy_with(tmp_path, tmp_path / "short.gguf", data[:-4])
    with pytest.raises(ModelLoadError, match=r"tensor \S+ .* lies outside the file"):
        load_gguf(path)


def test_corrupt_counts_and_version(tiny_gguf: Path, tmp_path: Path):
    data = bytearray(tiny_gguf.read_bytes())
    bad_version = data.copy()
    bad_version[4:8] = (7).to_bytes(4, "little")
    with pytest.raises(ModelLoadError, match="unsupported version 7"):
        load_gguf(_copy_with(tmp_path, tmp_path / "v7.gguf", bytes(bad_version)))

    huge_count = data.copy()
    huge_count[8:16] = (1 << 40).to_bytes(8, "little")
    with pytest.raises(ModelLoadError, match="corrupt"):
        load_gguf(_copy_with(tmp_path, tmp_path / "count.gguf", bytes(huge_count)))

    # The first metadata key's length, made enormous.
    huge_string = data.copy()
    huge_string[24:32] = (1 << 50).to_bytes(8, "little")
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        load_gguf(_copy_with(tmp_path, tmp_path / "string.gguf", bytes(huge_string)))


def test_unknown_tensor_type_id(tiny_gguf: Path, tmp_path: Path):
    data = bytearray(tiny_gguf.read_bytes())
    name = b"output_norm.weight"
    at = data.index(len(name).to_bytes(8, "little") + name) + 8 + len(name)
    n_dims = int.from_bytes(data[at : at + 4], "little")
    type_at = at + 4 + 8 * n_dims
    data[type_at : type_at + 4] = (999).to_bytes(4, "little")
    with pytest.raises(ModelLoadError, match="output_norm.weight has unknown tensor type id 999"):
        load_gguf(_copy_with(tmp_path, tmp_path / "type.gguf", bytes(data)))


def test_unsupported_architecture_is_named_with_the_supported_ones(tmp_path: Path):
    path = tmp_path / "mamba.gguf"
    writer = gguf.GGUFWriter(str(path), "mamba")
    writer.add_tensor("token_embd.weight", np.zeros((8, 32), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ModelLoadError, match=r"unsupported architecture 'mamba'.*llama"):
        load_gguf(path)


def _single_tensor_llama(path: Path, name: str, value: np.ndarray, **kwargs) -> Path:
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor(name, value, **kwargs)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_unsupported_tensor_type_is_named(tmp_path: Path):
    path = _single_tensor_llama(
        tmp_path / "i32.gguf", "blk.0.attn_q.weight", np.zeros((4, 32), np.int32)
    )
    with pytest.raises(ModelLoadError, match="blk.0.attn_q.weight .*unsupported .*type I32"):
        load_gguf(path)


def test_unsupported_quantized_type_is_named(tmp_path: Path):
    block_size, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.IQ2_XXS]
    raw = np.zeros((4, type_size), np.uint8)  # one 256-element block per row
    path = _single_tensor_llama(
        tmp_path / "iq2.gguf",
        "blk.0.attn_q.weight",
        raw,
        raw_dtype=gguf.GGMLQuantizationType.IQ2_XXS,
    )
    with pytest.raises(ModelLoadError, match="IQ2_XXS"):
        load_gguf(path)


def test_unknown_tensor_name(tmp_path: Path):
    path = _single_tensor_llama(
        tmp_path / "name.gguf", "blk.0.mystery.weight", np.zeros((4, 32), np.float32)
    )
    with pytest.raises(ModelLoadError, match="blk.0.mystery.weight has no counterpart"):
        load_gguf(path)


def test_missing_tensor(tmp_path: Path):
    path = write_tiny_gguf(
        tmp_path / "missing.gguf", skip_tensors=frozenset({"blk.1.ffn_down.weight"})
    )
    with pytest.raises(ModelLoadError, match="does not fit .*down_proj"):
        load_gguf(path)


def test_missing_required_metadata(tiny_gguf: Path, tmp_path: Path):
    data = tiny_gguf.read_bytes().replace(b"llama.block_count", b"llama.block_cXunt")
    with pytest.raises(ModelLoadError, match="lacks required metadata llama.block_count"):
        load_gguf(_copy_with(tmp_path, tmp_path / "meta.gguf", data))
