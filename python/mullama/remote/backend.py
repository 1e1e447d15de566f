"""`RemoteModel`: a model on an OpenAI-compatible or Ollama server, streamed through the core.

A call opens the core's text stream first (its deadline starts then), sends the request and
waits for the server's answer on the caller's thread, so an HTTP refusal is raised as a typed
error by the call itself; the body is then read by a producer thread that pushes each text
delta into the core. The core applies the stop scanner, max_tokens, the deadline and
backpressure as for a local model: a full buffer blocks the push, so the thread stops reading
the socket and TCP holds the server back. A stop, a cancel, the deadline or an error closes
the connection.
"""

from __future__ import annotations

import atexit
import json
import ssl
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mullama._core import (
    ConfigError,
    StreamConfig,
    StreamTimeoutError,
    TextProducer,
    TokenStream,
    open_text_stream,
)
from mullama.chat import Message
from mullama.errors import Interrupted
from mullama.progress import ProgressTokenStream, with_progress
from mullama.remote.errors import RemoteError, RemoteProtocolError, status_error
from mullama.remote.http import HTTPRequest, Response, Stopped
from mullama.remote.wire import Dialect, OllamaDialect, OpenAIDialect, Piece
from mullama.request import GenerationRequest, takes_request
from mullama.result import GenerationResult, ResultCollector

DEFAULT_CONNECT_TIMEOUT_S = 10.0
MAX_WHOLE_BODY_BYTES = 64 * 1024 * 1024
"""The largest error or non-streamed reply body read into memory."""

_running_calls: weakref.WeakSet[RemoteCall] = weakref.WeakSet()


def running_calls() -> int:
    """How many remote replies are being read in this process (for leak checks)."""
    return sum(1 for call in list(_running_calls) if call.is_running())


def _stop_running_calls() -> None:
    # Reader threads are daemons: one still inside the core (a push, which runs without the
    # GIL) when the interpreter finalizes would be torn down mid-call and abort the process.
    # End every stream and wait for the readers first.
    calls = list(_running_calls)
    for call in calls:
        call.abandon(Interrupted())
    for call in calls:
        call.join(timeout=10)


# Like concurrent.futures: runs before the interpreter starts finalizing (plain atexit is later).
_register = getattr(threading, "_register_atexit", atexit.register)
_register(_stop_running_calls)


def dialect_for(url: str, model: str) -> Dialect:
    """The dialect and base URL a connect URL names; ConfigError for one it cannot use."""
    if not isinstance(url, str):
        raise ConfigError(f"url must be a string, got {type(url).__name__}")
    parts = urlsplit(url)
    if parts.scheme == "ollama":
        if not parts.hostname:
            raise ConfigError(f"{url!r} names no host (write ollama://host:port)")
        http = urlunsplit(("http", parts.netloc, "", "", ""))
        return OllamaDialect(http + "/api", model)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"cannot connect to {url!r}: use http(s)://host[:port]/v1 (OpenAI-compatible), "
            "http://host:port/api or ollama://host:port (Ollama)"
        )
    path = parts.path.rstrip("/")
    base = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    if path.endswith("/api"):
        return OllamaDialect(base, model)
    if not path:
        raise ConfigError(
            f"{url!r} has no API path: add /v1 for an OpenAI-compatible server or /api for "
            "Ollama (or write ollama://host:port)"
        )
    return OpenAIDialect(base, model)


class RemoteModel:
    """A model served over HTTP, with the surface of a `Context`: `generate_stream`,
    `generate` and `chat` take the same arguments and StreamConfig and give the same
    events, but carry no token ids (events' `token` is None).

    `streaming=False` says the server cannot stream: each reply is asked for whole and
    arrives as one event. A server that refuses a streamed request is asked again without
    streaming once, and from then on always so. `ssl_context` verifies https servers
    (default: the system's CAs); `headers` are sent with every request.
    """

    def __init__(
        self,
        url: str,
        *,
        model: str,
        api_key: str | None = None,
        streaming: bool = True,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        headers: dict[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise ConfigError("connect needs model=NAME: the name the server knows the model by")
        if api_key is not None and (not isinstance(api_key, str) or not api_key):
            raise ConfigError("api_key must be a non-empty string or None")
        if not isinstance(connect_timeout_s, int | float) or not connect_timeout_s > 0:
            raise ConfigError(
                f"invalid connect_timeout_s = {connect_timeout_s!r}: must be a number > 0"
            )
        self.url = url
        self.model = model
        self.dialect = dialect_for(url, model)
        self.streaming = bool(streaming)
        self.connect_timeout_s = float(connect_timeout_s)
        if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
            raise ConfigError(f"ssl_context must be an ssl.SSLContext, not {ssl_context!r}")
        self.ssl_context = ssl_context
        self._headers = {"Accept": "application/json, text/event-stream, application/x-ndjson"}
        if api_key is not None:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._headers.update(headers or {})

    @property
    def api(self) -> str:
        """ "openai" or "ollama"."""
        return self.dialect.name

    # -- generation (Context's surface) -----------------------------------------------------
    @takes_request
    def generate_stream(self, request: GenerationRequest) -> TokenStream | ProgressTokenStream:
        """Streams Token events for a raw `prompt` or chat `messages`; raises a RemoteError
        when the server refuses the request."""
        return with_progress(
            self.open_stream(request), request.on_progress, request.progress_interval_s
        )

    @takes_request
    def generate(self, request: GenerationRequest) -> GenerationResult:
        """The whole reply with its statistics."""
        collector = ResultCollector(frozenset())
        with self.open_stream(request) as stream:
            for event in stream:
                collector.add(event)
            return collector.result(stream.finish_reason, stream.stop_sequence)

    def chat(
        self, messages: Sequence[Message], config: StreamConfig | None = None, **overrides: Any
    ) -> GenerationResult:
        """One assistant turn for `messages` (the server applies its chat template)."""
        return self.generate(None, config, messages=messages, **overrides)

    def reset(self) -> None:
        """Nothing to forget: the server keeps no conversation between requests."""

    def open_stream(self, request: GenerationRequest) -> TokenStream:
        """Sends `request`, waits for the server's answer and returns the core stream its
        reply is pushed into (a RemoteError if the server refused)."""
        call = self.prepare(request)
        call.connect()
        return call.start()

    def prepare(self, request: GenerationRequest) -> RemoteCall:
        """The call for `request`, not yet sent (async callers connect it off the loop)."""
        if request.top_logprobs:
            raise ConfigError("top_logprobs is not available from remote backends")
        self.dialect.request(request, stream=self.streaming)  # refuses what the API cannot take
        producer, stream = open_text_stream(request.config)
        return RemoteCall(self, request, producer, stream)

    def __repr__(self) -> str:
        return f"RemoteModel({self.url!r}, model={self.model!r}, api={self.api!r})"


class RemoteCall:
    """One request: `connect()` sends it and reads the answer's head (raising the server's
    refusal), `start()` reads the body on a producer thread into the core stream."""

    def __init__(
        self,
        remote: RemoteModel,
        request: GenerationRequest,
        producer: TextProducer,
        stream: TokenStream,
    ) -> None:
        self.remote = remote
        self.request = request
        self.producer = producer
        self.stream: TokenStream | None = stream
        """The consumer's stream until `start()` hands it over."""
        self._http: HTTPRequest | None = None
        self._response: Response | None = None
        self._url = ""
        self._thread: threading.Thread | None = None
        self._finish_reason: str | None = None
        self._high_surrogate = ""
        left = stream.time_left()
        self._deadline = None if left is None else time.monotonic() + left

    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.is_running()

    def _should_stop(self) -> bool:
        return self.producer.stop_reason is not None

    def connect(self) -> None:
        """Sends the request and waits for the answer's status; raises the server's refusal
        (the stream is then closed) or StreamTimeoutError if the deadline passes first."""
        try:
            self._connect()
            if self.producer.stop_reason is not None:
                # Ended while the answer came (an async open given up): read nothing.
                self.close_http()
        except Stopped:
            # The stream was closed, or its deadline passed, while the server had not answered.
            self.close_http()
            cancelled = self.producer.stop_reason == "cancelled"
            self._close_stream()
            if cancelled:
                raise RemoteError(
                    f"the request to {self._url} was cancelled before it was answered",
                    url=self._url,
                ) from None
            timeout_ms = self.request.config.timeout_ms
            error = StreamTimeoutError(
                f"stream timed out: {self._url} had not answered before the deadline of "
                f"timeout_ms={timeout_ms} passed (raise timeout_ms, or set 0 for no deadline)"
            )
            error.timeout_ms = timeout_ms
            raise error from None
        except BaseException:
            self.close_http()
            self._close_stream()
            raise

    def _connect(self) -> None:
        remote = self.remote
        streaming = remote.streaming
        self._send(streaming)
        response = self._answer()
        if streaming and response.status >= 400:
            body = self._http_body()
            message, code = _error_of(body)
            if _refuses_streaming(response.status, message):
                # The server cannot stream: ask once more for the whole reply.
                remote.streaming = False
                self.close_http()
                self._send(False)
                response = self._answer()
            else:
                raise self._refusal(response, message, code)
        if response.status >= 400:
            message, code = _error_of(self._http_body())
            raise self._refusal(response, message, code)
        self._response = response

    def _send(self, stream: bool) -> None:
        url, body = self.remote.dialect.request(self.request, stream=stream)
        self._url = url
        self._http = HTTPRequest(
            url,
            json.dumps(body, ensure_ascii=False).encode(),
            self.remote._headers,
            connect_timeout_s=self.remote.connect_timeout_s,
            should_stop=self._should_stop,
            deadline=self._deadline,
            ssl_context=self.remote.ssl_context,
        )

    def _answer(self) -> Response:
        assert self._http is not None
        return self._http.response()

    def _http_body(self) -> bytes:
        assert self._http is not None
        try:
            return self._http.read_all(MAX_WHOLE_BODY_BYTES)
        except RemoteError:
            return b""

    def _refusal(self, response: Response, message: str, code: str | None) -> RemoteError:
        return status_error(
            self._url,
            response.status,
            message,
            code=code,
            model=self.remote.model,
            retry_after=_retry_after(response),
        )

    def _close_stream(self) -> None:
        if self.stream is not None:
            self.stream.close()

    def start(self) -> TokenStream:
        """Reads the body on a producer thread (returns at once) and hands the stream over:
        the call keeps no reference to it, so a stream dropped unclosed still ends (the core
        then tells the reader to stop, and the request is closed)."""
        stream, self.stream = self.stream, None
        if stream is None:
            raise RuntimeError("a remote call starts once")
        _running_calls.add(self)
        self._thread = threading.Thread(target=self._run, name="mullama-remote", daemon=True)
        self._thread.start()
        return stream

    def abandon(self, reason: BaseException) -> None:
        """Ends the stream with `reason` and closes the request (any thread)."""
        self.producer.fail(reason)
        self.close_http()

    def close_http(self) -> None:
        if self._http is not None:
            self._http.close()

    def _run(self) -> None:
        producer = self.producer
        try:
            self._pump()
        except Stopped:
            pass  # the stream ended (stop, cancel, deadline): nothing more to deliver
        except BaseException as exc:  # the consumer re-raises it as GenerationError
            producer.fail(exc)
        finally:
            self.close_http()

    def _pump(self) -> None:
        http, response, dialect = self._http, self._response, self.remote.dialect
        assert http is not None and response is not None
        if response.content_type not in dialect.stream_media_types:
            # A whole reply (asked for, or the server ignored "stream": true).
            body = http.read_all(MAX_WHOLE_BODY_BYTES)
            try:
                parsed = json.loads(body)
            except ValueError as exc:
                raise RemoteProtocolError(
                    f"{self._url} answered {body[:200]!r}, not JSON: {exc}", url=self._url
                ) from exc
            self._deliver(dialect.whole_reply(self._url, parsed))
            return
        parser = dialect.stream_lines(self._url)
        while (data := http.read()) is not None:
            for piece in parser.feed(data):
                if self._deliver(piece):
                    return
        for piece in parser.finish():
            if self._deliver(piece):
                return
        if self._finish_reason is not None:
            # The server said how the reply ended but left out its end marker: the reply
            # is whole all the same.
            self.producer.finish(self._finish_reason)
            return
        raise RemoteProtocolError(
            f"{self._url} closed the stream before the reply ended", url=self._url
        )

    def _deliver(self, piece: Piece) -> bool:
        """Pushes what `piece` carries; True once the stream is over."""
        producer = self.producer
        text = self._paired(piece.text)
        if text and not producer.push(text):
            return True
        if piece.prompt_tokens is not None:
            producer.set_prompt_tokens(piece.prompt_tokens)
        if piece.generation_tokens is not None:
            producer.set_generation_tokens(piece.generation_tokens)
        if piece.finish_reason is not None:
            self._finish_reason = piece.finish_reason
        if piece.done:
            producer.finish(self._finish_reason or "stop")
            return True
        return False

    def _paired(self, text: str) -> str:
        """JSON spells a character beyond the BMP as a \\u surrogate pair, which a server may
        split across two deltas: a trailing high half waits for the next delta. Halves that
        never pair are not text and become U+FFFD (one left at the end is dropped, as the
        core drops an unfinished character)."""
        text = self._high_surrogate + text
        self._high_surrogate = ""
        if text and "\ud800" <= text[-1] <= "\udbff":
            self._high_surrogate, text = text[-1], text[:-1]
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return text


def _error_of(body: bytes) -> tuple[str, str | None]:
    try:
        parsed = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()[:500], None
    return Dialect.error_message(parsed)


def _refuses_streaming(status: int, message: str) -> bool:
    return status in (400, 405, 415, 422, 501) and "stream" in message.lower()


def _retry_after(response: Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
