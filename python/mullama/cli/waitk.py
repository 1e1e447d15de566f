"""`mullama run --wait-k K`: simultaneous generation from a source that arrives over time
(a file, standard input from a recognizer, or the prompt words), reply words streamed to
stdout as the policy writes them; --verbose adds `[read N source words]` after each word and
the latency (Average Lagging) at the end."""

from __future__ import annotations

import argparse
import codecs
import os
import sys
from collections.abc import Iterator
from typing import Any

from mullama.cli.common import load_model, make_config
from mullama.cli.exit_codes import ExitCode, UsageError
from mullama.cli.output import TextOut, stats_line, status
from mullama.cli.run import silence_stdout, take_model_word
from mullama.cli.waitk_options import WAITK_ONLY_FLAGS

READ_BYTES = 4096


def check_waitk_flags(args: argparse.Namespace) -> None:
    """Usage errors of the wait-k flags (exit 2), before anything loads."""
    if args.wait_k is None:
        given = [f for f in WAITK_ONLY_FLAGS if getattr(args, f, None) is not None]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise UsageError(f"{flag} needs --wait-k K")
        return
    if args.no_stream:
        raise UsageError(
            "--wait-k streams reply words while the source arrives: it cannot be combined "
            "with --no-stream"
        )
    if args.raw:
        raise UsageError("--wait-k lays the prompt out in the chat template: drop --raw")
    if args.system:
        raise UsageError("--wait-k takes --instruction TEXT, not --system")
    if getattr(args, "remote", None) is not None:
        raise UsageError(
            "--wait-k trims the model's KV cache at each read: it runs on a local model, "
            "not with --remote"
        )
    if getattr(args, "ledger", None):
        raise UsageError("--ledger keeps a chat: it cannot be combined with --wait-k")


def run_waitk(args: argparse.Namespace, argv: list[str]) -> int:
    from mullama.waitk import DEFAULT_INSTRUCTION, waitk_settings

    take_model_word(args, argv)
    settings = waitk_settings(  # bad values: ConfigError, exit 2, before the model loads
        args.wait_k,
        args.instruction if args.instruction is not None else DEFAULT_INSTRUCTION,
        args.max_new_words,
        args.max_tokens_per_word if args.max_tokens_per_word is not None else 50,
    )
    source = _source(args)
    config = make_config(args)
    _, model = load_model(args)

    from mullama.context import Context

    stream = Context(model).generate_stream_waitk(
        source,
        settings.wait_k,
        settings.instruction,
        settings.max_new_words,
        settings.max_tokens_per_word,
        config,
    )
    return _write(stream, TextOut(), verbose=args.verbose)


def _source(args: argparse.Namespace) -> Any:
    words = args.prompt
    if args.source_file is not None:
        if words or args.prompt_text is not None:
            raise UsageError("the source is given twice: as --source-file and as the prompt")
        if args.source_file == "-":
            return stdin_chunks()
        try:
            handle = open(args.source_file, "rb")  # noqa: SIM115 - closed by the chunk reader
        except OSError as exc:
            raise UsageError(f"cannot read --source-file {args.source_file}: {exc}") from None
        return utf8_chunks(handle.fileno(), args.source_file, handle)
    if args.prompt_text is not None:
        return args.prompt_text
    if words == ["-"] or (not words and not sys.stdin.isatty()):
        return stdin_chunks()
    if words:
        return " ".join(words)
    raise UsageError("--wait-k needs a source: PROMPT words, --source-file PATH, or '-' for stdin")


def stdin_chunks() -> Iterator[str]:
    return utf8_chunks(sys.stdin.fileno(), "standard input", None)


def utf8_chunks(fd: int, what: str, owner: Any) -> Iterator[str]:
    """Text as it arrives on `fd` (each read returns what a pipe holds, not a full buffer),
    decoded as UTF-8 across reads."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0
    try:
        while True:
            data = os.read(fd, READ_BYTES)
            try:
                text = decoder.decode(data, final=not data)
            except UnicodeDecodeError as exc:
                at = offset + exc.start
                raise UsageError(f"{what} is not valid UTF-8 (at byte offset {at})") from None
            offset += len(data)
            if text:
                yield text
            if not data:
                return
    finally:
        if owner is not None:
            owner.close()


def _write(stream: Any, out: TextOut, *, verbose: bool) -> int:
    last = None
    try:
        with stream:
            for event in stream:
                last = event
                out.write(event.text)
                if verbose and event.word_complete:
                    sys.stderr.write(f" [read {event.source_words_read} source words]\n")
                    sys.stderr.flush()
            finish_reason = stream.finish_reason
        out.finish_line()
    except BrokenPipeError:
        silence_stdout()
        return ExitCode.OK
    if verbose:
        metrics = stream.metrics
        status(latency_line(metrics))
        if last is not None:
            status(stats_line(last, finish_reason))
    return ExitCode.OK


def latency_line(metrics: Any) -> str:
    al = metrics.average_lagging
    recomputed = metrics.tokens_recomputed_per_source_word
    full = metrics.full_reprefill_per_source_word
    cost = (
        f"{recomputed:.1f} tokens recomputed per source word (full re-prefill: {full:.1f})"
        if recomputed is not None
        else "no reads after the first"
    )
    lags = [lag for lag in metrics.word_lag_s if lag is not None]
    lag_text = f", mean word lag {sum(lags) / len(lags):.2f} s" if lags else ""
    return (
        f"wait-k {metrics.wait_k}: {metrics.target_words} reply words for "
        f"{metrics.source_words} source words, average lagging "
        f"{'n/a' if al is None else f'{al:.2f}'} words{lag_text} | {cost}"
    )
