"""The `mullama` command: run, chat, list, show, serve. Exit codes: see exit_codes.py."""

from __future__ import annotations

import sys

from mullama.cli.exit_codes import ExitCode, report
from mullama.cli.parser import build_parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with 2 on bad usage, as argparse does
    debug = getattr(args, "debug", False)
    try:
        return int(_dispatch(args))
    except KeyboardInterrupt as exc:
        sys.stdout.flush()
        print(file=sys.stderr)
        return report(exc, debug=debug)
    except Exception as exc:  # noqa: BLE001 - the one place that turns errors into exit codes
        return report(exc, debug=debug)


def _dispatch(args) -> int:
    if args.command == "run":
        from mullama.cli.run import run

        return run(args)
    if args.command == "chat":
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
