"""Loading whatever a path or name resolves to: a GGUF file or an MLX/HF folder."""

from __future__ import annotations

from pathlib import Path

from mullama.loader.gguf_check import open_model_file
from mullama.loader.gguf_loader import load_gguf
from mullama.loader.loaded_model import LoadedModel
from mullama.loader.names import resolve_model
from mullama.loader.safetensors_loader import load_mlx_folder


def load_model(
    path_or_name: str | Path | None = None, *, keep_quantized: bool = True
) -> LoadedModel:
    """Load whatever `resolve_model` finds: a GGUF file or an MLX/HF folder
    (`keep_quantized` applies to GGUF files, see `load_gguf`)."""
    path = resolve_model(path_or_name)
    if path.is_dir():
        return load_mlx_folder(path)
    return load_gguf(open_model_file(path), keep_quantized=keep_quantized)
