"""`mullama run`: one reply to a prompt, streamed to stdout."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mullama.cli import models
from mullama.cli.exit_codes import ExitCode, UsageError
from mullama.cli.output import (
    PROGRESS_INTERVAL_S,
    TextOut,
    loading_line,
    progress_reporter,
    stats_line,
    status,
)
from mullama.cli.parser import config_overrides


def read_prompt(args: argparse.Namespace) -> str | None:
    """The prompt text; None means: start an interactive chat."""
    words = args.prompt
    if words == ["-"]:
        return sys.stdin.read()
    if words:
        return " ".join(words)
    if sys.stdin.isatty():
        return None
    return sys.stdin.read()


def load_model(args: argparse.Namespace) -> tuple[str, Any]:
    from mullama.model import Model  # imports MLX: not needed for --help or usage errors

    name, path = models.resolve(args.model)
    with loading_line(name, verbose=getattr(args, "verbose", False)):
        return name, Model.load(path)


def make_config(args: argparse.Namespace) -> Any:
    from mullama import StreamConfig

    # No deadline unless --timeout: a long reply on a slow machine is not an error.
    return StreamConfig(**{"timeout_ms": 0, **config_overrides(args)})


def run(args: argparse.Namespace) -> int:
    prompt = read_prompt(args)
    if prompt is None:
        from mullama.cli.chat import chat

        return chat(args)
    if not prompt.strip():
        raise UsageError("the prompt is empty")
    config = make_config(args)  # bad flag values fail before the model loads
    _, model = load_model(args)

    from mullama.context import Context

    context = Context(model)
    reporter = progress_reporter(args.verbose)
    progress = (
        {"on_progress": reporter, "progress_interval_s": PROGRESS_INTERVAL_S} if reporter else {}
    )
    if args.raw:
        stream = context.generate_stream(prompt, config, **progress)
    else:
        messages = [{"role": "system", "content": args.system}] if args.system else []
        messages.append({"role": "user", "content": prompt})
        stream = context.generate_stream(config=config, messages=messages, **progress)
    out = TextOut()
    return stream_reply(stream, out, buffered=args.no_stream, verbose=args.verbose)


def stream_reply(stream: Any, out: TextOut, *, buffered: bool, verbose: bool) -> int:
    """Copies the stream to `out`; returns the exit code. Ctrl+C and a closed pipe stop the
    generation (closing the stream stops the forward pass)."""
    parts: list[str] = []
    last = None
    try:
        with stream:
            for event in stream:
                last = event
                if buffered:
                    parts.append(event.text)
                else:
                    out.write(event.text)
            finish_reason = stream.finish_reason
        if buffered:
            out.write("".join(parts))
        out.finish_line()
    except BrokenPipeError:
        _silence_stdout()
        return ExitCode.OK
    if verbose and last is not None:
        status(stats_line(last, finish_reason))
    return ExitCode.OK


def _silence_stdout() -> None:
    """The reader went away: point stdout at /dev/null so the exit flush cannot fail."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
