"""The exception hierarchy of mullama.

Every error derives from :class:`MullamaError` (defined in the Rust extension):

- :class:`ConfigError`: a configuration value is invalid; ``.field`` names the field and
  ``.value`` is the offending value as text.
- :class:`StreamTimeoutError`: the stream's deadline (``timeout_ms``) passed; ``.timeout_ms``.
- :class:`GenerationError`: the producer failed; its original exception is ``__cause__``.
- :class:`ModelLoadError`, :class:`TokenizerError`, :class:`ContextLengthError`.

Two reasons a producer is ended from outside, raised to the consumer as the ``__cause__`` of a
GenerationError, are defined here: :class:`Superseded` and :class:`Interrupted`.
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


class Superseded(MullamaError):
    """A newer generation on the same Context replaced this one."""

    def __init__(self, message: str = "a newer generation on this Context replaced this one"):
        super().__init__(message)


class Interrupted(MullamaError):
    """The interpreter is exiting while this generation runs."""

    def __init__(self, message: str = "the interpreter is exiting"):
        super().__init__(message)


__all__ = [
    "ConfigError",
    "ContextLengthError",
    "GenerationError",
    "Interrupted",
    "ModelLoadError",
    "MullamaError",
    "StreamTimeoutError",
    "Superseded",
    "TokenizerError",
]
