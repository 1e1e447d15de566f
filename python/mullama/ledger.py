"""`Ledger`: conversations kept in an SQLite file (the stdlib sqlite3, WAL mode).

The ledger never holds a partial reply as a reply: a user turn is committed on its own
before its reply is generated; an assistant turn is written only once its stream has ended,
in one transaction with its finish reason and statistics. A reply that was cancelled, timed
out or failed is written with that status and its partial text in a column of its own, and
is never part of the history a conversation sends next. A process killed at any moment
leaves the file consistent: the last user turn, and no half-written reply.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any

from mullama._core import ConfigError

SCHEMA_VERSION = 1

STATUSES = ("complete", "cancelled", "timeout", "failed")
"""A turn's status: user and system turns are always complete."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    system TEXT,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    status TEXT NOT NULL CHECK (status IN ('complete', 'cancelled', 'timeout', 'failed')),
    -- The text of a complete turn; NULL for a reply that did not complete.
    content TEXT,
    -- What an incomplete reply had shown before it ended; NULL for a complete turn.
    partial_text TEXT,
    reply_to INTEGER REFERENCES turns(id),
    finish_reason TEXT,
    stop_sequence TEXT,
    error TEXT,
    prompt_tokens INTEGER,
    generation_tokens INTEGER,
    time_to_first_token REAL,
    generation_tps REAL,
    elapsed REAL,
    created_at REAL NOT NULL,
    CHECK ((status = 'complete') = (content IS NOT NULL)),
    CHECK ((status = 'complete') = (partial_text IS NULL))
);
CREATE INDEX IF NOT EXISTS turns_by_conversation ON turns (conversation_id, id);
"""


@dataclass(frozen=True)
class Turn:
    """One row of a conversation."""

    id: int
    role: str
    status: str
    content: str | None
    partial_text: str | None
    reply_to: int | None
    finish_reason: str | None
    stop_sequence: str | None
    error: str | None
    prompt_tokens: int | None
    generation_tokens: int | None
    time_to_first_token: float | None
    generation_tps: float | None
    elapsed: float | None
    created_at: float

    @property
    def complete(self) -> bool:
        return self.status == "complete"


@dataclass(frozen=True)
class ReplyRecord:
    """How a reply ended, written in one transaction."""

    status: str
    text: str
    finish_reason: str | None = None
    stop_sequence: str | None = None
    error: str | None = None
    stats: dict[str, Any] | None = None


_TURN_COLUMNS = (
    "id, role, status, content, partial_text, reply_to, finish_reason, stop_sequence, error, "
    "prompt_tokens, generation_tokens, time_to_first_token, generation_tps, elapsed, created_at"
)


class Ledger:
    """An SQLite ledger file holding any number of named conversations. One connection,
    shared by the threads of this process under a lock; other processes may open the same
    file (WAL readers never block the writer)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        try:
            self._db = sqlite3.connect(
                self.path, timeout=10.0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open the ledger {self.path!r}: {exc}") from exc
        self._lock = threading.Lock()
        try:
            with self._lock:
                self._db.execute("PRAGMA journal_mode=WAL")
                # A committed turn survives a crash of the process and of the machine.
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.execute("PRAGMA foreign_keys=ON")
                version = self._db.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise ConfigError(
                        f"the ledger {self.path!r} was written by a newer mullama (schema "
                        f"{version}; this one reads {SCHEMA_VERSION})"
                    )
                self._db.executescript(
                    f"BEGIN; {_SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;"
                )
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise ConfigError(f"{self.path!r} is not a mullama ledger: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- conversations ----------------------------------------------------------------------
    def conversations(self) -> list[str]:
        """The conversations' names, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT name FROM conversations ORDER BY id").fetchall()
        return [name for (name,) in rows]

    def open_conversation(self, name: str, system: str | None = None) -> int:
        """The id of conversation `name`, created if new; a `system` prompt given replaces
        the stored one."""
        if not isinstance(name, str) or not name:
            raise ConfigError("a conversation's name must be a non-empty string")
        if system is not None and not isinstance(system, str):
            raise ConfigError(f"system must be a string, got {type(system).__name__}")
        with self._lock, self._transaction():
            self._db.execute(
                "INSERT OR IGNORE INTO conversations (name, system, created_at) VALUES (?, ?, ?)",
                (name, system, time.time()),
            )
            if system is not None:
                self._db.execute(
                    "UPDATE conversations SET system = ? WHERE name = ?", (system, name)
                )
            (conversation_id,) = self._db.execute(
                "SELECT id FROM conversations WHERE name = ?", (name,)
            ).fetchone()
        return int(conversation_id)

    def system(self, conversation_id: int) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT system FROM conversations WHERE id = ?", (conversation_id,)
            ).fetchone()
        return None if row is None else row[0]

    def set_system(self, conversation_id: int, system: str | None) -> None:
        """Replaces (None: removes) the conversation's system prompt."""
        with self._lock, self._transaction():
            self._db.execute(
                "UPDATE conversations SET system = ? WHERE id = ?", (system, conversation_id)
            )

    def clear(self, conversation_id: int) -> None:
        """Forgets the conversation's turns (its name and system prompt stay)."""
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM turns WHERE conversation_id = ?", (conversation_id,))

    # -- turns ------------------------------------------------------------------------------
    def add_user_turn(self, conversation_id: int, text: str) -> int:
        """Commits a user turn (durable when this returns); returns its id."""
        with self._lock, self._transaction():
            cursor = self._db.execute(
                "INSERT INTO turns (conversation_id, role, status, content, created_at) "
                "VALUES (?, 'user', 'complete', ?, ?)",
                (conversation_id, text, time.time()),
            )
        return int(cursor.lastrowid or 0)

    def add_reply(self, conversation_id: int, reply_to: int, record: ReplyRecord) -> int:
        """Commits the assistant turn answering `reply_to`, with how it ended, in one
        transaction; returns its id."""
        if record.status not in STATUSES:
            raise ConfigError(f"invalid reply status {record.status!r} (one of {STATUSES})")
        complete = record.status == "complete"
        stats = record.stats or {}
        with self._lock, self._transaction():
            cursor = self._db.execute(
                "INSERT INTO turns (conversation_id, role, status, content, partial_text, "
                "reply_to, finish_reason, stop_sequence, error, prompt_tokens, "
                "generation_tokens, time_to_first_token, generation_tps, elapsed, created_at) "
                "VALUES (?, 'assistant', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    conversation_id,
                    record.status,
                    record.text if complete else None,
                    None if complete else record.text,
                    reply_to,
                    record.finish_reason,
                    record.stop_sequence,
                    record.error,
                    stats.get("prompt_tokens"),
                    stats.get("generation_tokens"),
                    stats.get("time_to_first_token"),
                    stats.get("generation_tps"),
                    stats.get("elapsed"),
                    time.time(),
                ),
            )
        return int(cursor.lastrowid or 0)

    def turns(self, conversation_id: int) -> list[Turn]:
        """Every turn, replies that did not complete included, in order."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_TURN_COLUMNS} FROM turns WHERE conversation_id = ? ORDER BY id",
                (conversation_id,),
            ).fetchall()
        return [Turn(*row) for row in rows]

    def messages(self, conversation_id: int) -> list[dict[str, str]]:
        """The conversation as a model reads it: the system prompt, then every complete
        turn (replies that did not complete are left out)."""
        system = self.system(conversation_id)
        with self._lock:
            rows = self._db.execute(
                "SELECT role, content FROM turns WHERE conversation_id = ? AND status = "
                "'complete' ORDER BY id",
                (conversation_id,),
            ).fetchall()
        head = [{"role": "system", "content": system}] if system else []
        return head + [{"role": role, "content": content} for role, content in rows]

    def integrity_check(self) -> str:
        """SQLite's PRAGMA integrity_check ("ok" for an intact file)."""
        with self._lock:
            return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error): the writer lock is taken up front, so
    two processes writing one file wait for each other instead of failing mid-way."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self.db.execute("ROLLBACK" if exc_type is not None else "COMMIT")
