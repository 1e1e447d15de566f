"""Which engine runs a model, and why: `engine="auto" | "mlx" | "llama.cpp"`.

`auto` follows where each engine is fast: MLX where it has a GPU (Metal on Apple silicon,
CUDA with `mlx[cuda]`), llama.cpp on CPU-only hosts, where MLX's CPU kernels are several times
slower (a 2-core box: 5.7x slower decode, first token 13x later; benchmarks/bench_engine.py).
llama.cpp loads GGUF files only; MLX also loads MLX / Hugging Face folders.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from mullama._core import ConfigError, ModelLoadError

ENGINES = ("auto", "mlx", "llama.cpp")
DEFAULT_ENGINE = "auto"
ENGINE_ENV = "MULLAMA_ENGINE"
"""Environment variable naming the engine when the caller names none (e.g. for a whole
test run or a service); an explicit `engine=` wins."""

LLAMA_CPP_INSTALL = "pip install 'mullama[llama]'"
MLX_INSTALL = "pip install 'mullama'  (MLX comes with it; on NVIDIA: pip install 'mullama[cuda]')"


@dataclass(frozen=True)
class EngineChoice:
    name: str  # "mlx" or "llama.cpp"
    reason: str  # one line for `mullama show`, `--verbose` and `model.engine.reason`


def requested_engine(engine: str | None) -> str:
    """The engine asked for: `engine`, else $MULLAMA_ENGINE, else "auto"; checked."""
    if engine is None:
        engine = os.environ.get(ENGINE_ENV) or DEFAULT_ENGINE
        source = f"${ENGINE_ENV}" if os.environ.get(ENGINE_ENV) else "engine"
    else:
        source = "engine"
    if not isinstance(engine, str) or engine.lower() not in ENGINES:
        raise ConfigError(
            f"invalid {source} = {engine!r}: must be one of " + ", ".join(map(repr, ENGINES))
        )
    return engine.lower()


def llama_cpp_installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def mlx_installed() -> bool:
    return importlib.util.find_spec("mlx") is not None


def mlx_gpu() -> str | None:
    """ "Metal" or "CUDA" when MLX computes on a GPU here, else None."""
    if not mlx_installed():
        return None
    import mlx.core as mx

    if mx.default_device().type != mx.DeviceType.gpu:
        return None
    if getattr(mx, "metal", None) is not None and mx.metal.is_available():
        return "Metal"
    cuda = getattr(mx, "cuda", None)
    if cuda is not None and cuda.is_available():
        return "CUDA"
    return "GPU"


def choose_engine(
    engine: str | None, path: Path, *, mlx_supports: str | None = None
) -> EngineChoice:
    """The engine for the model at `path` (a GGUF file or a folder).

    `mlx_supports`: None when MLX's loader maps the model, else why it does not (a GGUF
    architecture it has no mapping for): `auto` then takes llama.cpp. Raises ModelLoadError
    (with the install command) for an engine that is not installed or cannot load `path`."""
    wanted = requested_engine(engine)
    is_gguf = not path.is_dir()
    if wanted == "llama.cpp":
        if not is_gguf:
            raise ModelLoadError(
                f"the llama.cpp engine loads GGUF files; {path} is a folder (use engine='mlx')"
            )
        if not llama_cpp_installed():
            raise ModelLoadError(
                f"the llama.cpp engine needs llama-cpp-python; install it with: {LLAMA_CPP_INSTALL}"
            )
        return EngineChoice("llama.cpp", "asked for")
    if wanted == "mlx":
        if not mlx_installed():
            raise ModelLoadError(f"the MLX engine needs mlx; install it with: {MLX_INSTALL}")
        if mlx_supports is not None:
            raise ModelLoadError(mlx_supports)
        return EngineChoice("mlx", f"asked for ({_mlx_device()})")

    gpu = mlx_gpu()
    if gpu is not None and mlx_supports is None:
        return EngineChoice("mlx", f"auto: MLX computes on the GPU ({gpu})")
    if is_gguf and llama_cpp_installed():
        if mlx_supports is not None:
            return EngineChoice("llama.cpp", f"auto: {mlx_supports}")
        return EngineChoice("llama.cpp", "auto: no GPU for MLX; llama.cpp is faster on CPU")
    if mlx_supports is not None:
        raise ModelLoadError(
            f"{mlx_supports}; the llama.cpp engine may load it: {LLAMA_CPP_INSTALL}"
        )
    if not mlx_installed():
        raise ModelLoadError(f"no engine is installed: {MLX_INSTALL}")
    if not is_gguf:
        return EngineChoice("mlx", "auto: a model folder (llama.cpp loads GGUF files only)")
    return EngineChoice(
        "mlx", f"auto: llama-cpp-python is not installed ({LLAMA_CPP_INSTALL} is faster on CPU)"
    )


def _mlx_device() -> str:
    return f"MLX on the {mlx_gpu() or 'CPU'}"
