"""The CLI's remote and ledger flags: `run`/`chat --remote URL --model NAME` generate on a
server instead of a local model, and `chat --ledger FILE` keeps the conversation in an SQLite
ledger (run again with the same file to resume it). What they do: cli/remote.py."""

from __future__ import annotations

import argparse

API_KEY_ENV = "MULLAMA_REMOTE_API_KEY"


def add_remote_options(parser: argparse.ArgumentParser, *, ledger: bool = False) -> None:
    group = parser.add_argument_group("remote model")
    group.add_argument(
        "--remote",
        metavar="URL",
        help="generate on a server: http(s)://host/v1 (OpenAI-compatible), ollama://host:port "
        "or http://host:port/api (Ollama); --model is then the server's model name",
    )
    group.add_argument(
        "--api-key",
        dest="remote_api_key",
        metavar="KEY",
        help=f"the server's API key (default: ${API_KEY_ENV})",
    )
    if ledger:
        add_ledger_options(parser)


def add_ledger_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("conversation ledger")
    group.add_argument(
        "--ledger",
        metavar="FILE",
        help="keep the chat in this SQLite file; the same file (and --conversation) resumes it",
    )
    group.add_argument(
        "--conversation",
        default="default",
        metavar="NAME",
        help="which conversation of the ledger (default: 'default')",
    )
