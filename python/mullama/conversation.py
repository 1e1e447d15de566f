"""`Chat` and `AsyncChat`: a conversation with a local or remote model, kept in a ledger.

    chat = Chat(model_or_remote, ledger="chat.db", conversation="support")
    for token in chat.send("Hello"):
        print(token.text, end="")

`send` commits the user turn, then streams the reply; the reply is committed when its stream
ends: complete (finish reason "stop" or "length") with its statistics, or as cancelled
(closed early, Ctrl+C), timed out or failed, with the partial text kept apart. Only complete
turns are sent as history, so a broken reply never reaches the model again. Reopening the
file (another `Chat` on the same ledger and conversation) continues where it stopped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import anyio
import anyio.to_thread

from mullama._core import ConfigError, StreamConfig, StreamTimeoutError, Token
from mullama.ledger import Ledger, ReplyRecord, Turn
from mullama.request import build_config

_STATS = ("prompt_tokens", "generation_tokens", "time_to_first_token", "generation_tps", "elapsed")


def _stats_of(event: Any) -> dict[str, Any]:
    return {} if event is None else {name: getattr(event, name, None) for name in _STATS}


def _status_of(finish_reason: str | None) -> str:
    if finish_reason in ("stop", "length"):
        return "complete"
    if finish_reason == "timeout":
        return "timeout"
    if finish_reason == "cancelled":
        return "cancelled"
    return "failed"


def _status_of_error(exc: BaseException, cancelled: tuple[type[BaseException], ...] = ()) -> str:
    """How a reply ended by `exc` is recorded; `cancelled`: the event loop's cancellation."""
    if isinstance(exc, StreamTimeoutError):
        return "timeout"
    if isinstance(exc, (KeyboardInterrupt, GeneratorExit, *cancelled)):
        return "cancelled"
    return "failed"


class _Conversation:
    """The ledger side both twins share: which file and conversation, and what a turn
    writes."""

    def __init__(
        self, ledger: str | os.PathLike[str] | Ledger, conversation: str, system: str | None
    ) -> None:
        if isinstance(ledger, Ledger):
            self.ledger, self._owns_ledger = ledger, False
        elif isinstance(ledger, str | os.PathLike):
            self.ledger, self._owns_ledger = Ledger(ledger), True
        else:
            raise ConfigError(
                f"ledger must be a file path or a Ledger, got {type(ledger).__name__}"
            )
        self.name = conversation
        self.id = self.ledger.open_conversation(conversation, system)

    def begin(self, text: str) -> tuple[int, list[dict[str, str]]]:
        """Commits the user turn; returns its id and the history to send."""
        if not isinstance(text, str) or not text.strip():
            raise ConfigError("a chat message must be non-empty text")
        user_turn = self.ledger.add_user_turn(self.id, text)
        return user_turn, self.ledger.messages(self.id)

    def end(self, user_turn: int, record: ReplyRecord) -> int:
        return self.ledger.add_reply(self.id, user_turn, record)

    def close(self) -> None:
        if self._owns_ledger:
            self.ledger.close()


class _Reply:
    """What a reply stream has shown so far and how it ended (shared by both twins)."""

    def __init__(self, conversation: _Conversation, user_turn: int) -> None:
        self.conversation = conversation
        self.user_turn = user_turn
        self.parts: list[str] = []
        self.last: Any = None
        self.turn_id: int | None = None
        self.status: str | None = None

    def add(self, event: Token) -> None:
        self.parts.append(event.text)
        self.last = event

    def record(self, status: str, stream: Any, error: BaseException | None = None) -> ReplyRecord:
        finish_reason = getattr(stream, "finish_reason", None) if stream is not None else None
        return ReplyRecord(
            status=status,
            text="".join(self.parts),
            finish_reason=finish_reason if status == "complete" else (finish_reason or status),
            stop_sequence=getattr(stream, "stop_sequence", None) if stream is not None else None,
            error=None if error is None else f"{type(error).__name__}: {error}",
            stats=_stats_of(self.last),
        )

    def written(self, status: str, turn_id: int) -> None:
        self.status, self.turn_id = status, turn_id

    @property
    def text(self) -> str:
        return "".join(self.parts)


def _check_target(target: Any, wants: str) -> None:
    if not callable(getattr(target, "generate_stream", None)):
        raise ConfigError(
            f"Chat needs a {wants} (something with generate_stream), got {type(target).__name__}"
        )


class Chat:
    """A conversation kept in the SQLite file `ledger` under the name `conversation`.

    `model_or_remote` is a Model (a Context is made on it), a Context, or a RemoteModel
    (`Model.connect(...)`). `system`, when given, becomes the conversation's system prompt.
    """

    def __init__(
        self,
        model_or_remote: Any,
        ledger: str | os.PathLike[str] | Ledger,
        conversation: str = "default",
        *,
        system: str | None = None,
    ) -> None:
        self.target = _generation_target(model_or_remote)
        self._conversation = _Conversation(ledger, conversation, system)

    @property
    def ledger(self) -> Ledger:
        return self._conversation.ledger

    @property
    def conversation(self) -> str:
        return self._conversation.name

    def send(self, text: str, config: StreamConfig | None = None, **overrides: Any) -> ReplyStream:
        """Commits `text` as the user's turn and streams the reply (iterate the result); the
        reply is committed when the stream ends or is closed."""
        config = build_config(config, overrides)  # a bad value fails before anything is written
        user_turn, messages = self._conversation.begin(text)
        reply = _Reply(self._conversation, user_turn)
        try:
            stream = self.target.generate_stream(config=config, messages=messages)
        except BaseException as exc:  # refused before it started: recorded, then raised
            status = _status_of_error(exc)
            reply.written(
                status, self._conversation.end(user_turn, reply.record(status, None, exc))
            )
            raise
        return ReplyStream(stream, reply)

    def history(self) -> list[dict[str, str]]:
        """The messages the next turn sends: the system prompt and every complete turn."""
        return self.ledger.messages(self._conversation.id)

    def turns(self) -> list[Turn]:
        """Every turn as recorded, replies that did not complete included."""
        return self.ledger.turns(self._conversation.id)

    def clear(self) -> None:
        """Forgets this conversation's turns."""
        self.ledger.clear(self._conversation.id)

    def set_system(self, system: str | None) -> None:
        """Sets (None: removes) the conversation's system prompt."""
        self.ledger.set_system(self._conversation.id, system)

    def close(self) -> None:
        self._conversation.close()

    def __enter__(self) -> Chat:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _generation_target(model_or_remote: Any) -> Any:
    from mullama.model import Model

    if isinstance(model_or_remote, Model):
        from mullama.context import Context

        return Context(model_or_remote)
    _check_target(model_or_remote, "Model, Context or RemoteModel")
    return model_or_remote


class ReplyStream:
    """The reply's Token events; the ledger gets the reply when they end (or on close)."""

    def __init__(self, stream: Any, reply: _Reply) -> None:
        self._stream = stream
        self._reply = reply

    def __iter__(self) -> Iterator[Token]:
        return self

    def __next__(self) -> Token:
        reply = self._reply
        if reply.status is not None:
            raise StopIteration
        try:
            event = next(self._stream)
        except StopIteration:
            self._write(_status_of(self._stream.finish_reason))
            raise
        except BaseException as exc:
            self._stream.close()
            self._write(_status_of_error(exc), exc)
            raise
        reply.add(event)
        return event

    def _write(self, status: str, error: BaseException | None = None) -> None:
        reply = self._reply
        if reply.status is None:
            record = reply.record(status, self._stream, error)
            reply.written(status, reply.conversation.end(reply.user_turn, record))

    def close(self) -> None:
        """Ends the reply; one that had not completed is recorded as cancelled."""
        if self._reply.status is None:
            self._stream.close()
            self._write("cancelled")

    def __enter__(self) -> ReplyStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - at garbage collection nothing can be raised
            pass

    @property
    def text(self) -> str:
        """The reply's text so far."""
        return self._reply.text

    @property
    def status(self) -> str | None:
        """None while streaming; then "complete", "cancelled", "timeout" or "failed"."""
        return self._reply.status

    @property
    def turn_id(self) -> int | None:
        """The assistant turn's id in the ledger, once written."""
        return self._reply.turn_id

    @property
    def finish_reason(self) -> str | None:
        return self._stream.finish_reason

    @property
    def stop_sequence(self) -> str | None:
        return self._stream.stop_sequence

    @property
    def stats(self) -> dict[str, Any]:
        return self._stream.stats


# -- async -----------------------------------------------------------------------------------
class AsyncChat:
    """The async twin of `Chat`: `await chat.send(text)` returns an `AsyncReplyStream`.
    `model_or_remote` is an AsyncModel, AsyncContext or AsyncRemoteModel (a Model or a
    RemoteModel is wrapped in its async twin); ledger writes run in a worker thread."""

    def __init__(
        self,
        model_or_remote: Any,
        ledger: str | os.PathLike[str] | Ledger,
        conversation: str = "default",
        *,
        system: str | None = None,
    ) -> None:
        self.target = _async_generation_target(model_or_remote)
        self._conversation = _Conversation(ledger, conversation, system)

    @property
    def ledger(self) -> Ledger:
        return self._conversation.ledger

    async def send(
        self, text: str, config: StreamConfig | None = None, **overrides: Any
    ) -> AsyncReplyStream:
        config = build_config(config, overrides)
        user_turn, messages = await anyio.to_thread.run_sync(self._conversation.begin, text)
        reply = _Reply(self._conversation, user_turn)
        try:
            stream = self.target.generate_stream(config=config, messages=messages)
        except BaseException as exc:  # refused before it started: recorded, then raised
            status = _status_of_error(exc)
            record = reply.record(status, None, exc)
            with anyio.CancelScope(shield=True):
                turn_id = await anyio.to_thread.run_sync(self._conversation.end, user_turn, record)
            reply.written(status, turn_id)
            raise
        return AsyncReplyStream(stream, reply)

    async def history(self) -> list[dict[str, str]]:
        return await anyio.to_thread.run_sync(self.ledger.messages, self._conversation.id)

    async def turns(self) -> list[Turn]:
        return await anyio.to_thread.run_sync(self.ledger.turns, self._conversation.id)

    def close(self) -> None:
        self._conversation.close()


def _async_generation_target(model_or_remote: Any) -> Any:
    from mullama.aio.model import AsyncContext, AsyncModel
    from mullama.model import Model
    from mullama.remote import AsyncRemoteModel, RemoteModel

    if isinstance(model_or_remote, Model | AsyncModel):
        return AsyncContext(model_or_remote)
    if isinstance(model_or_remote, RemoteModel):
        return AsyncRemoteModel(model_or_remote)
    _check_target(model_or_remote, "AsyncModel, AsyncContext or AsyncRemoteModel")
    return model_or_remote


class AsyncReplyStream:
    """Async iterator of the reply's Token events; the ledger gets the reply at the end."""

    def __init__(self, stream: Any, reply: _Reply) -> None:
        self._stream = stream
        self._reply = reply

    def __aiter__(self) -> AsyncReplyStream:
        return self

    async def __anext__(self) -> Token:
        reply = self._reply
        if reply.status is not None:
            raise StopAsyncIteration
        try:
            event = await self._stream.__anext__()
        except StopAsyncIteration:
            await self._write(_status_of(self._stream.finish_reason))
            raise
        except BaseException as exc:
            await self._stream.aclose()
            await self._write(_status_of_error(exc, (anyio.get_cancelled_exc_class(),)), exc)
            raise
        reply.add(event)
        return event

    async def _write(self, status: str, error: BaseException | None = None) -> None:
        reply = self._reply
        if reply.status is not None:
            return
        record = reply.record(status, self._stream, error)
        reply.status = status  # claimed at once: a second writer does nothing
        # Shielded: a reply cancelled by its task is still recorded as cancelled.
        with anyio.CancelScope(shield=True):
            turn_id = await anyio.to_thread.run_sync(
                reply.conversation.end, reply.user_turn, record
            )
        reply.written(status, turn_id)

    async def aclose(self) -> None:
        if self._reply.status is None:
            await self._stream.aclose()
            await self._write("cancelled")

    async def __aenter__(self) -> AsyncReplyStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def text(self) -> str:
        return self._reply.text

    @property
    def status(self) -> str | None:
        return self._reply.status

    @property
    def turn_id(self) -> int | None:
        return self._reply.turn_id

    @property
    def finish_reason(self) -> str | None:
        return self._stream.finish_reason


__all__ = ["AsyncChat", "AsyncReplyStream", "Chat", "ReplyStream"]
