"""Exit codes of the `mullama` command and the one-line error report on stderr.

0    success (also when the reader of a pipe goes away early, like `| head`)
1    generation failed, or any other error
2    bad usage: unknown flag, invalid value (e.g. --top-p 2)
3    the model could not be found or loaded (also a remote server that does not serve it)
4    the generation timed out (--timeout)
5    the prompt does not fit in the context
130  interrupted (Ctrl+C)
"""

from __future__ import annotations

import sys
import traceback
from enum import IntEnum

from mullama import (
    ConfigError,
    ContextLengthError,
    ModelLoadError,
    MullamaError,
    StreamTimeoutError,
    TokenizerError,
)
from mullama.remote.errors import RemoteModelNotFoundError


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    MODEL_LOAD = 3
    TIMEOUT = 4
    CONTEXT_LENGTH = 5
    INTERRUPTED = 130


class UsageError(Exception):
    """A problem with the command line that argparse cannot see (e.g. an empty prompt)."""


def exit_code_for(exc: BaseException) -> ExitCode:
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(exc, (UsageError, ConfigError, TokenizerError)):
        return ExitCode.USAGE
    if isinstance(exc, ModelLoadError | RemoteModelNotFoundError):
        return ExitCode.MODEL_LOAD
    if isinstance(exc, StreamTimeoutError):
        return ExitCode.TIMEOUT
    if isinstance(exc, ContextLengthError):
        return ExitCode.CONTEXT_LENGTH
    return ExitCode.ERROR


def describe(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, StreamTimeoutError):
        # The library's message suggests the API field; say it in flags.
        return (
            f"generation timed out after {exc.timeout_ms} ms: the reply deadline set by "
            "--timeout MS (or /set timeout MS in a chat; 0 = no limit)"
        )
    if isinstance(exc, ContextLengthError) and hasattr(exc, "n_ctx"):
        # The library's message suggests API arguments; say it in flags.
        return (
            f"the prompt ({exc.prompt_tokens} tokens) plus --max-tokens {exc.max_tokens} does "
            f"not fit in the model's context of {exc.n_ctx} tokens: shorten the prompt or "
            "lower --max-tokens"
        )
    if isinstance(exc, MullamaError | UsageError):
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


def report(exc: BaseException, *, debug: bool) -> ExitCode:
    """Prints one line (plus the traceback with --debug) and returns the exit code."""
    if debug:
        traceback.print_exception(exc)
    print(f"mullama: error: {describe(exc)}", file=sys.stderr, flush=True)
    return exit_code_for(exc)
