"""The command line: `mullama run | chat | list | show | serve`."""

from __future__ import annotations

import argparse
from typing import Any

from mullama import __version__
from mullama.cli.remote_options import add_remote_options
from mullama.cli.waitk_options import add_waitk_options
from mullama.engines.choice import DEFAULT_ENGINE, ENGINE_ENV, ENGINES
from mullama.server import defaults as serve_defaults

# The CLI's deadline for one reply: none. A person at the terminal stops a reply with
# Ctrl+C, and a long reply on a slow machine is not an error (StreamConfig's library default
# of 30 s would cut it). `mullama serve` has its own (--timeout there).
CLI_TIMEOUT_MS = 0

# --flag -> StreamConfig field, for the sampling flags run, chat and serve share.
SAMPLING_FLAGS = {
    "max_tokens": "max_tokens",
    "temperature": "temperature",
    "top_k": "top_k",
    "top_p": "top_p",
    "min_p": "min_p",
    "repeat_penalty": "repeat_penalty",
    "seed": "seed",
    "stop": "stop_sequences",
    "timeout": "timeout_ms",
}


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """StreamConfig keyword overrides for the sampling flags the user gave."""
    overrides = {}
    for flag, field in SAMPLING_FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            overrides[field] = value
    return overrides


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        "-m",
        metavar="MODEL",
        help="model name (see `mullama list`), GGUF file or MLX folder "
        "(default: the built-in smollm2)",
    )
    _add_engine(parser)
    parser.add_argument(
        "--ctx-size",
        "-c",
        type=int,
        metavar="N",
        help="most tokens of a conversation (default: the model's training context; "
        "on llama.cpp the smaller of that and 4096, as its caches are allocated up front)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="llama.cpp compute threads (default 1; one per core is faster on an idle machine)",
    )
    parser.add_argument("--debug", action="store_true", help="print tracebacks on errors")


def _add_engine(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        help=f"the forward pass (default: ${ENGINE_ENV} or {DEFAULT_ENGINE}: MLX on a GPU, "
        "llama.cpp on CPU-only hosts)",
    )


def _add_sampling(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("generation")
    group.add_argument("--max-tokens", "-n", type=int, metavar="N", help="most tokens to generate")
    group.add_argument(
        "--temperature", "-t", type=float, metavar="T", help="sampling temperature (0 = greedy)"
    )
    group.add_argument("--top-k", type=int, metavar="K", help="sample from the K likeliest")
    group.add_argument("--top-p", type=float, metavar="P", help="nucleus sampling threshold")
    group.add_argument("--min-p", type=float, metavar="P", help="minimum relative probability")
    group.add_argument(
        "--repeat-penalty",
        type=float,
        metavar="R",
        help="penalty for repeating recent tokens (1 = none)",
    )
    group.add_argument("--seed", type=int, help="random seed (same seed, same output)")
    group.add_argument(
        "--stop", action="append", metavar="TEXT", help="stop when this text appears (repeatable)"
    )
    group.add_argument(
        "--timeout",
        type=int,
        default=CLI_TIMEOUT_MS,
        metavar="MS",
        help=f"give up a reply after MS milliseconds (default {CLI_TIMEOUT_MS}: no limit)",
    )


def _add_chat_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--system", "-s", metavar="TEXT", help="system prompt")
    parser.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="statistics (first-token time, tokens/s, memory) on stderr",
    )


def build_parser() -> argparse.ArgumentParser:
    return build_parsers()[0]


def build_parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The `mullama` parser and each command's own parser by name (an alias maps to its
    command's parser): the docs' CLI reference prints every one's help."""
    parser = argparse.ArgumentParser(
        prog="mullama",
        description="Stream text from local models (GGUF or MLX) on MLX or llama.cpp.",
        epilog="Exit codes: 0 ok, 1 error, 2 usage, 3 model load, 4 timeout, "
        "5 prompt too long, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"mullama {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run",
        help="generate a reply to PROMPT (interactive chat when there is none)",
        description="Streams a reply to PROMPT. PROMPT '-' reads standard input; with no "
        "PROMPT, standard input is read when piped, and a chat starts on a terminal. "
        "As with `ollama run MODEL PROMPT`, a first word that names a model (a name from "
        "`mullama list`, with an optional :tag, a .gguf file, or a folder with a "
        "config.json) is the model and the rest is the prompt; to send such a word as "
        "prompt text, put `--` before the prompt or use --prompt TEXT.",
    )
    run.add_argument(
        "prompt", nargs="*", metavar="[MODEL] PROMPT", help="the prompt ('-' for stdin)"
    )
    run.add_argument(
        "--prompt",
        dest="prompt_text",
        metavar="TEXT",
        help="the prompt, taken as text even when its first word names a model",
    )
    _add_common(run)
    _add_chat_options(run)
    run.add_argument(
        "--no-stream", action="store_true", help="print the reply at once when it is complete"
    )
    run.add_argument(
        "--raw", action="store_true", help="send the prompt as is, without the chat template"
    )
    _add_sampling(run)
    add_waitk_options(run)
    add_remote_options(run, ledger=True)
    # One reply at a time: one sequence's caches, not a batch's (on llama.cpp they are
    # allocated up front: 4 sequences of 4096 cells cost the default model ~280 MiB more).
    run.set_defaults(parallel=1)

    chat = commands.add_parser(
        "chat",
        help="interactive chat",
        description="Interactive chat: /set PARAM VALUE, /clear, /bye.",
    )
    _add_common(chat)
    _add_chat_options(chat)
    _add_sampling(chat)
    add_remote_options(chat, ledger=True)
    chat.set_defaults(parallel=1)

    list_cmd = commands.add_parser(
        "list", aliases=["ls"], help="the built-in model and those in the models directory"
    )
    list_cmd.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)

    show = commands.add_parser("show", help="a model's architecture, size and context length")
    show.add_argument("name", metavar="MODEL", help="model name, GGUF file or MLX folder")
    _add_engine(show)
    show.add_argument("--debug", action="store_true", help="print tracebacks on errors")

    serve = commands.add_parser(
        "serve",
        help="OpenAI- and Ollama-compatible HTTP server",
        description="Serves the model over HTTP: /v1/chat/completions, /v1/completions, "
        "/v1/models, /api/generate, /api/chat, /api/tags and WebSocket /v1/ws.",
    )
    _add_common(serve)
    serve.add_argument(
        "--host",
        default=serve_defaults.DEFAULT_HOST,
        help=f"address to listen on (default {serve_defaults.DEFAULT_HOST}: this machine only)",
    )
    serve.add_argument(
        "--port",
        "-p",
        type=int,
        default=serve_defaults.DEFAULT_PORT,
        help=f"port (default {serve_defaults.DEFAULT_PORT})",
    )
    serve.add_argument(
        "--api-key",
        metavar="KEY",
        help="require 'Authorization: Bearer KEY' (or set MULLAMA_API_KEY)",
    )
    serve.add_argument(
        "--parallel",
        "--max-concurrent",
        dest="parallel",
        type=int,
        default=serve_defaults.DEFAULT_MAX_CONCURRENT,
        metavar="N",
        help="generations decoded together in one batch; more requests queue "
        f"(default {serve_defaults.DEFAULT_MAX_CONCURRENT})",
    )
    serve.add_argument(
        "--max-queue",
        type=int,
        default=serve_defaults.DEFAULT_MAX_QUEUE,
        metavar="M",
        help="requests that may wait for a place in the batch; beyond it they get 503 with "
        f"Retry-After (default {serve_defaults.DEFAULT_MAX_QUEUE})",
    )
    serve.add_argument(
        "--max-tokens",
        type=int,
        default=serve_defaults.DEFAULT_MAX_TOKENS,
        metavar="N",
        help="tokens per reply when a request sets no limit "
        f"(default {serve_defaults.DEFAULT_MAX_TOKENS})",
    )
    serve.add_argument(
        "--timeout",
        type=int,
        default=serve_defaults.DEFAULT_TIMEOUT_MS,
        metavar="MS",
        help="deadline of one generation in ms "
        f"(default {serve_defaults.DEFAULT_TIMEOUT_MS}, 0 = none)",
    )
    serve.add_argument(
        "--max-body-bytes",
        type=int,
        default=serve_defaults.DEFAULT_MAX_BODY_BYTES,
        metavar="N",
        help="largest request body accepted (default 4 MiB)",
    )
    serve.add_argument(
        "--log-level",
        default=serve_defaults.DEFAULT_LOG_LEVEL,
        choices=serve_defaults.LOG_LEVELS,
    )
    return parser, dict(commands.choices)
