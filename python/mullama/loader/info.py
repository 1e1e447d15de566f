"""What a loaded model is (path, architecture, sizes, quantization), whichever engine runs it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mullama._core import GgufFile

EMBEDDING_TENSOR = "token_embd.weight"


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    architecture: str  # GGUF general.architecture, or config.json model_type
    metadata: dict[str, Any] = field(repr=False)  # GGUF key/values or config.json
    n_ctx_train: int
    n_vocab: int  # width of the logits
    quantization: str  # e.g. "Q4_1 (4-bit layers, 8-bit embedding)"
    source: Literal["gguf", "mlx"]


def gguf_info(gguf: GgufFile, *, n_vocab: int, n_ctx_train: int) -> ModelInfo:
    """A GGUF model's description as llama.cpp runs it: its tensors as stored."""
    return ModelInfo(
        path=Path(gguf.path),
        architecture=str(gguf.architecture),
        metadata=gguf.metadata,
        n_ctx_train=n_ctx_train,
        n_vocab=n_vocab,
        quantization=describe_stored_types(gguf),
        source="gguf",
    )


def describe_stored_types(gguf: GgufFile) -> str:
    """The dominant matrix type, and the embedding's where it differs: "Q4_1 (Q8_0 embedding)"."""
    matrices = Counter(t.type for t in gguf.tensors if len(t.shape) == 2)
    if not matrices:
        return "unknown"
    dominant = matrices.most_common(1)[0][0]
    embedding = next((t.type for t in gguf.tensors if t.name == EMBEDDING_TENSOR), None)
    if embedding is not None and embedding != dominant:
        return f"{dominant} ({embedding} embedding)"
    return dominant
