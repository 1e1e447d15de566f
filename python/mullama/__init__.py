"""mullama: streaming token generation with a Rust core and MLX models."""

from mullama._core import (
    ConfigError,
    ContextLengthError,
    GenerationError,
    ModelLoadError,
    MullamaError,
    StreamConfig,
    StreamTimeoutError,
    Token,
    TokenizerError,
    TokenStream,
    __version__,
)
from mullama.aio.stream import AsyncTokenStream
from mullama.progress import Progress

__all__ = [
    "AsyncChat",
    "AsyncContext",
    "AsyncModel",
    "AsyncTokenStream",
    "Chat",
    "Context",
    "GenerationResult",
    "Model",
    "Progress",
    "ConfigError",
    "ContextLengthError",
    "GenerationError",
    "ModelLoadError",
    "MullamaError",
    "StreamConfig",
    "StreamTimeoutError",
    "Token",
    "TokenStream",
    "TokenizerError",
    "__version__",
]


def __getattr__(name: str) -> object:
    # The async engine classes import MLX; they load on first use.
    if name in ("AsyncContext", "AsyncModel"):
        from mullama.aio import model

        return getattr(model, name)
    if name == "Model":
        from mullama.model import Model

        return Model
    if name in ("Chat", "AsyncChat"):
        from mullama import conversation

        return getattr(conversation, name)
    if name == "Context":
        from mullama.context import Context

        return Context
    if name == "GenerationResult":
        from mullama.result import GenerationResult

        return GenerationResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
