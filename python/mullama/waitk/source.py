"""The source: text chunks arriving over time, cut into words as they come, and the readers
that feed it from a str, an iterable (on a thread) or an async iterable (on the loop)."""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import AsyncIterable, Callable, Iterable
from typing import Any

from mullama._core import ConfigError

MAX_UNREAD_CHARS = 64 * 1024
"""Source text the reader takes ahead of the policy before it waits (backpressure on the
source; the whole source must fit in the context anyway)."""
SOURCE_POLL_S = 0.05
"""How often a job waiting for source words checks whether it was told to stop."""

Source = str | Iterable[str] | AsyncIterable[str]


class SourceWords:
    """Source text arriving in chunks, cut into words as it comes (thread-safe).

    A word is a run of non-whitespace characters; it is complete, and counts as arrived,
    once whitespace follows it or the source ends. Feeding waits while more than
    MAX_UNREAD_CHARS of text are ahead of what the policy has read."""

    def __init__(self, max_unread_chars: int = MAX_UNREAD_CHARS) -> None:
        self._cond = threading.Condition()
        self._text: list[str] = []
        self._length = 0
        self._spans: list[tuple[int, int]] = []  # complete words: (start, end) in the text
        self._arrivals: list[float] = []
        self._open_start: int | None = None  # start of the word still being received
        self._ended = False
        self._closed = False
        self._error: BaseException | None = None
        self._read_chars = 0
        self._wanted = 0
        self._max_unread = max_unread_chars
        self._joined = ""

    # -- the source side ---------------------------------------------------------------
    def feed(self, chunk: str) -> bool:
        """Adds a chunk; False once the reader is gone (stop feeding). Waits (bounded by the
        reader's polling) while too much is unread."""
        if not isinstance(chunk, str):
            self.fail(
                ConfigError(f"source chunks must be str, got {type(chunk).__name__}: {chunk!r:.40}")
            )
            return False
        with self._cond:
            while self._must_wait():
                self._cond.wait(SOURCE_POLL_S)
            if self._closed or self._ended:
                return False
            self._take(chunk, time.monotonic())
            self._cond.notify_all()
            return True

    def room(self) -> bool:
        """Whether a feed would not wait (for async feeders, which must not block)."""
        with self._cond:
            return not self._must_wait()

    def _must_wait(self) -> bool:
        # Only while the reader has all the words it asked for: a reader waiting for a
        # word that is not complete yet must get the text that completes it.
        return (
            not self._closed
            and self._length - self._read_chars > self._max_unread
            and len(self._spans) >= self._wanted
        )

    def end(self) -> None:
        """The source has ended: its last word is complete."""
        with self._cond:
            if self._ended:
                return
            if self._open_start is not None:
                self._spans.append((self._open_start, self._length))
                self._arrivals.append(time.monotonic())
                self._open_start = None
            self._ended = True
            self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        """The source failed: the generation ends with `error`."""
        with self._cond:
            if self._error is None:
                self._error = error
            self._ended = True
            self._cond.notify_all()

    def _take(self, chunk: str, now: float) -> None:
        base = self._length
        self._text.append(chunk)
        self._length += len(chunk)
        self._joined = ""
        start = self._open_start
        for offset, char in enumerate(chunk):
            if char.isspace():
                if start is not None:
                    self._spans.append((start, base + offset))
                    self._arrivals.append(now)
                    start = None
            elif start is None:
                start = base + offset
        self._open_start = start

    # -- the reader side ---------------------------------------------------------------
    def close(self) -> None:
        """The reader is gone: feeding stops."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def wait_words(self, n: int, should_stop: Callable[[], bool]) -> int | None:
        """Waits until `n` words are complete or the source has ended; returns how many
        words to read (n, or all there are if fewer), None if `should_stop()` meanwhile.
        Raises the source's error."""
        with self._cond:
            if n > self._wanted:
                self._wanted = n
                self._cond.notify_all()
            while True:
                if self._error is not None:
                    raise self._error
                if len(self._spans) >= n:
                    return n
                if self._ended:
                    return len(self._spans)
                if should_stop():
                    return None
                self._cond.wait(SOURCE_POLL_S)

    def text_through(self, n: int) -> str:
        """The source text from its first word to the end of word `n` (original spacing);
        marks that much as read."""
        with self._cond:
            if n == 0:
                return ""
            start, end = self._spans[0][0], self._spans[n - 1][1]
            self._read_chars = max(self._read_chars, end)
            self._cond.notify_all()
            if not self._joined:
                self._joined = "".join(self._text)
            return self._joined[start:end]

    def snapshot(self) -> tuple[list[float], bool]:
        """(arrival time of each complete word, whether the source has ended)."""
        with self._cond:
            return list(self._arrivals), self._ended and self._error is None


def pump_source(source: Iterable[str], words: SourceWords) -> None:
    """Feeds a (possibly blocking) iterable of chunks into `words`, then ends it; run on
    its own thread. Stops after the chunk in hand once the reader is gone."""
    iterator = iter(source)
    try:
        for chunk in iterator:
            if not words.feed(chunk):
                break
        else:
            words.end()
    except BaseException as exc:  # the generation ends with the source's error
        words.fail(exc)
    finally:
        if inspect.isgenerator(iterator):  # never the caller's file or socket
            iterator.close()


async def pump_async_source(source: AsyncIterable[str], words: SourceWords) -> None:
    """Feeds an async iterable of chunks into `words`, then ends it (an event-loop task)."""
    import anyio

    iterator = source.__aiter__()
    try:
        while True:
            try:
                chunk = await iterator.__anext__()
            except StopAsyncIteration:
                words.end()
                return
            # The reader is far behind: wait on the loop, not in feed(), which would block it.
            while not words.room():
                await anyio.sleep(SOURCE_POLL_S)
            if not words.feed(chunk):
                return
    except Exception as exc:  # the generation ends with the source's error
        words.fail(exc)
    finally:
        if inspect.isasyncgen(iterator):
            with anyio.CancelScope(shield=True):
                await iterator.aclose()


def source_kind(source: Any, *, allow_async: bool) -> str:
    """ "text", "iterable" or "async" for a valid source; ConfigError otherwise (before
    anything starts)."""
    if isinstance(source, str):
        if not source.strip():
            raise ConfigError("the source is empty: it has no words")
        return "text"
    if isinstance(source, AsyncIterable):
        if not allow_async:
            raise ConfigError(
                "an async iterable source needs AsyncContext.generate_stream_waitk; "
                "Context takes a str or an iterable of str"
            )
        return "async"
    if isinstance(source, bytes | bytearray) or not isinstance(source, Iterable):
        raise ConfigError(
            f"source must be a str or an iterable of str chunks, got {type(source).__name__}"
        )
    return "iterable"


def start_source(source: Source, kind: str, words: SourceWords) -> None:
    """Starts reading a "text" or "iterable" source into `words` (an "async" one is the
    caller's event loop's to pump with `pump_async_source`)."""
    if kind == "text":
        assert isinstance(source, str)
        words.feed(source)
        words.end()
    elif kind == "iterable":
        # A daemon thread: a source blocked in a read (a pipe, a socket) must not keep the
        # process alive; it stops feeding at its next chunk once the generation is over.
        threading.Thread(
            target=pump_source, args=(source, words), name="mullama-waitk-source", daemon=True
        ).start()
