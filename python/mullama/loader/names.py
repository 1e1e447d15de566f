"""Model names -> model files: the one resolver behind `Model.load`, the CLI and the server.

A name is `base[:tag]`. The known bases are the built-in default model (with its aliases and
tags, see default_model.py) and the models directory (`MULLAMA_MODELS`, or
~/.cache/mullama/models): a `.gguf` file there is named by its file name without `.gguf`, a
folder with a config.json by the folder's name; their one tag is `latest`. A path to an
existing file or folder is taken as it is. Nothing here loads or downloads a model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mullama._core import ModelLoadError
from mullama.loader.default_model import (
    DEFAULT_MODEL_ALIASES,
    DEFAULT_MODEL_NAME,
    DEFAULT_MODEL_TAGS,
    default_model_path,
)

MODELS_DIR_ENV = "MULLAMA_MODELS"
LATEST = "latest"


def models_dir() -> Path:
    """`MULLAMA_MODELS`, or ~/.cache/mullama/models."""
    configured = os.environ.get(MODELS_DIR_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache/mullama/models"


@dataclass(frozen=True)
class ModelEntry:
    """A model known by name. `path` is None when the built-in model's package is absent."""

    name: str
    path: Path | None
    format: str
    tags: tuple[str, ...] = (LATEST,)
    aliases: tuple[str, ...] = field(default=())
    builtin: bool = False

    @property
    def size(self) -> int:
        if self.path is None or not self.path.exists():
            return 0
        if self.path.is_file():
            return self.path.stat().st_size
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())

    def answers_to(self, base: str, tag: str | None) -> bool:
        # The built-in names are matched case-insensitively (as before: "SmolLM2" worked);
        # names from the models directory are file names, matched exactly.
        bases = {self.name, *self.aliases}
        if self.builtin:
            bases = {b.lower() for b in bases}
            base = base.lower()
        return base in bases and (tag is None or tag.lower() in self.tags)

    def full_names(self) -> list[str]:
        return [f"{self.name}:{tag}" for tag in self.tags]


@dataclass(frozen=True)
class ResolvedModel:
    """What a name resolved to: the name to show, and the file or folder to load."""

    name: str
    path: Path


def builtin_model() -> ModelEntry:
    try:
        path: Path | None = default_model_path()
    except ModelLoadError:
        path = None
    return ModelEntry(
        DEFAULT_MODEL_NAME, path, "gguf", DEFAULT_MODEL_TAGS, DEFAULT_MODEL_ALIASES, builtin=True
    )


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


def known_models() -> list[ModelEntry]:
    """The built-in model first, then the models directory (what `mullama list` shows)."""
    return [builtin_model(), *discovered_models()]


def split_name(name: str) -> tuple[str, str | None]:
    """ "smollm2:135m" -> ("smollm2", "135m"); "smollm2" -> ("smollm2", None)."""
    base, colon, tag = name.partition(":")
    return base, (tag if colon else None)


def find_known(name: str) -> ModelEntry | None:
    """The known model that `name` (`base[:tag]`) names, if any."""
    base, tag = split_name(name)
    for entry in known_models():
        if entry.answers_to(base, tag):
            return entry
    return None


def resolve(name: str | os.PathLike[str] | None) -> ResolvedModel:
    """None -> the built-in model; a known `name[:tag]`; or an existing file or folder.
    Raises ModelLoadError naming the problem (and, for an unknown name, the known ones)."""
    if name is None:
        return ResolvedModel(DEFAULT_MODEL_NAME, default_model_path())
    text = os.fspath(name)
    if not text.strip():
        raise ModelLoadError(
            "empty model name: give a name from `mullama list`, a .gguf file or a model folder"
        )
    entry = find_known(text)
    if entry is not None:
        # The built-in model's package may be absent: default_model_path says how to install.
        path = entry.path if entry.path is not None else default_model_path()
        return ResolvedModel(entry.name, path)
    path = Path(text).expanduser()
    if path.exists():
        return ResolvedModel(path.stem if path.is_file() else path.name, path)
    raise ModelLoadError(_unknown_message(text))


def _unknown_message(text: str) -> str:
    base, tag = split_name(text)
    entries = known_models()
    for entry in entries:
        if tag is not None and entry.answers_to(base, None):
            return f"model {text!r} has no tag {tag!r}; its tags: {', '.join(entry.tags)}"
    known = ", ".join(n for entry in entries for n in [entry.name, *entry.full_names()[1:]])
    return (
        f"model not found: {text!r} is not a file or folder, nor a known model name "
        f"(known: {known}; models directory: {models_dir()})"
    )


def resolve_model(path_or_name: str | os.PathLike[str] | None = None) -> Path:
    """The file or folder to load for `path_or_name` (see `resolve`)."""
    return resolve(path_or_name).path


def names_a_model(text: str) -> bool:
    """Whether `text` plainly names a model rather than being prose: a known `name[:tag]`,
    an existing .gguf file, or a folder with a config.json. (The CLI uses this to take
    `mullama run MODEL PROMPT` as Ollama does.)"""
    if not text or text != text.strip():
        return False
    if find_known(text) is not None:
        return True
    path = Path(text).expanduser()
    try:
        return (path.is_file() and path.suffix.lower() == ".gguf") or (
            path.is_dir() and (path / "config.json").is_file()
        )
    except OSError:  # e.g. a name too long for the file system: prose, not a path
        return False


def same_model(requested: str | None, name: str, path: str | os.PathLike[str]) -> bool:
    """Whether a request's `model` field names the model served as `name` from `path`:
    no name at all, the served name (with any tag), the file's name, or any name that
    resolves to the same file. For the server's routes."""
    if not requested:
        return True
    served = Path(path)
    base, _ = split_name(requested)
    if requested in (str(served), served.name, served.stem) or base == name:
        return True
    try:
        target = resolve(requested).path
    except ModelLoadError:
        return False
    try:
        return target.resolve() == served.resolve()
    except OSError:
        return False
