"""`mullama list` and `mullama show MODEL`."""

from __future__ import annotations

import argparse
from typing import Any

from mullama.cli.exit_codes import ExitCode
from mullama.loader import names
from mullama.loader.default_model import DEFAULT_MODEL_INSTALL


def list_models(args: argparse.Namespace) -> int:
    entries = names.known_models()
    rows = [("NAME", "FORMAT", "SIZE", "PATH")]
    for entry in entries:
        path = str(entry.path) if entry.path else f"(not installed: {DEFAULT_MODEL_INSTALL})"
        rows.append((entry.name, entry.format, human_size(entry.size), path))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
            + "  "
            + row[3]
        )
    if len(entries) == 1:
        print(
            f"\n(no other models in {names.models_dir()}: put .gguf files or MLX folders "
            "there, or set MULLAMA_MODELS)"
        )
    return ExitCode.OK


def show_model(args: argparse.Namespace) -> int:
    from mullama.model import Model

    resolved = names.resolve(args.name)
    model = Model.load(resolved.path, engine=args.engine)
    metadata = model.metadata or {}
    size_label = metadata.get("general.size_label")
    fields = [
        ("name", resolved.name),
        ("path", str(model.path)),
        ("architecture", model.architecture),
        ("parameters", str(size_label) if size_label else _count_parameters(model)),
        ("quantization", model.quantization or "none"),
        ("context length", str(model.n_ctx_train)),
        ("vocabulary", str(model.n_vocab)),
        ("chat template", "yes" if model.chat_template else "no (ChatML is used)"),
        ("engine", model.engine.describe()),
    ]
    width = max(len(key) for key, _ in fields)
    for key, value in fields:
        print(f"{key.ljust(width)}  {value}")
    return ExitCode.OK


def _count_parameters(model: Any) -> str:
    total = model.engine.n_params()
    return "unknown" if total is None else f"{total / 1e6:.0f}M"


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"
