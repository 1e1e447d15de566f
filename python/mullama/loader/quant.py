"""GGUF tensor encodings -> MLX arrays.

Q8_0, Q4_0 and Q4_1 are affine codes over groups of 32 with one scale (and one
offset) per group, exactly MLX's affine quantization at group size 32, so they are
carried over bit for bit. Other quantized types are dequantized with the `gguf`
package and re-quantized by MLX at a bit width that keeps their precision.

Tensor types are ggml's names ("Q4_1", "F32"), as the core's GGUF reader reports them.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import mlx.core as mx
import numpy as np
from gguf import GGMLQuantizationType
from gguf.quants import dequantize

from mullama._core import GgufFile, GgufTensor, ModelLoadError

GROUP_SIZE = 32

# Types MLX's own GGUF reader handles losslessly; a file made only of these is read
# by `mx.load`. (It also accepts BF16, but narrows it to float16.)
MLX_NATIVE_TYPES = frozenset({"F32", "F16", "Q4_0", "Q4_1", "Q8_0"})

FLOAT_TYPES = frozenset({"F32", "F16", "BF16", "F64"})

EXACT_AFFINE_BITS = {"Q8_0": 8, "Q4_0": 4, "Q4_1": 4}

# Types that are dequantized and re-quantized at REQUANT_BITS. Their codes do not map
# one to one onto MLX groups of 32 (K-quants share scales across sub-blocks), and
# re-quantizing at their nominal width doubles the rounding error: on Gemma 3 270M
# Q4_K_M, argmax agreement with llama.cpp fell from 98.6% (8 bits) to 95.1%.
REQUANT_TYPES = frozenset(
    {"Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K", "Q2_K", "Q3_K", "IQ4_NL", "IQ4_XS"}
)
REQUANT_BITS = 8

SUPPORTED_TYPES = FLOAT_TYPES | set(EXACT_AFFINE_BITS) | REQUANT_TYPES


def supported_type_names() -> list[str]:
    return sorted(SUPPORTED_TYPES)


@dataclass
class ConvertedTensor:
    """A tensor ready for `Module.load_weights`: `arrays` maps the suffix to add to the
    module path ("weight", "scales", "biases") to the array. `bits` is None for float."""

    arrays: dict[str, mx.array]
    bits: int | None


def tensor_bytes(gguf: GgufFile, info: GgufTensor) -> np.ndarray:
    """The raw bytes of one tensor as a read-only memory map, shaped (rows, bytes per row),
    at the offset the core's reader checked to lie inside the file."""
    raw = np.memmap(gguf.path, dtype=np.uint8, mode="r", offset=info.offset, shape=(info.nbytes,))
    return raw.reshape(math.prod(info.shape[:-1]), -1)


def _dequantize(raw: np.ndarray, ggml_type: str) -> np.ndarray:
    return dequantize(raw, GGMLQuantizationType[ggml_type])


def check_supported(name: str, ggml_type: str) -> None:
    if ggml_type not in SUPPORTED_TYPES:
        raise ModelLoadError(
            f"tensor {name} has unsupported GGUF tensor type {ggml_type}; "
            f"supported types: {', '.join(supported_type_names())}"
        )


def affine_bits(weight: mx.array, scales: mx.array, group_size: int = GROUP_SIZE) -> int:
    """Bit width of an MLX affine-quantized weight, from its packed and scale shapes."""
    in_features = scales.shape[-1] * group_size
    return weight.shape[-1] * 32 // in_features


def convert_raw(
    name: str, ggml_type: str, raw: np.ndarray, shape: tuple[int, ...]
) -> ConvertedTensor:
    """Turn one tensor's raw GGUF bytes (rows x bytes-per-row) into MLX arrays."""
    check_supported(name, ggml_type)
    if ggml_type in FLOAT_TYPES:
        values = _dequantize(raw, ggml_type).reshape(shape)
        if ggml_type == "F16":
            return ConvertedTensor({"weight": mx.array(values.astype(np.float16))}, None)
        if ggml_type == "BF16":
            return ConvertedTensor({"weight": mx.array(values).astype(mx.bfloat16)}, None)
        return ConvertedTensor({"weight": mx.array(values.astype(np.float32))}, None)
    if len(shape) != 2:
        # Only matrices become quantized modules; anything else is used as floats.
        values = _dequantize(raw, ggml_type).reshape(shape).astype(np.float32)
        return ConvertedTensor({"weight": mx.array(values)}, None)
    if ggml_type in EXACT_AFFINE_BITS:
        weight, scales, biases = _REPACKERS[ggml_type](raw, shape)
        return ConvertedTensor(
            {"weight": weight, "scales": scales, "biases": biases}, EXACT_AFFINE_BITS[ggml_type]
        )
    bits = REQUANT_BITS
    values = mx.array(_dequantize(raw, ggml_type).reshape(shape).astype(np.float32))
    weight, scales, biases = mx.quantize(values, group_size=GROUP_SIZE, bits=bits)
    return ConvertedTensor(
        {
            "weight": weight,
            "scales": scales.astype(mx.float16),
            "biases": biases.astype(mx.float16),
        },
        bits,
    )


def _blocks(raw: np.ndarray, shape: tuple[int, ...], block_bytes: int) -> np.ndarray:
    rows, cols = shape
    return np.ascontiguousarray(raw).reshape(rows, cols // GROUP_SIZE, block_bytes)


def _f16_field(blocks: np.ndarray, start: int) -> np.ndarray:
    return np.ascontiguousarray(blocks[..., start : start + 2]).view(np.float16)[..., 0]


def _pack_nibbles(codes: np.ndarray, shape: tuple[int, ...]) -> mx.array:
    """Pack 4-bit codes (rows, groups, 32) the way MLX does: element i of a row in
    bits 4*(i % 8) of word i // 8, little-endian."""
    rows, cols = shape
    codes = codes.reshape(rows, cols).astype(np.uint8)
    packed = codes[:, 0::2] | (codes[:, 1::2] << 4)
    return mx.array(np.ascontiguousarray(packed).view(np.uint32))


def _ggml_nibbles(quants: np.ndarray) -> np.ndarray:
    """GGML 4-bit blocks store element j in the low nibble of byte j and element
    j + 16 in the high nibble."""
    return np.concatenate([quants & 0x0F, quants >> 4], axis=-1)


def _repack_q8_0(raw: np.ndarray, shape: tuple[int, ...]) -> tuple[mx.array, ...]:
    # Block: f16 scale d, 32 x int8 q; value = d * q = d * (q + 128) - 128 d.
    blocks = _blocks(raw, shape, 34)
    d = _f16_field(blocks, 0)
    codes = (blocks[..., 2:].view(np.int8).astype(np.int16) + 128).astype(np.uint8)
    weight = mx.array(np.ascontiguousarray(codes.reshape(shape[0], -1)).view(np.uint32))
    return weight, mx.array(d), mx.array(d * np.float16(-128))


def _repack_q4_0(raw: np.ndarray, shape: tuple[int, ...]) -> tuple[mx.array, ...]:
    # Block: f16 scale d, 16 bytes of nibbles q; value = d * (q - 8).
    blocks = _blocks(raw, shape, 18)
    d = _f16_field(blocks, 0)
    codes = _ggml_nibbles(blocks[..., 2:])
    return _pack_nibbles(codes, shape), mx.array(d), mx.array(d * np.float16(-8))


def _repack_q4_1(raw: np.ndarray, shape: tuple[int, ...]) -> tuple[mx.array, ...]:
    # Block: f16 scale d, f16 minimum m, 16 bytes of nibbles q; value = d * q + m.
    blocks = _blocks(raw, shape, 20)
    d = _f16_field(blocks, 0)
    m = _f16_field(blocks, 2)
    codes = _ggml_nibbles(blocks[..., 4:])
    return _pack_nibbles(codes, shape), mx.array(d), mx.array(m)


_REPACKERS = {"Q8_0": _repack_q8_0, "Q4_0": _repack_q4_0, "Q4_1": _repack_q4_1}


def describe_quantization(tensor_types: Counter, layer_bits: dict[str, int | None]) -> str:
    """A one-line summary such as "Q4_1 (4-bit layers, 8-bit embedding)".

    `tensor_types` counts GGUF types of matrix tensors; `layer_bits` maps module paths
    to the bits they were loaded with (None: float)."""
    if not tensor_types:
        return "unknown"
    dominant = tensor_types.most_common(1)[0][0]
    embed = next((b for p, b in layer_bits.items() if p.endswith("embed_tokens")), None)
    layer_widths = sorted(
        {b for p, b in layer_bits.items() if b is not None and not p.endswith("embed_tokens")}
    )
    parts = []
    if layer_widths:
        parts.append("/".join(str(b) for b in layer_widths) + "-bit layers")
    elif layer_bits:
        parts.append("float layers")
    parts.append(f"{embed}-bit embedding" if embed is not None else "float embedding")
    return f"{dominant} ({', '.join(parts)})"
