"""The `mullama` command: run, chat, list, show, serve. Exit codes: see exit_codes.py."""

from __future__ import annotations

import os
import sys

from mullama.cli.common import check_argv_utf8
from mullama.cli.exit_codes import ExitCode, UsageError, report
from mullama.cli.parser import build_parser


def main(argv: list[str] | None = None) -> int:
    """The command line; `argv` None (the console script) reads sys.argv."""
    from_console = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        check_argv_utf8(argv)
    except UsageError as exc:
        return report(exc, debug=False)
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)  # exits with 2 on bad usage, as argparse does
    if extras:
        # argparse takes a prompt's words only before the first flag after them; Ollama's
        # habit `run MODEL --verbose "Say hi."` puts more words later: they are the prompt too.
        words, literal = _split_at_dashes(extras)
        if args.command == "run" and not any(w.startswith("-") and w != "-" for w in words):
            args.prompt = [*args.prompt, *words, *literal]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
    debug = getattr(args, "debug", False)
    try:
        return int(_dispatch(args, argv))
    except KeyboardInterrupt as exc:
        sys.stdout.flush()
        print(file=sys.stderr)
        code = report(exc, debug=debug)
        if from_console:
            # The person asked to stop: leave now. Tearing the interpreter down (the model's
            # buffers, every module) took about a second on a loaded 2-core box, and the
            # producer thread has nothing left to write.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code
    except Exception as exc:  # noqa: BLE001 - the one place that turns errors into exit codes
        return report(exc, debug=debug)


def _split_at_dashes(words: list[str]) -> tuple[list[str], list[str]]:
    """(words before `--`, words after it)."""
    if "--" not in words:
        return words, []
    at = words.index("--")
    return words[:at], words[at + 1 :]


def _dispatch(args, argv: list[str]) -> int:
    if args.command == "run":
        from mullama.cli.run import read_prompt, run, take_model_word

        take_model_word(args, argv)
        prompt = read_prompt(args)
        if prompt is not None:
            return run(args, prompt)
        # No prompt on a terminal: `mullama run` is `mullama chat` (the one place this is decided).
    if args.command in ("run", "chat"):
        from mullama.cli.chat import chat

        return chat(args)
    if args.command in ("list", "ls"):
        from mullama.cli.info import list_models

        return list_models(args)
    if args.command == "show":
        from mullama.cli.info import show_model

        return show_model(args)
    if args.command == "serve":
        from mullama.cli.serve import serve

        return serve(args)
    return ExitCode.USAGE


__all__ = ["ExitCode", "main"]
