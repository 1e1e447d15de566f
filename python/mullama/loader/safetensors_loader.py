"""MLX / Hugging Face safetensors folder -> LoadedModel, through mlx-lm's own loader
(so every architecture mlx-lm implements works, quantized MLX folders included)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlx.nn as nn
from mlx_lm.utils import load_model

from mullama._core import ModelLoadError
from mullama.loader.loaded_model import LoadedModel, use_device_dtype

DEFAULT_CONTEXT = 4096


def load_mlx_folder(path: str | Path) -> LoadedModel:
    """Load a folder holding config.json and model*.safetensors. Never downloads."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"model folder not found: {path}")
    if not path.is_dir():
        raise ModelLoadError(f"not a model folder: {path}")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(f"model folder {path} has no config.json")
    if not any(path.glob("model*.safetensors")):
        raise ModelLoadError(f"model folder {path} has no model*.safetensors weights")
    try:
        config = json.loads(config_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"model folder {path} has an unreadable config.json: {exc}") from exc
    if not isinstance(config, dict) or "model_type" not in config:
        raise ModelLoadError(f"config.json in {path} does not name a model_type")

    try:
        model, config = load_model(path, lazy=False, strict=True)
    except FileNotFoundError as exc:
        raise ModelLoadError(f"model folder {path} is incomplete: {exc}") from exc
    except ValueError as exc:
        # mlx-lm raises ValueError for unknown model types and mismatched weights.
        raise ModelLoadError(f"cannot load model folder {path}: {exc}") from exc
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ModelLoadError(f"model folder {path} is inconsistent: {exc!r}") from exc
    use_device_dtype(model)

    text_config = config.get("text_config", config)
    return LoadedModel(
        model=model,
        architecture=str(config["model_type"]),
        metadata=config,
        n_ctx_train=int(text_config.get("max_position_embeddings") or DEFAULT_CONTEXT),
        n_vocab=_logit_width(model, text_config),
        path=path,
        quantization=_describe_quantization(config),
        source="mlx",
        config=config,
    )


def _logit_width(model: nn.Module, config: dict[str, Any]) -> int:
    vocab = config.get("vocab_size")
    if isinstance(vocab, int) and vocab > 0:
        return vocab
    embed = getattr(getattr(model, "model", None), "embed_tokens", None)
    if embed is None:
        raise ModelLoadError("cannot tell the vocabulary size: no vocab_size in config.json")
    return int(embed.weight.shape[0])


def _describe_quantization(config: dict[str, Any]) -> str:
    quant = config.get("quantization")
    if not quant:
        return "float"
    mode = quant.get("mode", "affine")
    return f"MLX {mode} {quant.get('bits')}-bit, group size {quant.get('group_size')}"
