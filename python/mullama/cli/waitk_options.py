"""The `mullama run` flags of simultaneous generation (wait-k), kept apart from the runner so
the parser stays light."""

from __future__ import annotations

import argparse


def add_waitk_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "simultaneous generation (wait-k)",
        "With --wait-k the prompt (or --source-file) is a source read word by word while the "
        "reply is written: reply word t waits for K + t - 1 source words.",
    )
    group.add_argument(
        "--wait-k", type=int, metavar="K", help="write reply word t after K + t - 1 source words"
    )
    group.add_argument(
        "--source-file",
        metavar="PATH",
        help="read the source from PATH ('-': standard input, as it arrives)",
    )
    group.add_argument(
        "--instruction", metavar="TEXT", help="what to do with the source (default: translate it)"
    )
    group.add_argument("--max-new-words", type=int, metavar="N", help="most reply words")
    group.add_argument(
        "--max-tokens-per-word",
        type=int,
        metavar="N",
        help="cut a reply word after N tokens (default 50)",
    )


WAITK_ONLY_FLAGS = ("source_file", "instruction", "max_new_words", "max_tokens_per_word")
"""Flags that mean nothing without --wait-k."""
