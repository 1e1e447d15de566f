"""`ScriptedServer`: a small OpenAI-compatible and Ollama HTTP server on 127.0.0.1 that
streams a scripted reply, for testing code that talks to remote backends without a model.

It streams the way real servers and proxies do at their most awkward: each event is cut into
several TCP writes (inside `data:`, inside the JSON, inside multi-byte characters), in HTTP
chunks that do not line up with the events, with keep-alive comments between events. Options
make it refuse streaming, answer an HTTP error, send a malformed line, stall, or stream
without end (for backpressure and cancel tests); it records what it received and sent.

    with ScriptedServer(["Hel", "lo"]) as server:
        remote = mullama.Model.connect(server.url + "/v1", model="scripted")
"""

from __future__ import annotations

import itertools
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Write sizes cycled through in awkward mode: small and uneven, so every boundary moves.
AWKWARD_WRITES = (1, 5, 2, 13, 3, 8)
WRITE_PAUSE_S = 0.0005
"""A pause between writes, so they leave as separate TCP segments (not merged by the kernel)."""


class ScriptedServer:
    """Serves `deltas` as the reply to every generation request (OpenAI's /v1/chat/completions
    and /v1/completions, Ollama's /api/chat and /api/generate).

    - `awkward`: cut the body into uneven writes with keep-alive comments (default True).
    - `streaming=False`: refuse `"stream": true` with HTTP 400 (a server that cannot stream).
    - `status`, `error`: answer every request with this HTTP status and error message.
    - `malformed`: a line sent (as is) after the deltas, instead of the end of the stream.
    - `truncate`: end the body right after the deltas, without the end-of-reply event.
    - `endless`: repeat the deltas until the client leaves; `stall_after`: after this many
      deltas send nothing more and hold the connection open until the client leaves.
    - `finish_reason`, `usage`: how the reply ends; `api_key`: require this bearer key.
    - `tls`: (certificate file, key file) to serve https.
    - `delay_s`: pause before each delta; `answer_after_s`: pause before the answer's head
      (a server busy before it answers).
    """

    def __init__(
        self,
        deltas: Sequence[str] = ("Hello", ", world", "!"),
        *,
        awkward: bool = True,
        streaming: bool = True,
        status: int | None = None,
        error: str = "scripted error",
        retry_after: str | None = None,
        malformed: str | None = None,
        truncate: bool = False,
        endless: bool = False,
        stall_after: int | None = None,
        finish_reason: str = "stop",
        usage: tuple[int, int] | None = (5, 3),
        api_key: str | None = None,
        model: str = "scripted",
        delay_s: float = 0.0,
        answer_after_s: float = 0.0,
        tls: tuple[str, str] | None = None,
    ) -> None:
        self.deltas = list(deltas)
        self.awkward = awkward
        self.streaming = streaming
        self.status = status
        self.error = error
        self.retry_after = retry_after
        self.malformed = malformed
        self.truncate = truncate
        self.endless = endless
        self.stall_after = stall_after
        self.finish_reason = finish_reason
        self.usage = usage
        self.api_key = api_key
        self.model = model
        self.delay_s = delay_s
        self.answer_after_s = answer_after_s
        self.tls = tls
        self.requests: list[tuple[str, dict[str, Any]]] = []
        """(path, JSON body) of every request received."""
        self.bytes_sent = 0
        """Body bytes written so far (all requests)."""
        self.disconnected = threading.Event()
        """Set when a client left in the middle of a reply (a write or a wait noticed)."""
        self.replies_finished = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """http(s)://127.0.0.1:PORT (add /v1 for OpenAI, /api for Ollama)."""
        assert self._httpd is not None, "the server is not started"
        host, port = self._httpd.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    def start(self) -> ScriptedServer:
        handler = type("Handler", (_Handler,), {"script": self})
        self._httpd = _QuietServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            # The handshake runs in the handler's thread, so a client that fails it (an
            # unknown certificate) cannot hold up the others.
            self._httpd.socket = context.wrap_socket(
                self._httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- what a reply is made of ------------------------------------------------------------
    def _deltas(self) -> Iterator[str]:
        source = itertools.cycle(self.deltas) if self.endless else iter(self.deltas)
        for n, delta in enumerate(source):
            if self.stall_after is not None and n >= self.stall_after:
                return
            yield delta

    def _count(self, n: int) -> None:
        with self._lock:
            self.bytes_sent += n


def _dumps(body: Any) -> str:
    try:
        return json.dumps(body, ensure_ascii=False).encode("utf-8").decode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (half of a split pair) only JSON can spell
        return json.dumps(body)


class _ClientLeft(Exception):
    pass


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that failed the TLS handshake or vanished: nothing to report


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    script: ScriptedServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet tests

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            self.request.do_handshake()
            self.request.settimeout(None)
        super().setup()

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/v1/models",):
            self._json(200, {"object": "list", "data": [{"id": self.script.model}]})
        else:
            self._json(404, {"error": f"no route GET {self.path}"})

    def do_POST(self) -> None:
        script = self.script
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._json(400, {"error": {"message": "body is not JSON"}})
            return
        path = self.path.rstrip("/")
        with script._lock:
            script.requests.append((path, body))
        ollama = path.startswith("/api/")
        if path not in ("/v1/chat/completions", "/v1/completions", "/api/chat", "/api/generate"):
            self._error(404, f"no route POST {self.path}", ollama)
            return
        if script.api_key is not None:
            if self.headers.get("Authorization") != f"Bearer {script.api_key}":
                self._error(401, "invalid api key", ollama)
                return
        if body.get("model") != script.model:
            code = 404 if ollama else 400
            self._error(code, f"model '{body.get('model')}' not found", ollama, "model_not_found")
            return
        if script.status is not None:
            self._error(script.status, script.error, ollama)
            return
        stream = body.get("stream", ollama)
        if stream and not script.streaming:
            self._error(400, "streaming is not supported by this server", ollama)
            return
        chat = path.endswith("chat") or path.endswith("chat/completions")
        if script.answer_after_s and script._stopping.wait(script.answer_after_s):
            return
        try:
            if not stream:
                self._whole(ollama, chat)
            elif ollama:
                self._stream(self._ndjson_lines(chat), "application/x-ndjson")
            else:
                self._stream(self._sse_events(chat), "text/event-stream")
        except _ClientLeft:
            script.disconnected.set()
            self.close_connection = True

    # -- answers --------------------------------------------------------------------------
    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, ollama: bool, code: str | None = None) -> None:
        headers = {}
        if self.script.retry_after is not None:
            headers["Retry-After"] = self.script.retry_after
        if ollama:
            self._json(status, {"error": message}, headers)
        else:
            body = {"error": {"message": message, "type": "scripted", "code": code}}
            self._json(status, body, headers)

    def _whole(self, ollama: bool, chat: bool) -> None:
        script = self.script
        text = "".join(script._deltas())
        prompt, completion = script.usage or (0, 0)
        if ollama:
            body: dict[str, Any] = {"model": script.model, "done": True}
            body["done_reason"] = script.finish_reason
            if chat:
                body["message"] = {"role": "assistant", "content": text}
            else:
                body["response"] = text
            if script.usage:
                body.update(prompt_eval_count=prompt, eval_count=completion)
        else:
            if chat:
                choice = {"index": 0, "message": {"role": "assistant", "content": text}}
            else:
                choice = {"index": 0, "text": text}
            choice["finish_reason"] = script.finish_reason
            body = {"id": "scripted", "object": "chat.completion", "choices": [choice]}
            if script.usage:
                body["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion}
        self._json(200, body)

    def _sse_events(self, chat: bool) -> Iterator[bytes]:
        script = self.script

        def event(choice: dict[str, Any], **extra: Any) -> bytes:
            body = {"id": "scripted", "object": "chunk", "choices": [choice], **extra}
            return f"data: {_dumps(body)}\n\n".encode()

        def delta(text: str, finish: str | None) -> dict[str, Any]:
            if chat:
                return {"index": 0, "delta": {"content": text}, "finish_reason": finish}
            return {"index": 0, "text": text, "finish_reason": finish}

        if chat:
            yield event({"index": 0, "delta": {"role": "assistant"}, "finish_reason": None})
        for text in script._deltas():
            if script.awkward:
                yield b": keep-alive\n\n"
            yield event(delta(text, None))
        if script.stall_after is not None or script.truncate:
            return  # nothing more (_stream holds the connection open when stalling)
        if script.malformed is not None:
            yield script.malformed.encode() + b"\n\n"
            return
        yield event(delta("", script.finish_reason))
        if script.usage:
            prompt, completion = script.usage
            usage = {"prompt_tokens": prompt, "completion_tokens": completion}
            yield f"data: {_dumps({'id': 'scripted', 'choices': [], 'usage': usage})}\n\n".encode()
        yield b"data: [DONE]\n\n"

    def _ndjson_lines(self, chat: bool) -> Iterator[bytes]:
        script = self.script

        def line(text: str, done: bool) -> bytes:
            body: dict[str, Any] = {"model": script.model, "done": done}
            if chat:
                body["message"] = {"role": "assistant", "content": text}
            else:
                body["response"] = text
            if done:
                body["done_reason"] = script.finish_reason
                if script.usage:
                    body.update(prompt_eval_count=script.usage[0], eval_count=script.usage[1])
            return (_dumps(body) + "\n").encode()

        for text in script._deltas():
            yield line(text, False)
        if script.stall_after is not None or script.truncate:
            return
        if script.malformed is not None:
            yield script.malformed.encode() + b"\n"
            return
        yield line("", True)

    def _stream(self, parts: Iterator[bytes], media_type: str) -> None:
        script = self.script
        self.send_response(200)
        self.send_header("Content-Type", media_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sizes = itertools.cycle(AWKWARD_WRITES)
        first = True
        for part in parts:
            if script.delay_s and not first:
                time.sleep(script.delay_s)
            first = False
            if not script.awkward:
                self._chunk(part)
                continue
            at = 0
            while at < len(part):
                size = next(sizes)
                self._chunk(part[at : at + size])
                at += size
                time.sleep(WRITE_PAUSE_S)
        if script.stall_after is not None:
            self._hold_until_client_leaves()
            return
        self._write(b"0\r\n\r\n")
        with script._lock:
            script.replies_finished += 1

    def _chunk(self, data: bytes) -> None:
        self._write(b"%x\r\n" % len(data) + data + b"\r\n")
        self.script._count(len(data))

    def _write(self, data: bytes) -> None:
        if self.script._stopping.is_set():
            raise _ClientLeft
        try:
            self.wfile.write(data)
        except OSError as exc:
            raise _ClientLeft from exc

    def _hold_until_client_leaves(self) -> None:
        sock = self.connection
        sock.settimeout(0.05)
        while not self.script._stopping.is_set():
            try:
                if sock.recv(1) == b"":
                    raise _ClientLeft
            except TimeoutError:
                continue
            except OSError as exc:
                raise _ClientLeft from exc
