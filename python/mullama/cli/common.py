"""What run, chat and serve share: loading the model a flag names, the StreamConfig the
flags make, and reading text from standard input as UTF-8."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mullama.cli.exit_codes import UsageError
from mullama.cli.output import loading_line, status
from mullama.cli.parser import config_overrides


def load_model(args: argparse.Namespace) -> tuple[str, Any]:
    """(the name to show, the loaded Model) for --model (or the built-in model)."""
    from mullama.loader.names import resolve
    from mullama.model import Model  # imports MLX: not needed for --help or usage errors

    resolved = resolve(args.model)
    verbose = getattr(args, "verbose", False)
    n_ctx = getattr(args, "ctx_size", None)
    if n_ctx is not None and n_ctx < 1:
        raise UsageError("--ctx-size must be at least 1")
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise UsageError("--threads must be at least 1")
    with loading_line(resolved.name, verbose=verbose):
        model = Model.load(
            resolved.path,
            engine=getattr(args, "engine", None),
            n_ctx=n_ctx,
            parallel=getattr(args, "parallel", None),
            n_threads=getattr(args, "threads", None),
        )
    if verbose:
        status(f"engine: {model.engine.describe()}")
    return resolved.name, model


def make_config(args: argparse.Namespace) -> Any:
    """The StreamConfig of the sampling flags; bad values raise ConfigError (exit 2)."""
    from mullama import StreamConfig

    return StreamConfig(**config_overrides(args))


def read_stdin() -> str:
    """All of standard input, which must be UTF-8 (the prompt goes to a UTF-8 tokenizer)."""
    return decode_utf8(sys.stdin.buffer.read(), "standard input")


def decode_utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{what} is not valid UTF-8 (byte {data[exc.start : exc.start + 1]!r} at offset "
            f"{exc.start})"
        ) from None


def check_argv_utf8(argv: list[str]) -> None:
    """Python hands undecodable argv bytes over as lone surrogates (surrogateescape);
    refuse them here with a usage error rather than fail deep in the tokenizer."""
    for position, arg in enumerate(argv, start=1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            try:
                shown = repr(arg.encode("utf-8", "surrogateescape"))
            except UnicodeEncodeError:  # a surrogate no byte decodes to: only an API caller
                shown = ascii(arg)
            raise UsageError(f"argument {position} ({shown}) is not valid UTF-8") from None
