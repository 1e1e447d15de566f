"""Writing generated text (flushed per event, blocking when a pipe is full) and the
status lines on stderr (load progress, --verbose statistics)."""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import Any, BinaryIO, TextIO

PROGRESS_INTERVAL_S = 1.0


class TextOut:
    """UTF-8 text to stdout, flushed per write whatever the locale.

    A blocking write to a full pipe is the CLI's backpressure: while it blocks, the loop
    stops taking tokens, the stream's bounded buffer fills and the forward pass waits."""

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self._out = stream if stream is not None else sys.stdout.buffer
        self.ends_with_newline = True

    def write(self, text: str) -> None:
        if not text:
            return
        self._out.write(text.encode("utf-8"))
        self._out.flush()
        self.ends_with_newline = text.endswith("\n")

    def finish_line(self) -> None:
        if not self.ends_with_newline:
            self.write("\n")


def status(message: str, *, err: TextIO | None = None) -> None:
    print(f"mullama: {message}", file=err or sys.stderr, flush=True)


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()


@contextmanager
def loading_line(name: str, *, verbose: bool):
    """'Loading NAME...' on stderr while the model loads: a transient line on a terminal,
    log lines with --verbose otherwise."""
    started = time.perf_counter()
    tty = stderr_is_tty()
    if tty:
        sys.stderr.write(f"Loading {name}...")
        sys.stderr.flush()
    elif verbose:
        status(f"loading {name}")
    try:
        yield
    finally:
        if tty:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
    if verbose:
        status(f"loaded {name} in {time.perf_counter() - started:.2f} s")


class ProgressReporter:
    """--verbose progress updates on stderr (an `on_progress` callback): how many tokens so
    far, how fast, how long; also while the model is still reading the prompt."""

    def __call__(self, progress: Any) -> None:
        status(
            f"progress: {progress.tokens} tokens, {progress.tokens_per_second:.1f} tok/s, "
            f"{progress.elapsed_s:.1f} s"
        )


def progress_reporter(verbose: bool) -> ProgressReporter | None:
    """A reporter with --verbose, unless stdout is a terminal (the lines would break up the
    reply on screen; the final statistics line still comes)."""
    return ProgressReporter() if verbose and not _stdout_is_tty() else None


def _stdout_is_tty() -> bool:
    try:
        return os.isatty(sys.stdout.fileno())
    except (OSError, ValueError):
        return False


def stats_line(event: Any, finish_reason: str | None) -> str:
    ttft = getattr(event, "time_to_first_token", None)
    ttft_text = f"{ttft:.3f} s" if ttft is not None else "n/a"
    return (
        f"prompt: {event.prompt_tokens} tokens, {event.prompt_tps:.1f} tok/s | "
        f"generation: {event.generation_tokens} tokens, {event.generation_tps:.1f} tok/s | "
        f"first token: {ttft_text} | peak memory: {event.peak_memory:.3f} GB | "
        f"finish: {finish_reason}"
    )
