"""Tiny random-weight Llama-family models (llama, qwen2, qwen3) for fast tests, written
both as a GGUF file and as an MLX/Hugging Face safetensors folder from the same weights.

The vocabulary is a small byte-level BPE (GPT-2 byte alphabet, a few English merges,
ChatML control tokens) so tokenizers and chat templates can be exercised end to end.
The output projection is scaled up so greedy predictions are clearly peaked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import mlx.core as mx
import numpy as np
from gguf import GGMLQuantizationType as GT

CONTROL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
BOS_ID = 1  # <|im_start|>, as in SmolLM2
EOS_ID = 2  # <|im_end|>

MERGES = (
    "Ġ t", "Ġ a", "h e", "i n", "r e", "o n", "Ġt he", "e r", "Ġ s", "a t", "Ġ w", "Ġ o",
    "e n", "Ġ c", "i s", "i t", "o r", "e s", "Ġ b", "a n", "Ġ f", "Ġ p", "o u", "Ġ m",
    "a r", "Ġ h", "l l", "Ġ d", "Ġ i", "in g", "Ġ l", "Ġ n", "e d", "Ġt o", "n d", "Ġa nd", "Ġo f",
    "Ġ H", "e l", "el l", "ell o",
)  # fmt: skip

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Digits are split one by one before byte-level pre-tokenization, as SmolLM2 does.
_PRE_TOKENIZER = {
    "type": "Sequence",
    "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
    ],
}


def byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def tiny_vocab() -> list[str]:
    """Control tokens, then the 256 byte characters in byte order, then merge results."""
    byte_chars = byte_to_unicode()
    tokens = [*CONTROL_TOKENS, *(byte_chars[b] for b in range(256))]
    known = set(tokens)
    for merge in MERGES:
        left, right = merge.split(" ")
        if left not in known or right not in known:
            raise ValueError(f"merge {merge!r} uses a token not yet in the vocabulary")
        tokens.append(left + right)
        known.add(left + right)
    return tokens


@dataclass(frozen=True)
class TinyConfig:
    architecture: str = "llama"  # or "qwen2" (q/k/v biases), "qwen3" (q/k norms)
    n_layers: int = 2
    hidden: int = 64
    n_heads: int = 4
    n_kv_heads: int = 2
    intermediate: int = 128
    context_length: int = 256
    rope_theta: float = 10000.0
    rms_eps: float = 1e-5
    tied: bool = False
    seed: int = 0
    output_scale: float = 4.0  # makes greedy choices clear-cut
    ends: bool = True
    """False: the output rows of <|endoftext|> and <|im_end|> are zero, so their logits are 0,
    below the top one: greedy replies never end on their own (for tests of long streams)."""
    vocab: list[str] = field(default_factory=tiny_vocab)

    @property
    def head_dim(self) -> int:
        return self.hidden // self.n_heads

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)


def tiny_weights(cfg: TinyConfig) -> dict[str, np.ndarray]:
    """Random float32 weights under Hugging Face Llama names."""
    rng = np.random.default_rng(cfg.seed)

    def matrix(rows: int, cols: int, scale: float = 1.0) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * scale / np.sqrt(cols)).astype(np.float32)

    def norm(n: int) -> np.ndarray:
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    h, kv = cfg.hidden, cfg.n_kv_heads * cfg.head_dim
    w = {"model.embed_tokens.weight": rng.standard_normal((cfg.vocab_size, h)).astype(np.float32)}
    for i in range(cfg.n_layers):
        p = f"model.layers.{i}"
        w[f"{p}.input_layernorm.weight"] = norm(h)
        w[f"{p}.self_attn.q_proj.weight"] = matrix(h, h)
        w[f"{p}.self_attn.k_proj.weight"] = matrix(kv, h)
        w[f"{p}.self_attn.v_proj.weight"] = matrix(kv, h)
        w[f"{p}.self_attn.o_proj.weight"] = matrix(h, h)
        w[f"{p}.post_attention_layernorm.weight"] = norm(h)
        w[f"{p}.mlp.gate_proj.weight"] = matrix(cfg.intermediate, h)
        w[f"{p}.mlp.up_proj.weight"] = matrix(cfg.intermediate, h)
        w[f"{p}.mlp.down_proj.weight"] = matrix(h, cfg.intermediate)
        if cfg.architecture == "qwen2":
            w[f"{p}.self_attn.q_proj.bias"] = (0.1 * rng.standard_normal(h)).astype(np.float32)
            w[f"{p}.self_attn.k_proj.bias"] = (0.1 * rng.standard_normal(kv)).astype(np.float32)
            w[f"{p}.self_attn.v_proj.bias"] = (0.1 * rng.standard_normal(kv)).astype(np.float32)
        if cfg.architecture == "qwen3":
            w[f"{p}.self_attn.q_norm.weight"] = norm(cfg.head_dim)
            w[f"{p}.self_attn.k_norm.weight"] = norm(cfg.head_dim)
    w["model.norm.weight"] = norm(h)
    if not cfg.tied:
        w["lm_head.weight"] = matrix(cfg.vocab_size, h, cfg.output_scale)
    if not cfg.ends:
        if cfg.tied:
            raise ValueError("TinyConfig(ends=False) needs an untied output matrix (tied=False)")
        w["lm_head.weight"][[CONTROL_TOKENS.index("<|endoftext|>"), EOS_ID]] = 0.0
    return w


def permute_for_interleaved_rope(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """Reorder Q/K rows from half-split rotary pairs (HF) to adjacent pairs, as
    llama.cpp's converter does for Llama models."""
    rows = weight.shape[0]
    return (
        weight.reshape(n_heads, 2, rows // n_heads // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


_GGUF_BLOCK_NAMES = {
    "input_layernorm": "attn_norm",
    "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def _gguf_name(hf_name: str) -> str:
    base, param = hf_name.rsplit(".", 1)
    if base == "model.embed_tokens":
        return "token_embd.weight"
    if base == "model.norm":
        return "output_norm.weight"
    if base == "lm_head":
        return "output.weight"
    _, _, index, part = base.split(".", 3)
    return f"blk.{index}.{_GGUF_BLOCK_NAMES[part]}.{param}"


def write_tiny_gguf(
    path: str | Path,
    cfg: TinyConfig | None = None,
    *,
    layer_type: GT = GT.F32,
    embedding_type: GT | None = None,
    skip_tensors: frozenset[str] = frozenset(),
) -> Path:
    """Write the tiny model as GGUF. Matrices use `layer_type` (the embedding
    `embedding_type`, default the same); norms stay F32. Tensors named (GGUF names)
    in `skip_tensors` are left out, to make broken files for tests."""
    cfg = cfg or TinyConfig()
    path = Path(path)
    embedding_type = embedding_type or layer_type
    arch = cfg.architecture
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name("mullama tiny test model")
    writer.add_uint32(f"{arch}.block_count", cfg.n_layers)
    writer.add_uint32(f"{arch}.context_length", cfg.context_length)
    writer.add_uint32(f"{arch}.embedding_length", cfg.hidden)
    writer.add_uint32(f"{arch}.feed_forward_length", cfg.intermediate)
    writer.add_uint32(f"{arch}.attention.head_count", cfg.n_heads)
    writer.add_uint32(f"{arch}.attention.head_count_kv", cfg.n_kv_heads)
    writer.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", cfg.rms_eps)
    writer.add_float32(f"{arch}.rope.freq_base", cfg.rope_theta)
    writer.add_uint32(f"{arch}.rope.dimension_count", cfg.head_dim)
    writer.add_uint32(f"{arch}.vocab_size", cfg.vocab_size)
    _add_tokenizer(writer, cfg)

    for hf_name, value in tiny_weights(cfg).items():
        if arch == "llama" and hf_name.endswith("q_proj.weight"):
            value = permute_for_interleaved_rope(value, cfg.n_heads)
        elif arch == "llama" and hf_name.endswith("k_proj.weight"):
            value = permute_for_interleaved_rope(value, cfg.n_kv_heads)
        gguf_name = _gguf_name(hf_name)
        if gguf_name in skip_tensors:
            continue
        if value.ndim == 1:
            qtype = GT.F32
        elif hf_name == "model.embed_tokens.weight":
            qtype = embedding_type
        else:
            qtype = layer_type
        _add_tensor(writer, gguf_name, value, qtype)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _add_tensor(writer: gguf.GGUFWriter, name: str, value: np.ndarray, qtype: GT) -> None:
    if qtype == GT.F32:
        writer.add_tensor(name, value)
    elif qtype == GT.F16:
        writer.add_tensor(name, value.astype(np.float16))
    else:
        writer.add_tensor(name, gguf.quants.quantize(value, qtype), raw_dtype=qtype)


def _add_tokenizer(writer: gguf.GGUFWriter, cfg: TinyConfig) -> None:
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(cfg.vocab)
    control = set(CONTROL_TOKENS)
    writer.add_token_types(
        [gguf.TokenType.CONTROL if tok in control else gguf.TokenType.NORMAL for tok in cfg.vocab]
    )
    writer.add_token_merges(list(MERGES))
    writer.add_bos_token_id(BOS_ID)
    writer.add_eos_token_id(EOS_ID)
    writer.add_unk_token_id(0)
    writer.add_pad_token_id(EOS_ID)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)


_HF_ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
}


def write_tiny_mlx_folder(path: str | Path, cfg: TinyConfig | None = None) -> Path:
    """Write the tiny model as a float32 safetensors folder mlx-lm can load."""
    cfg = cfg or TinyConfig()
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = {
        "model_type": cfg.architecture,
        "architectures": [_HF_ARCHITECTURES[cfg.architecture]],
        "hidden_size": cfg.hidden,
        "num_hidden_layers": cfg.n_layers,
        "intermediate_size": cfg.intermediate,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "rms_norm_eps": cfg.rms_eps,
        "rope_theta": cfg.rope_theta,
        "max_position_embeddings": cfg.context_length,
        "vocab_size": cfg.vocab_size,
        "tie_word_embeddings": cfg.tied,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "torch_dtype": "float32",
    }
    (path / "config.json").write_text(json.dumps(config, indent=2))
    weights = {name: mx.array(value) for name, value in tiny_weights(cfg).items()}
    mx.save_safetensors(str(path / "model.safetensors"), weights, metadata={"format": "mlx"})
    (path / "tokenizer.json").write_text(json.dumps(tokenizer_json(cfg), ensure_ascii=False))
    tokenizer_config = {
        "bos_token": CONTROL_TOKENS[BOS_ID],
        "eos_token": CONTROL_TOKENS[EOS_ID],
        "unk_token": CONTROL_TOKENS[0],
        "pad_token": CONTROL_TOKENS[EOS_ID],
        "add_bos_token": False,
        "chat_template": CHAT_TEMPLATE,
        "model_max_length": cfg.context_length,
        "tokenizer_class": "GPT2Tokenizer",
    }
    (path / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    return path


def tokenizer_json(cfg: TinyConfig) -> dict:
    """A Hugging Face tokenizers byte-level BPE description of the tiny vocabulary."""
    special = set(CONTROL_TOKENS)
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": i,
                "content": tok,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for i, tok in enumerate(cfg.vocab)
            if tok in special
        ],
        "normalizer": None,
        "pre_tokenizer": _PRE_TOKENIZER,
        "post_processor": None,
        "decoder": {
            "type": "ByteLevel",
            "add_prefix_space": True,
            "trim_offsets": True,
            "use_regex": True,
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {tok: i for i, tok in enumerate(cfg.vocab)},
            "merges": list(MERGES),
        },
    }
