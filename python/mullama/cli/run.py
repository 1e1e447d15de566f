"""`mullama run`: one reply to a prompt, streamed to stdout."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mullama.cli.common import make_config, read_stdin
from mullama.cli.exit_codes import ExitCode, UsageError
from mullama.cli.output import PROGRESS_INTERVAL_S, TextOut, progress_reporter, stats_line, status
from mullama.cli.remote import generation_target


def take_model_word(args: argparse.Namespace, argv: list[str]) -> None:
    """`mullama run MODEL PROMPT...` as Ollama has it: a first word that names a model
    becomes --model, unless --model is given or the word comes after `--`."""
    words = args.prompt
    after_dashes = len(argv) - argv.index("--") - 1 if "--" in argv else 0
    remote = getattr(args, "remote", None) is not None  # a server's model is named by --model
    if args.model is None and not remote and len(words) > after_dashes and words[0] != "-":
        from mullama.loader.names import names_a_model

        if names_a_model(words[0]):
            args.model, args.prompt = words[0], words[1:]


def read_prompt(args: argparse.Namespace) -> str | None:
    """The prompt text; None means: start an interactive chat."""
    words = args.prompt
    if args.prompt_text is not None:
        if words:
            raise UsageError(
                f"the prompt is given twice: as --prompt and as words ({' '.join(words)!r})"
            )
        return args.prompt_text
    if words == ["-"]:
        return read_stdin()
    if words:
        return " ".join(words)
    if sys.stdin.isatty():
        return None
    return read_stdin()


def run(args: argparse.Namespace, prompt: str) -> int:
    if not prompt.strip():
        raise UsageError("the prompt is empty")
    if getattr(args, "ledger", None):
        raise UsageError(
            "--ledger keeps a chat: use it with `mullama chat` (or `mullama run` without a prompt)"
        )
    config = make_config(args)  # bad flag values fail before the model loads
    _, context = generation_target(args)
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
