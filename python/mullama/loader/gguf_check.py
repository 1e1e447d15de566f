"""Opening a GGUF file and telling whether the MLX loader can map it, without importing
mlx-lm (which brings transformers: seconds): the llama.cpp engine's load needs only this."""

from __future__ import annotations

from pathlib import Path

from mullama._core import GgufFile, ModelLoadError
from mullama.loader.gguf_config import architecture_spec
from mullama.loader.gguf_names import IGNORED_TENSORS
from mullama.loader.quant import check_supported

# Only to tell a GGUF file without the .gguf suffix from other files; the core's reader
# checks the header itself.
GGUF_MAGIC = b"GGUF"


def open_gguf(path: str | Path) -> GgufFile:
    """The parsed header of the GGUF file at `path`; ModelLoadError naming the problem."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelLoadError(f"not a GGUF file (is a directory or special file): {path}")
    return GgufFile.open(path)


def open_model_file(path: Path) -> GgufFile:
    """The parsed header of a model file, which must be GGUF (the suffix may be missing)."""
    if path.suffix.lower() != ".gguf" and path.is_file() and not _has_gguf_magic(path):
        raise ModelLoadError(f"{path} is neither a GGUF file nor a model folder")
    return open_gguf(path)


def mlx_unsupported(gguf: GgufFile) -> str | None:
    """Why the MLX loader cannot map this GGUF file (its architecture or a tensor type),
    or None when it can."""
    try:
        architecture_spec(gguf)
        for info in gguf.tensors:
            if info.name not in IGNORED_TENSORS:
                check_supported(info.name, info.type)
    except ModelLoadError as exc:
        return str(exc)
    return None


def _has_gguf_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == GGUF_MAGIC
    except OSError:
        return False
