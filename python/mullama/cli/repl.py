"""Reading the chat's input on a terminal: readline line editing, history across turns and
sessions (in a file under the user's state folder), and multi-line messages between
triple quotes, as Ollama's REPL has them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mullama.cli.common import decode_utf8
from mullama.cli.exit_codes import UsageError

HISTORY_FILE_ENV = "MULLAMA_HISTORY_FILE"
HISTORY_LENGTH = 1000
QUOTES = '"""'
PROMPT = ">>> "
CONTINUATION = "... "


def history_file() -> Path:
    """MULLAMA_HISTORY_FILE, or $XDG_STATE_HOME/mullama/history (~/.local/state/...)."""
    configured = os.environ.get(HISTORY_FILE_ENV)
    if configured:
        return Path(configured).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "mullama" / "history"


class LineReader:
    """Messages typed by the user: one line, or several between triple quotes.

    On a terminal, readline edits lines and keeps their history; the history file is
    created on the first line read (so only a chat creates it), and each line is appended
    at once, so a session that crashes keeps what was typed."""

    def __init__(self, interactive: bool) -> None:
        self.interactive = interactive
        self.readline = None
        self.path: Path | None = None
        if interactive:
            self._start_history()

    def _start_history(self) -> None:
        try:
            import readline  # input() edits lines once this is imported
        except ImportError:  # a Python built without readline: plain input() still works
            return
        self.readline = readline
        self.path = history_file()
        readline.set_history_length(HISTORY_LENGTH)
        try:
            readline.read_history_file(self.path)
        except OSError:  # not there yet (or unreadable): start with an empty history
            pass

    def _remember(self) -> None:
        if self.readline is None or self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                self.path.touch(mode=0o600)
            self.readline.append_history_file(1, self.path)
        except OSError:  # a read-only home: the history is a nicety, the chat goes on
            self.path = None

    def _line(self, prompt: str) -> str:
        if self.interactive:
            try:
                line = input(prompt)
            except UnicodeDecodeError as exc:  # the terminal sent bytes that are not UTF-8
                raise UsageError(f"that input is not valid UTF-8 ({exc.reason})") from None
            self._remember()
            return line
        raw = sys.stdin.buffer.readline()
        if not raw:
            raise EOFError
        return decode_utf8(raw, "standard input").rstrip("\r\n")

    def read(self) -> str:
        """The next message (stripped); raises EOFError at the end of input."""
        text = self._line(PROMPT if self.interactive else "").strip()
        if not text.startswith(QUOTES):
            return text
        body = text[len(QUOTES) :]
        if body.endswith(QUOTES):
            return body[: -len(QUOTES)].strip()
        lines = [body] if body else []
        while True:
            more = self._line(CONTINUATION if self.interactive else "")
            if more.rstrip().endswith(QUOTES):
                lines.append(more.rstrip()[: -len(QUOTES)])
                return "\n".join(lines).strip()
            lines.append(more)
