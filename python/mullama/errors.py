"""The exception hierarchy of mullama (defined in the Rust extension, re-exported here).

Every error derives from :class:`MullamaError`:

- :class:`ConfigError`: a configuration value is invalid; ``.field`` names the field and
  ``.value`` is the offending value as text.
- :class:`StreamTimeoutError`: the stream's deadline (``timeout_ms``) passed; ``.timeout_ms``.
- :class:`GenerationError`: the producer failed; its original exception is ``__cause__``.
- :class:`ModelLoadError`, :class:`TokenizerError`, :class:`ContextLengthError`.
"""

from mullama._core import (
    ConfigError,
    ContextLengthError,
    GenerationError,
    ModelLoadError,
    MullamaError,
    StreamTimeoutError,
    TokenizerError,
)

__all__ = [
    "ConfigError",
    "ContextLengthError",
    "GenerationError",
    "ModelLoadError",
    "MullamaError",
    "StreamTimeoutError",
    "TokenizerError",
]
