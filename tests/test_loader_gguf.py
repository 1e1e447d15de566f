"""GGUF -> mlx-lm: weights land where they belong, quantized tensors keep their exact
values, and the GGUF and safetensors copies of one model compute the same logits."""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from gguf import GGMLQuantizationType
from gguf.quants import dequantize

from mullama._core import GgufFile
from mullama.loader import LoadedModel, load_gguf, load_mlx_folder
from mullama.loader.gguf_names import module_path
from mullama.loader.quant import tensor_bytes
from mullama.testing.tiny_models import BOS_ID, CHAT_TEMPLATE, EOS_ID, TinyConfig

IDS = [BOS_ID, 75, 72, 79, 79, 82, 35, 259, 270, 280, 290, 298, 5, 6, 7, 8]


@pytest.fixture(scope="module")
def reference_logits(tiny_mlx_folder: Path) -> np.ndarray:
    return load_mlx_folder(tiny_mlx_folder).forward(IDS)


def test_f32_gguf_matches_the_safetensors_folder(tiny_gguf: Path, reference_logits):
    """Same weights; the GGUF has llama.cpp's permuted Q/K, read with interleaved RoPE."""
    logits = load_gguf(tiny_gguf).forward(IDS)
    np.testing.assert_allclose(logits, reference_logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "variant, max_abs_err, min_argmax_agreement",
    [("f16", 0.05, 1.0), ("bf16", 0.3, 1.0), ("q8_0", 0.5, 0.85), ("q4_1", 4.0, 0.5)],
)
def test_lower_precision_ggufs_stay_close(
    tiny_gguf_variants, reference_logits, variant, max_abs_err, min_argmax_agreement
):
    logits = load_gguf(tiny_gguf_variants[variant]).forward(IDS)
    assert np.abs(logits - reference_logits).max() < max_abs_err
    agreement = (logits.argmax(-1) == reference_logits.argmax(-1)).mean()
    assert agreement >= min_argmax_agreement


def _module(model: nn.Module, path: str) -> nn.Module:
    node = model
    for part in path.split("."):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    return node


def _loaded_weight(module: nn.Module) -> np.ndarray:
    if hasattr(module, "scales"):
        w = mx.dequantize(
            module.weight, module.scales, module.biases, module.group_size, module.bits
        )
    else:
        w = module.weight
    return np.array(w.astype(mx.float32))


@pytest.mark.parametrize("variant", ["q8_0", "q4_0", "q4_1", "f16", "q5_0"])
def test_every_tensor_keeps_its_gguf_values(tiny_gguf_variants, variant):
    """Q8_0/Q4_0/Q4_1 carry over bit for bit (MLX reads them natively); Q5_0 goes through
    dequantize + 8-bit re-quantization and stays within its rounding error."""
    path = tiny_gguf_variants[variant]
    loaded = load_gguf(path)
    gguf_file = GgufFile.open(path)
    for info in gguf_file.tensors:
        raw = tensor_bytes(gguf_file, info)
        expected = dequantize(raw, GGMLQuantizationType[info.type]).reshape(info.shape)
        module_name, _ = module_path("llama", info.name)
        actual = _loaded_weight(_module(loaded.model, module_name))
        if variant == "q5_0" and info.type == "Q5_0":
            step = np.abs(expected).max() / 127
            np.testing.assert_allclose(actual, expected, atol=step, err_msg=info.name)
        else:
            np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6, err_msg=info.name)


def test_own_repacking_equals_mlx_native_reading(tiny_gguf_variants, monkeypatch):
    """The pure-numpy path (used for files MLX cannot read) gives the same model as
    MLX's GGUF reader on a file both can read."""
    import mullama.loader.gguf_loader as gguf_loader

    path = tiny_gguf_variants["q4_1"]
    native = load_gguf(path).forward(IDS)
    monkeypatch.setattr(gguf_loader, "MLX_NATIVE_TYPES", frozenset())
    repacked = load_gguf(path)
    np.testing.assert_array_equal(repacked.forward(IDS), native)


def test_quantized_layers_get_the_bits_of_their_tensors(tiny_gguf_q4: Path):
    loaded = load_gguf(tiny_gguf_q4)
    inner = loaded.model.model
    assert isinstance(inner.embed_tokens, nn.QuantizedEmbedding)
    assert inner.embed_tokens.bits == 8
    layer = inner.layers[0]
    for linear in (layer.self_attn.q_proj, layer.mlp.down_proj):
        assert isinstance(linear, nn.QuantizedLinear)
        assert (linear.bits, linear.group_size) == (4, 32)
    assert loaded.quantization == "Q4_1 (4-bit layers, 8-bit embedding)"


def test_loaded_model_description(tiny_gguf_q4: Path):
    loaded = load_gguf(tiny_gguf_q4)
    cfg = TinyConfig()
    assert isinstance(loaded, LoadedModel)
    assert loaded.source == "gguf"
    assert loaded.architecture == "llama"
    assert loaded.n_vocab == cfg.vocab_size
    assert loaded.n_ctx_train == cfg.context_length
    assert loaded.path == tiny_gguf_q4
    assert loaded.config["rope_traditional"] is True
    assert loaded.config["tie_word_embeddings"] is False
    meta = loaded.metadata
    assert meta["tokenizer.chat_template"] == CHAT_TEMPLATE
    assert meta["tokenizer.ggml.bos_token_id"] == BOS_ID
    assert meta["tokenizer.ggml.eos_token_id"] == EOS_ID
    assert meta["tokenizer.ggml.tokens"][:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert meta["llama.block_count"] == cfg.n_layers


def test_tied_embeddings_when_there_is_no_output_tensor(tmp_path: Path):
    from mullama.testing.tiny_models import write_tiny_gguf, write_tiny_mlx_folder

    cfg = TinyConfig(tied=True, seed=3)
    gguf_model = load_gguf(write_tiny_gguf(tmp_path / "tied.gguf", cfg))
    assert gguf_model.config["tie_word_embeddings"] is True
    assert not hasattr(gguf_model.model, "lm_head")
    folder_model = load_mlx_folder(write_tiny_mlx_folder(tmp_path / "tied", cfg))
    np.testing.assert_allclose(
        gguf_model.forward(IDS), folder_model.forward(IDS), atol=1e-4, rtol=1e-4
    )


def test_vocabulary_sized_metadata_is_summarised(smollm2_model):
    meta = smollm2_model.metadata
    summary = {"type": "array", "element_type": "string"}
    assert meta["tokenizer.ggml.tokens"] == {**summary, "length": 49152}
    assert meta["tokenizer.ggml.merges"] == {**summary, "length": 48900}
    assert meta["general.architecture"] == "llama"
    assert "<|im_start|>" in meta["tokenizer.chat_template"]


def test_smollm2_description(smollm2_model):
    assert smollm2_model.quantization == "Q4_1 (4-bit layers, 8-bit embedding)"
    assert (smollm2_model.n_vocab, smollm2_model.n_ctx_train) == (49152, 8192)
    assert smollm2_model.config["tie_word_embeddings"] is True


def test_forward_rejects_bad_ids(tiny_gguf: Path):
    loaded = load_gguf(tiny_gguf)
    with pytest.raises(ValueError, match="at least one"):
        loaded.forward([])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        loaded.forward([1, loaded.n_vocab])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        loaded.forward([-1])


def test_incremental_decoding_with_the_cache_matches_one_pass(tiny_gguf_q4: Path):
    loaded = load_gguf(tiny_gguf_q4)
    full = loaded.forward(IDS)
    cache = loaded.make_cache()
    prefix = 5
    first = loaded.model(mx.array([IDS[:prefix]]), cache=cache)[0]
    steps = [first[-1]]
    for token in IDS[prefix:]:
        steps.append(loaded.model(mx.array([[token]]), cache=cache)[0, -1])
    incremental = np.array(mx.stack(steps).astype(mx.float32))
    np.testing.assert_allclose(incremental, full[prefix - 1 :], atol=1e-3, rtol=1e-3)


def test_tiny_model_predictions_are_peaked(tiny_gguf: Path):
    logits = load_gguf(tiny_gguf).forward(IDS)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    assert np.median(probs.max(-1)) > 0.3


def test_a_tiny_model_that_never_ends_scores_its_end_tokens_below_the_top(tmp_path: Path):
    """TinyConfig(ends=False): the end-of-text tokens' logits are 0 everywhere, never the top
    one, so greedy replies run to max_tokens; the other weights are the default model's."""
    from mullama.testing.tiny_models import CONTROL_TOKENS, write_tiny_gguf

    endless = load_gguf(write_tiny_gguf(tmp_path / "endless.gguf", TinyConfig(ends=False)))
    logits = endless.forward(IDS)
    ends = [CONTROL_TOKENS.index("<|endoftext|>"), EOS_ID]
    np.testing.assert_array_equal(logits[:, ends], 0.0)
    assert (logits.max(-1) > 0).all()
    default = load_gguf(write_tiny_gguf(tmp_path / "default.gguf", TinyConfig())).forward(IDS)
    others = [i for i in range(logits.shape[-1]) if i not in ends]
    np.testing.assert_allclose(logits[:, others], default[:, others], atol=1e-5)
    with pytest.raises(ValueError, match="untied"):
        write_tiny_gguf(tmp_path / "tied.gguf", TinyConfig(ends=False, tied=True))


@pytest.mark.parametrize("architecture", ["qwen2", "qwen3"])
def test_qwen_ggufs_match_their_safetensors_folders(tmp_path: Path, architecture: str):
    """Qwen GGUFs keep the Hugging Face Q/K layout (no permutation, half-split RoPE);
    qwen2 adds q/k/v biases and qwen3 per-head q/k norms."""
    from mullama.testing.tiny_models import write_tiny_gguf, write_tiny_mlx_folder

    cfg = TinyConfig(architecture=architecture, seed=7)
    gguf_model = load_gguf(write_tiny_gguf(tmp_path / f"{architecture}.gguf", cfg))
    folder_model = load_mlx_folder(write_tiny_mlx_folder(tmp_path / architecture, cfg))
    assert gguf_model.architecture == folder_model.architecture == architecture
    assert gguf_model.config["model_type"] == architecture
    np.testing.assert_allclose(
        gguf_model.forward(IDS), folder_model.forward(IDS), atol=1e-4, rtol=1e-4
    )


def test_keep_quantized_false_expands_to_float_with_the_same_logits(tiny_gguf_q4: Path):
    quantized = load_gguf(tiny_gguf_q4)
    expanded = load_gguf(tiny_gguf_q4, keep_quantized=False)
    layer = expanded.model.model.layers[0]
    assert type(layer.self_attn.q_proj) is nn.Linear
    assert type(expanded.model.model.embed_tokens) is nn.Embedding
    np.testing.assert_allclose(expanded.forward(IDS), quantized.forward(IDS), atol=2e-3, rtol=1e-3)
