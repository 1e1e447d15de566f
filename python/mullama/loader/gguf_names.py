"""GGUF tensor names -> mlx-lm module paths.

llama.cpp names tensors `blk.<i>.<part>.<weight|bias>` plus a few globals; mlx-lm
follows the Hugging Face layout (`model.layers.<i>.self_attn.q_proj`). The block parts
differ a little between architectures (Gemma 3 has four norms per block).
"""

from __future__ import annotations

import re

from mullama._core import ModelLoadError

_GLOBAL_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}

_LLAMA_BLOCK = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}

_QK_NORMS = {
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
}

_GEMMA3_BLOCK = {
    **_LLAMA_BLOCK,
    **_QK_NORMS,
    "ffn_norm": "pre_feedforward_layernorm",
    "post_attention_norm": "post_attention_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
}

BLOCK_NAMES: dict[str, dict[str, str]] = {
    "llama": _LLAMA_BLOCK,
    "qwen2": _LLAMA_BLOCK,
    "qwen3": {**_LLAMA_BLOCK, **_QK_NORMS},
    "gemma3": _GEMMA3_BLOCK,
}

# Tensors llama.cpp stores for its own use that have no module in mlx-lm
# (rope_freqs: precomputed Llama 3 rope factors, derived from metadata instead).
IGNORED_TENSORS = frozenset({"rope_freqs.weight"})

_BLOCK_RE = re.compile(r"^blk\.(\d+)\.([a-z0-9_]+)\.(weight|bias)$")
_GLOBAL_RE = re.compile(r"^([a-z0-9_]+)\.(weight|bias)$")


def module_path(architecture: str, gguf_name: str) -> tuple[str, str]:
    """(module path, parameter) for a GGUF tensor name, e.g.
    ("model.layers.3.self_attn.q_proj", "weight") for "blk.3.attn_q.weight"."""
    block = _BLOCK_RE.match(gguf_name)
    if block:
        index, part, param = block.groups()
        target = BLOCK_NAMES[architecture].get(part)
        if target is not None:
            return f"model.layers.{index}.{target}", param
    else:
        glob = _GLOBAL_RE.match(gguf_name)
        if glob and glob.group(1) in _GLOBAL_NAMES:
            return _GLOBAL_NAMES[glob.group(1)], glob.group(2)
    raise ModelLoadError(
        f"GGUF tensor {gguf_name} has no counterpart in the mlx-lm {architecture} model"
    )
