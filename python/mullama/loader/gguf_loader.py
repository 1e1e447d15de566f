"""GGUF file -> LoadedModel holding an mlx-lm model.

Quantized GGUF tensors stay quantized: the mlx-lm model is built in float, each of
its Linear/Embedding modules whose tensor arrived quantized is swapped for the
quantized module at that tensor's bit width, and the weights are loaded strictly.
"""

from __future__ import annotations

import importlib
from collections import Counter
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.utils import dequantize_model

from mullama._core import GgufFile, GgufTensor, ModelLoadError
from mullama.loader.gguf_check import open_gguf
from mullama.loader.gguf_config import ARCHITECTURES, ArchitectureSpec, architecture_spec
from mullama.loader.gguf_names import IGNORED_TENSORS, module_path
from mullama.loader.loaded_model import LoadedModel, use_device_dtype
from mullama.loader.quant import (
    GROUP_SIZE,
    MLX_NATIVE_TYPES,
    ConvertedTensor,
    affine_bits,
    check_supported,
    convert_raw,
    describe_quantization,
    tensor_bytes,
)

SUPPORTED_ARCHITECTURES = tuple(sorted(ARCHITECTURES))


def load_gguf(path: str | Path | GgufFile, *, keep_quantized: bool = True) -> LoadedModel:
    """Load a GGUF model. Raises ModelLoadError naming the problem for a missing or
    malformed file, an unsupported architecture or an unsupported tensor type.

    keep_quantized=False expands quantized weights to float after loading: several
    times the memory, but dense matmuls, which are far faster than MLX's CPU quantized
    kernels for prompt processing when MLX uses an optimized BLAS.

    The header is parsed once, by the core's reader; the result travels on as
    `LoadedModel.gguf` so that the tokenizer is built from it without a second parse
    (pass an already parsed GgufFile to reuse its parse)."""
    gguf = path if isinstance(path, GgufFile) else open_gguf(path)
    path = Path(gguf.path)
    spec = architecture_spec(gguf)

    tensors = {t.name: t for t in gguf.tensors if t.name not in IGNORED_TENSORS}
    for info in tensors.values():
        check_supported(info.name, info.type)
    targets = {name: module_path(gguf.architecture, name) for name in tensors}

    config = spec.build_config(gguf)
    converted = _read_tensors(gguf, tensors)

    weights: dict[str, mx.array] = {}
    layer_bits: dict[str, int | None] = {}
    for name, tensor in converted.items():
        module, param = targets[name]
        if param == "weight":
            layer_bits[module] = tensor.bits
            for suffix, array in tensor.arrays.items():
                weights[f"{module}.{suffix}"] = array
        else:
            weights[f"{module}.{param}"] = tensor.arrays["weight"]
    if spec.norm_weight_offset:
        _shift_norm_weights(weights, spec.norm_weight_offset)

    model = _build_model(spec, config, path)
    weights = model.sanitize(weights) if hasattr(model, "sanitize") else weights
    quantized = {m: b for m, b in layer_bits.items() if b is not None}
    nn.quantize(
        model,
        class_predicate=lambda p, _m: (
            {"group_size": GROUP_SIZE, "bits": quantized[p]} if p in quantized else False
        ),
    )
    try:
        model.load_weights(list(weights.items()), strict=True)
    except ValueError as exc:
        raise ModelLoadError(
            f"GGUF file {path} does not fit the mlx-lm {spec.mlx_model_type} model: "
            + " ".join(str(exc).split())
        ) from exc
    model.eval()
    use_device_dtype(model)
    if not keep_quantized:
        # After widening the scales, so that the expanded weights are not rounded to f16.
        model = dequantize_model(model)
        mx.eval(model.parameters())

    matrix_types = Counter(info.type for info in tensors.values() if len(info.shape) == 2)
    return LoadedModel(
        model=model,
        architecture=gguf.architecture,
        metadata=gguf.metadata,
        n_ctx_train=config["max_position_embeddings"],
        n_vocab=config["vocab_size"],
        path=path,
        quantization=describe_quantization(matrix_types, layer_bits),
        source="gguf",
        config=config,
        gguf=gguf,
    )


def _read_tensors(gguf: GgufFile, tensors: dict[str, GgufTensor]) -> dict[str, ConvertedTensor]:
    if all(info.type in MLX_NATIVE_TYPES for info in tensors.values()):
        return _read_with_mlx(gguf, tensors)
    return {
        name: convert_raw(name, info.type, tensor_bytes(gguf, info), info.shape)
        for name, info in tensors.items()
    }


def _read_with_mlx(gguf: GgufFile, tensors: dict[str, GgufTensor]) -> dict[str, ConvertedTensor]:
    """MLX's reader returns quantized tensors as `<base>.weight/.scales/.biases`. It
    trusts the file, so it only ever sees one the core's reader has checked."""
    try:
        arrays = mx.load(str(gguf.path), format="gguf")
    except (RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"MLX could not read GGUF file {gguf.path}: {exc}") from exc
    converted = {}
    for name in tensors:
        base = name.removesuffix(".weight")
        scales = arrays.get(f"{base}.scales")
        if name.endswith(".weight") and scales is not None:
            weight = arrays[name]
            converted[name] = ConvertedTensor(
                {"weight": weight, "scales": scales, "biases": arrays[f"{base}.biases"]},
                affine_bits(weight, scales),
            )
        elif name in arrays:
            converted[name] = ConvertedTensor({"weight": arrays[name]}, None)
        else:
            raise ModelLoadError(f"MLX did not return tensor {name} from {gguf.path}")
    return converted


def _shift_norm_weights(weights: dict[str, Any], offset: float) -> None:
    for key, value in weights.items():
        if key.endswith("norm.weight"):
            weights[key] = value + offset


def _build_model(spec: ArchitectureSpec, config: dict[str, Any], path: Path) -> nn.Module:
    module = importlib.import_module(f"mlx_lm.models.{spec.mlx_model_type}")
    try:
        args = module.ModelArgs.from_dict(config)
        return module.Model(args)
    except (TypeError, ValueError, AssertionError) as exc:
        raise ModelLoadError(
            f"cannot build the mlx-lm {spec.mlx_model_type} model for {path}: {exc}"
        ) from exc
