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

__all__ = [
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
