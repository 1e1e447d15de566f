"""Model loading: GGUF files and MLX safetensors folders -> mlx-lm models.

load_model(path_or_name)   # dispatch: None, a name (names.py), a .gguf file, or a folder
load_gguf(path)            # GGUF (llama, qwen2, qwen3, gemma3)
open_model_file(path)      # a GGUF file's parsed header (with or without the .gguf suffix)
mlx_unsupported(gguf)      # why the MLX loader cannot map a GGUF file, or None
load_mlx_folder(path)      # config.json + *.safetensors, any mlx-lm architecture
resolve_model(name)        # a name, file or folder -> the path to load (names.py)

The names are imported on first use: resolving a name (`mullama list`, the CLI's argument
checks) must not wait for MLX and mlx-lm to import.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "SUPPORTED_ARCHITECTURES": "gguf_loader",
    "LoadedModel": "loaded_model",
    "default_model_path": "default_model",
    "load_gguf": "gguf_loader",
    "mlx_unsupported": "gguf_check",
    "open_model_file": "gguf_check",
    "load_mlx_folder": "safetensors_loader",
    "load_model": "load",
    "resolve_model": "names",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'mullama.loader' has no attribute {name!r}")
    return getattr(importlib.import_module(f"mullama.loader.{home}"), name)
