"""GGUF metadata -> mlx-lm model configuration, per architecture.

Each supported architecture names the mlx-lm module that implements it and turns
`<arch>.*` metadata into the config dict that module's `ModelArgs.from_dict` takes,
plus the conventions llama.cpp's converter baked into the weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mullama._core import GgufFile, ModelLoadError
from mullama.loader.quant import tensor_bytes


@dataclass(frozen=True)
class ArchitectureSpec:
    mlx_model_type: str  # the mlx_lm.models.<name> module
    build_config: Callable[[GgufFile], dict[str, Any]]
    # llama.cpp stores Gemma norm weights as (1 + w); mlx-lm adds the 1 at run time.
    norm_weight_offset: float = 0.0


def _meta(gguf: GgufFile, key: str, default: Any = None, *, required: bool = False) -> Any:
    arch = gguf.architecture
    value = gguf.get(f"{arch}.{key}", default)
    if value is None and required:
        raise ModelLoadError(f"GGUF file {gguf.path} lacks required metadata {arch}.{key}")
    return value


def _rows(gguf: GgufFile, name: str) -> int:
    info = gguf.tensor(name)
    if info is None:
        raise ModelLoadError(f"GGUF file {gguf.path} has no tensor {name}")
    return info.shape[0]


def _common_config(gguf: GgufFile) -> dict[str, Any]:
    hidden = int(_meta(gguf, "embedding_length", required=True))
    heads = int(_meta(gguf, "attention.head_count", required=True))
    kv_heads = _meta(gguf, "attention.head_count_kv", heads)
    if isinstance(kv_heads, list):
        raise ModelLoadError(
            f"GGUF file {gguf.path} has per-layer kv head counts, which are not supported"
        )
    head_dim = int(_meta(gguf, "attention.key_length", hidden // heads))
    rope_dims = int(_meta(gguf, "rope.dimension_count", head_dim))
    if rope_dims != head_dim:
        raise ModelLoadError(
            f"GGUF file {gguf.path} rotates {rope_dims} of {head_dim} head dimensions; "
            "partial rotary embeddings are not supported"
        )
    return {
        "hidden_size": hidden,
        "num_hidden_layers": int(_meta(gguf, "block_count", required=True)),
        "intermediate_size": int(_meta(gguf, "feed_forward_length", required=True)),
        "num_attention_heads": heads,
        "num_key_value_heads": int(kv_heads),
        "head_dim": head_dim,
        "rms_norm_eps": float(_meta(gguf, "attention.layer_norm_rms_epsilon", 1e-5)),
        # The embedding matrix, not the tokenizer, fixes the logit width.
        "vocab_size": _rows(gguf, "token_embd.weight"),
        "max_position_embeddings": int(_meta(gguf, "context_length", 4096)),
        "rope_theta": float(_meta(gguf, "rope.freq_base", 10000.0)),
        "tie_word_embeddings": gguf.tensor("output.weight") is None,
        "rope_scaling": _rope_scaling(gguf, head_dim),
    }


def _rope_scaling(gguf: GgufFile, head_dim: int) -> dict[str, Any] | None:
    if gguf.tensor("rope_freqs.weight") is not None:
        return _llama3_rope_scaling(gguf, head_dim)
    kind = _meta(gguf, "rope.scaling.type", "none")
    factor = _meta(gguf, "rope.scaling.factor")
    if kind == "none" or factor in (None, 0.0, 1.0):
        return None
    if kind == "linear":
        return {"rope_type": "linear", "factor": float(factor)}
    if kind == "yarn":
        original = _meta(gguf, "rope.scaling.original_context_length", required=True)
        return {
            "rope_type": "yarn",
            "factor": float(factor),
            "original_max_position_embeddings": int(original),
        }
    raise ModelLoadError(f"GGUF file {gguf.path} uses unsupported rope scaling {kind!r}")


# Llama 3.x releases used these; llama.cpp keeps only the resulting per-frequency
# divisors (rope_freqs), so the parameters are recovered by matching them.
_LLAMA3_CANDIDATES = [
    {"factor": f, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "orig": 8192}
    for f in (8.0, 32.0, 16.0, 4.0)
]


def _llama3_divisors(head_dim: int, base: float, p: dict[str, Any]) -> np.ndarray:
    freqs = base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    wavelen = 2 * math.pi / freqs
    low_wavelen = p["orig"] / p["low_freq_factor"]
    high_wavelen = p["orig"] / p["high_freq_factor"]
    smooth = (p["orig"] / wavelen - p["low_freq_factor"]) / (
        p["high_freq_factor"] - p["low_freq_factor"]
    )
    mid = 1.0 / ((1 - smooth) / p["factor"] + smooth)
    return np.where(wavelen < high_wavelen, 1.0, np.where(wavelen > low_wavelen, p["factor"], mid))


def _llama3_rope_scaling(gguf: GgufFile, head_dim: int) -> dict[str, Any]:
    info = gguf.tensor("rope_freqs.weight")
    stored = tensor_bytes(gguf, info).view(np.float32).reshape(-1)
    base = float(_meta(gguf, "rope.freq_base", 10000.0))
    for p in _LLAMA3_CANDIDATES:
        expected = _llama3_divisors(head_dim, base, p)
        if expected.shape == stored.shape and np.allclose(expected, stored, rtol=1e-3):
            return {
                "rope_type": "llama3",
                "factor": p["factor"],
                "low_freq_factor": p["low_freq_factor"],
                "high_freq_factor": p["high_freq_factor"],
                "original_max_position_embeddings": p["orig"],
            }
    raise ModelLoadError(
        f"GGUF file {gguf.path} has rope_freqs factors that match no known Llama 3 scaling"
    )


def _llama_config(gguf: GgufFile) -> dict[str, Any]:
    config = _common_config(gguf)
    config.update(
        model_type="llama",
        # llama.cpp permutes Llama Q/K rows for interleaved ("traditional") RoPE.
        rope_traditional=True,
        attention_bias=gguf.tensor("blk.0.attn_q.bias") is not None,
        mlp_bias=gguf.tensor("blk.0.ffn_up.bias") is not None,
    )
    return config


def _qwen2_config(gguf: GgufFile) -> dict[str, Any]:
    config = _common_config(gguf)
    config["model_type"] = "qwen2"
    return config


def _qwen3_config(gguf: GgufFile) -> dict[str, Any]:
    config = _common_config(gguf)
    config["model_type"] = "qwen3"
    return config


def _gemma3_config(gguf: GgufFile) -> dict[str, Any]:
    config = _common_config(gguf)
    head_dim = config["head_dim"]
    # llama.cpp: the 27B model scales queries by hidden/heads, the others by head_dim.
    if config["num_hidden_layers"] == 62:
        query_scale = config["hidden_size"] / config["num_attention_heads"]
    else:
        query_scale = head_dim
    config.update(
        model_type="gemma3_text",
        query_pre_attn_scalar=query_scale,
        sliding_window=int(_meta(gguf, "attention.sliding_window", 512)),
        # Fixed by the Gemma 3 design; llama.cpp hard-codes the same values.
        sliding_window_pattern=6,
        rope_local_base_freq=float(_meta(gguf, "rope.freq_base_swa", 10000.0)),
    )
    return config


ARCHITECTURES: dict[str, ArchitectureSpec] = {
    "llama": ArchitectureSpec("llama", _llama_config),
    "qwen2": ArchitectureSpec("qwen2", _qwen2_config),
    "qwen3": ArchitectureSpec("qwen3", _qwen3_config),
    "gemma3": ArchitectureSpec("gemma3_text", _gemma3_config, norm_weight_offset=-1.0),
}


def architecture_spec(gguf: GgufFile) -> ArchitectureSpec:
    arch = gguf.architecture
    if arch is None:
        raise ModelLoadError(f"GGUF file {gguf.path} lacks general.architecture")
    spec = ARCHITECTURES.get(arch)
    if spec is None:
        raise ModelLoadError(
            f"GGUF file {gguf.path} has unsupported architecture {arch!r}; "
            f"supported: {', '.join(sorted(ARCHITECTURES))}"
        )
    return spec
