"""The result of loading a model: the mlx-lm module plus what callers need to know."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_map
from mlx_lm.models.cache import make_prompt_cache

from mullama._core import GgufFile
from mullama.loader.info import ModelInfo

_HALF_TYPES = (mx.float16, mx.bfloat16)


def use_device_dtype(model: nn.Module) -> None:
    """On the CPU, widen half-precision parameters (quantization scales included) to
    float32: MLX's CPU quantized matmul is tens of times slower in half precision.
    The GPU keeps them as stored."""
    if mx.default_device().type != mx.DeviceType.cpu:
        return
    widened = tree_map(
        lambda p: p.astype(mx.float32) if p.dtype in _HALF_TYPES else p, model.parameters()
    )
    model.update(widened)
    mx.eval(model.parameters())


@dataclass
class LoadedModel:
    model: nn.Module  # an mlx-lm `Model`, in eval mode, weights materialized
    architecture: str  # GGUF general.architecture, or config.json model_type
    metadata: dict[str, Any]  # GGUF key/values (vocab-sized arrays summarised) or config.json
    n_ctx_train: int
    n_vocab: int  # width of the logits
    path: Path
    quantization: str  # e.g. "Q4_1 (4-bit layers, 8-bit embedding)"
    source: Literal["gguf", "mlx"]
    config: dict[str, Any] = field(default_factory=dict)  # the mlx-lm ModelArgs input
    # The parsed header of a GGUF model (None for folders); the tokenizer is built from
    # it, so that a load parses the header once.
    gguf: GgufFile | None = field(default=None, repr=False)

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(
            path=self.path,
            architecture=self.architecture,
            metadata=self.metadata,
            n_ctx_train=int(self.n_ctx_train),
            n_vocab=int(self.n_vocab),
            quantization=self.quantization,
            source=self.source,
        )

    def forward(self, ids: Sequence[int]) -> np.ndarray:
        """Logits of shape (len(ids), n_vocab), float32, from one causal pass without cache."""
        tokens = self.check_ids(ids)
        logits = self.model(mx.array(tokens, dtype=mx.int32)[None])[0]
        return np.array(logits.astype(mx.float32))

    def make_cache(self) -> list[Any]:
        """A fresh mlx-lm KV cache for incremental decoding with `model(x, cache=...)`."""
        return make_prompt_cache(self.model)

    def check_ids(self, ids: Sequence[int]) -> list[int]:
        """Token ids as a list, after checking each is a valid row of the embedding
        (an out-of-range id would silently read garbage)."""
        tokens = [int(t) for t in ids]
        if not tokens:
            raise ValueError("forward() needs at least one token id")
        bad = [t for t in tokens if not 0 <= t < self.n_vocab]
        if bad:
            raise ValueError(f"token ids {bad[:5]} are outside the vocabulary [0, {self.n_vocab})")
        return tokens
