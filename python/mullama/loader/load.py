"""Loading whatever a path or name resolves to: a GGUF file or an MLX/HF folder."""

from __future__ import annotations

from pathlib import Path

from mullama._core import GgufFile, ModelLoadError
from mullama.loader.gguf_loader import load_gguf, open_gguf
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


def open_model_file(path: Path) -> GgufFile:
    """The parsed header of a model file, which must be GGUF (the suffix may be missing)."""
    if path.suffix.lower() != ".gguf" and path.is_file() and not _has_gguf_magic(path):
        raise ModelLoadError(f"{path} is neither a GGUF file nor a model folder")
    return open_gguf(path)


# Only to tell a GGUF file without the .gguf suffix from other files; the core's reader
# checks the header itself.
GGUF_MAGIC = b"GGUF"


def _has_gguf_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == GGUF_MAGIC
    except OSError:
        return False
