"""The two wire dialects a remote backend speaks: OpenAI-compatible (server-sent events) and
Ollama (one JSON object per line). Each builds its request bodies from a GenerationRequest and
turns what the server sends into `Piece`s; neither does any I/O.

Stop sequences are not sent: the core's stop scanner applies them to the remote text exactly
as to local text (a server that cut at a stop itself could not say which stop matched, nor
keep it with include_stop), and the connection is closed the moment one matches.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mullama._core import ConfigError, StreamConfig
from mullama.remote.errors import RemoteProtocolError, RemoteServerError
from mullama.request import GenerationRequest

_DEFAULTS = StreamConfig()


@dataclass
class Piece:
    """What one stream line (or a whole non-streamed reply) carries."""

    text: str = ""
    finish_reason: str | None = None
    """"stop" or "length" once the server ended the reply."""
    done: bool = False
    """The server's end-of-stream marker ([DONE], or Ollama's done: true)."""
    prompt_tokens: int | None = None
    generation_tokens: int | None = None


def _finish(reason: Any) -> str | None:
    if reason is None:
        return None
    # A length cut is the one end a caller acts on; every other way a server ends a reply
    # (stop, end of turn, content filter, ...) is an ordinary stop.
    return "length" if reason == "length" else "stop"


def _json_line(url: str, line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError as exc:
        raise malformed(url, line, f"not JSON: {exc}") from exc


def malformed(url: str, line: str, why: str) -> RemoteProtocolError:
    shown = line if len(line) <= 200 else line[:200] + "..."
    return RemoteProtocolError(f"malformed stream line from {url}: {shown!r} ({why})", url=url)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


class LineSplitter:
    """Bytes in, complete lines out (\\n, \\r\\n or \\r), each decoded as UTF-8: a line (and
    so a character) split across TCP reads waits for its end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._buffer = b""

    def feed(self, data: bytes) -> Iterator[str]:
        buffer = self._buffer + data
        lines = buffer.splitlines(keepends=True)
        # A line without its terminator (or "\r" that may be half of "\r\n") is unfinished.
        if lines and (not lines[-1].endswith((b"\n", b"\r")) or lines[-1].endswith(b"\r")):
            self._buffer = lines.pop()
        else:
            self._buffer = b""
        for raw in lines:
            yield self._decode(raw.rstrip(b"\r\n"))

    def finish(self) -> Iterator[str]:
        """The last line, if the body did not end with a line break."""
        rest, self._buffer = self._buffer, b""
        if rest.rstrip(b"\r\n"):
            yield self._decode(rest.rstrip(b"\r\n"))

    def _decode(self, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            shown = raw.decode("utf-8", "replace")
            raise malformed(self.url, shown, f"not UTF-8: {exc.reason}") from exc


class Dialect:
    """What the OpenAI and Ollama dialects both answer."""

    name = ""
    stream_media_types: tuple[str, ...] = ()

    def __init__(self, base_url: str, model: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model

    def request(self, request: GenerationRequest, *, stream: bool) -> tuple[str, dict[str, Any]]:
        """(URL, JSON body) of `request`."""
        raise NotImplementedError

    def stream_lines(self, url: str) -> StreamParser:
        raise NotImplementedError

    def whole_reply(self, url: str, body: Any) -> Piece:
        """The reply of a non-streamed answer."""
        raise NotImplementedError

    @staticmethod
    def error_message(body: Any) -> tuple[str, str | None]:
        """(message, code) of an error body (both dialects' spellings are accepted)."""
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            code = error.get("code")
            return str(error.get("message") or ""), code if isinstance(code, str) else None
        if isinstance(error, str):
            return error, None
        if isinstance(body, dict) and isinstance(body.get("detail"), str):
            return body["detail"], None
        return "", None


class StreamParser:
    """Lines of a streamed body in, Pieces out."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.lines = LineSplitter(url)

    def feed(self, data: bytes) -> Iterator[Piece]:
        for line in self.lines.feed(data):
            yield from self.line(line)

    def finish(self) -> Iterator[Piece]:
        for line in self.lines.finish():
            yield from self.line(line)
        yield from self.end()

    def line(self, line: str) -> Iterator[Piece]:
        raise NotImplementedError

    def end(self) -> Iterator[Piece]:
        return iter(())


def _mid_stream_error(url: str, body: dict[str, Any]) -> RemoteServerError:
    message, _ = Dialect.error_message(body)
    return RemoteServerError(
        f"{url} reported an error during the reply: {message or body!r}",
        url=url,
        server_message=message,
    )


# -- OpenAI-compatible ----------------------------------------------------------------------------
class OpenAIDialect(Dialect):
    """`/chat/completions` for messages, `/completions` for raw prompts, under the URL's path
    (e.g. http://host:8080/v1)."""

    name = "openai"
    stream_media_types = ("text/event-stream",)

    def request(self, request: GenerationRequest, *, stream: bool) -> tuple[str, dict[str, Any]]:
        config = request.config
        body: dict[str, Any] = {"model": self.model}
        if request.messages is not None:
            url = f"{self.base_url}/chat/completions"
            body["messages"] = [dict(m) for m in request.messages]
        else:
            url = f"{self.base_url}/completions"
            body["prompt"] = request.prompt
        body["max_tokens"] = config.max_tokens
        body["temperature"] = config.temperature
        body["top_p"] = config.top_p
        if config.seed is not None:
            body["seed"] = config.seed
        # Not in OpenAI's own API (which refuses unknown fields), but read by most
        # compatible servers (mullama, llama.cpp, vLLM): sent only when set away from the
        # default, so a default request stays valid everywhere.
        for field in ("top_k", "min_p", "repeat_penalty"):
            value = getattr(config, field)
            if value != getattr(_DEFAULTS, field):
                body[field] = value
        body["stream"] = stream
        if stream:
            body["stream_options"] = {"include_usage": True}
        return url, body

    def stream_lines(self, url: str) -> StreamParser:
        return _SSEParser(url)

    def whole_reply(self, url: str, body: Any) -> Piece:
        choice = _first_choice(url, body, json.dumps(body)[:200])
        message = choice.get("message")
        if isinstance(message, dict):
            text = message.get("content")
        else:
            text = choice.get("text")
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise RemoteProtocolError(f"{url} answered a reply without text: {body!r}", url=url)
        piece = Piece(text=text, finish_reason=_finish(choice.get("finish_reason")) or "stop")
        _usage(body, piece)
        piece.done = True
        return piece


def _first_choice(url: str, body: Any, line: str) -> dict[str, Any]:
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise malformed(url, line, "no choices")
    return choices[0]


def _usage(body: dict[str, Any], piece: Piece) -> None:
    usage = body.get("usage")
    if isinstance(usage, dict):
        piece.prompt_tokens = _count(usage.get("prompt_tokens"))
        piece.generation_tokens = _count(usage.get("completion_tokens"))


class _SSEParser(StreamParser):
    """Server-sent events: `data:` lines (several join with \\n) until a blank line; comments
    (`:` keep-alives) and other fields are skipped; `data: [DONE]` ends the stream. An error
    quotes the event's lines as the server sent them."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._data: list[str] = []
        self._lines: list[str] = []

    def line(self, line: str) -> Iterator[Piece]:
        if not line:
            yield from self.end()
            return
        if line.startswith(":"):
            return
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
            self._lines.append(line)
        elif name not in ("event", "id", "retry"):
            raise malformed(self.url, line, "not a server-sent event field")

    def end(self) -> Iterator[Piece]:
        if self._data:  # also a last event the server did not close with a blank line
            data, lines = "\n".join(self._data), "\n".join(self._lines)
            self._data, self._lines = [], []
            yield self._event(data, lines)

    def _event(self, data: str, lines: str) -> Piece:
        if data.strip() == "[DONE]":
            return Piece(done=True)
        try:
            body = json.loads(data)
        except ValueError as exc:
            raise malformed(self.url, lines, f"not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise malformed(self.url, lines, "not a JSON object")
        if "error" in body:
            raise _mid_stream_error(self.url, body)
        piece = Piece()
        _usage(body, piece)
        choices = body.get("choices")
        if choices == [] and "usage" in body:  # include_usage's closing chunk
            return piece
        choice = _first_choice(self.url, body, lines)
        delta = choice.get("delta")
        text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
        if text is not None and not isinstance(text, str):
            raise malformed(self.url, lines, "content is not a string")
        piece.text = text or ""
        piece.finish_reason = _finish(choice.get("finish_reason"))
        return piece


# -- Ollama -------------------------------------------------------------------------------------
class OllamaDialect(Dialect):
    """`/api/chat` for messages, `/api/generate` (raw) for prompts."""

    name = "ollama"
    stream_media_types = ("application/x-ndjson", "application/ndjson", "application/jsonl")

    def request(self, request: GenerationRequest, *, stream: bool) -> tuple[str, dict[str, Any]]:
        config = request.config
        body: dict[str, Any] = {"model": self.model}
        if request.messages is not None:
            url = f"{self.base_url}/chat"
            body["messages"] = [dict(m) for m in request.messages]
        else:
            if not isinstance(request.prompt, str):
                raise ConfigError(
                    "an Ollama server takes text prompts, not token ids: pass the prompt as text"
                )
            url = f"{self.base_url}/generate"
            body["prompt"] = request.prompt
            body["raw"] = True
        options: dict[str, Any] = {
            "num_predict": config.max_tokens,
            "temperature": config.temperature,
            "top_k": config.top_k,
            "top_p": config.top_p,
            "min_p": config.min_p,
            "repeat_penalty": config.repeat_penalty,
        }
        if config.seed is not None:
            options["seed"] = config.seed
        body["options"] = options
        body["stream"] = stream
        return url, body

    def stream_lines(self, url: str) -> StreamParser:
        return _NDJSONParser(url)

    def whole_reply(self, url: str, body: Any) -> Piece:
        if not isinstance(body, dict):
            raise RemoteProtocolError(f"{url} answered {body!r}, not a JSON object", url=url)
        piece = _ollama_piece(url, body, json.dumps(body)[:200])
        piece.done = True
        piece.finish_reason = piece.finish_reason or "stop"
        return piece


def _ollama_piece(url: str, body: dict[str, Any], line: str) -> Piece:
    if "error" in body:
        raise _mid_stream_error(url, body)
    message = body.get("message")
    text = message.get("content") if isinstance(message, dict) else body.get("response")
    if text is not None and not isinstance(text, str):
        raise malformed(url, line, "content is not a string")
    piece = Piece(text=text or "")
    if body.get("done") is True:
        piece.done = True
        piece.finish_reason = _finish(body.get("done_reason") or "stop")
        piece.prompt_tokens = _count(body.get("prompt_eval_count"))
        piece.generation_tokens = _count(body.get("eval_count"))
    return piece


class _NDJSONParser(StreamParser):
    def line(self, line: str) -> Iterator[Piece]:
        if not line.strip():
            return
        body = _json_line(self.url, line)
        if not isinstance(body, dict):
            raise malformed(self.url, line, "not a JSON object")
        yield _ollama_piece(self.url, body, line)
