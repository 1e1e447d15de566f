"""Writing generated text (flushed per event, blocking when a pipe is full) and the
status lines on stderr (load progress, --verbose statistics)."""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import Any, BinaryIO, TextIO

PROGRESS_INTERVAL_S = 2.0


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


class ProgressTicker:
    """With --verbose and stdout not a terminal, a progress line every few seconds."""

    def __init__(self, enabled: bool, interval_s: float = PROGRESS_INTERVAL_S) -> None:
        self.enabled = enabled and not _stdout_is_tty()
        self.interval_s = interval_s
        self.started = time.perf_counter()
        self._next = self.started + interval_s

    def tick(self, event: Any) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if now < self._next:
            return
        self._next = now + self.interval_s
        status(
            f"progress: {event.generation_tokens} tokens, {event.generation_tps:.1f} tok/s, "
            f"{now - self.started:.1f} s"
        )


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
