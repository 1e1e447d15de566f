"""The engine worker: one model's forward pass for an out-of-process front end (Node).

`python -m mullama worker [MODEL]` loads MODEL (a path or name; none: the default model) and
speaks frames on its stdio: each frame is a 4-byte big-endian length and that many bytes of a
UTF-8 JSON object. The front end's core detokenizes, scans stops, enforces deadlines and counts
statistics; the worker only turns requests into token ids.

Front end -> worker:
    {"op": "generate", "stream": S, "context": C, "prompt": str | [ids] | "messages": [...],
     "config": {StreamConfig fields, snake_case}, "credits": K, "top_logprobs": 0}
    {"op": "credit", "stream": S, "n": k}       # the consumer read k more tokens of S
    {"op": "cancel", "stream": S}
    {"op": "close_context", "context": C}
Worker -> front end:
    {"op": "ready", "model": {...}}   or   {"op": "load_error", "code": ..., "message": ...}
    {"op": "started", "stream": S, "prompt_tokens": n}
    {"op": "token", "stream": S, "id": t, "logprob": x, "top_logprobs": [[t, x], ...],
     "peak_memory": bytes}
    {"op": "end", "stream": S, "reason": "stop" | "length", "id": t | null, "peak_memory": bytes}

"top_logprobs" comes only when asked for, "peak_memory" (the engine's, in bytes) only when it
changed since the stream's last frame.
    {"op": "error", "stream": S, "code": CODE, "message": ...}

Flow control is per stream: the worker sends at most the credits it was given (the stream's
buffer_size to start with) beyond what the front end acknowledged, so a slow consumer parks
only its own generation. A context (C) is one conversation's KV cache, reused by common
prefix across its generations; a new generation on a busy context ends the running one.

The worker exits when its stdin closes (the front end exited, however it died) and, on
Linux, when its parent process dies.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

from mullama._core import MullamaError, StreamConfig
from mullama.request import MAX_TOP_LOGPROBS, generation_request

FRAME_HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 64 * 1024 * 1024
"""A longer frame is a broken stream (the front end never sends prompts this large)."""

ERROR_CODES: dict[str, str] = {
    "ConfigError": "CONFIG",
    "StreamTimeoutError": "STREAM_TIMEOUT",
    "ModelLoadError": "MODEL_LOAD",
    "TokenizerError": "TOKENIZER",
    "ContextLengthError": "CONTEXT_LENGTH",
    "Superseded": "CANCELLED",
    "Interrupted": "CANCELLED",
}
"""The front end's error code for each mullama error class; anything else is
GENERATION_ERROR."""

JOIN_ON_EXIT_S = 5.0
"""How long the worker waits, at exit, for generations to leave the model."""


def error_code(exc: BaseException) -> str:
    for cls in type(exc).__mro__:
        code = ERROR_CODES.get(cls.__name__)
        if code is not None:
            return code
    return "GENERATION_ERROR"


def read_frame(stream: BinaryIO) -> dict[str, Any] | None:
    """The next frame, or None at the end of the input."""
    header = _read_exact(stream, FRAME_HEADER.size)
    if header is None:
        return None
    (size,) = FRAME_HEADER.unpack(header)
    if size > MAX_FRAME_BYTES:
        raise ValueError(f"frame of {size} bytes is over the limit of {MAX_FRAME_BYTES}")
    body = _read_exact(stream, size)
    if body is None:
        return None
    message = json.loads(body.decode("utf-8"))
    if not isinstance(message, dict):
        raise ValueError("a frame must hold a JSON object")
    return message


def _read_exact(stream: BinaryIO, size: int) -> bytes | None:
    chunks = []
    left = size
    while left > 0:
        chunk = stream.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def encode_frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return FRAME_HEADER.pack(len(body)) + body


class FrameWriter:
    """Writes frames from any thread, whole (one lock around each)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        frame = encode_frame(message)
        with self._lock:
            try:
                self._out.write(frame)
                self._out.flush()
            except (BrokenPipeError, ValueError):
                pass  # the front end is gone; stdin's end stops the worker


class WireProducer:
    """The producer side GenerationJob pushes into (the core TokenProducer's interface), which
    sends each token to the front end, waiting while the stream has no credit."""

    def __init__(
        self, stream_id: int, credits: int, max_tokens: int, send: Callable[[dict], None]
    ) -> None:
        self.stream_id = stream_id
        self._send = send
        self._credits = credits
        self._max_tokens = max_tokens
        self._pushed = 0
        self._peak_memory = 0
        self._peak_memory_sent = 0
        self._ended = False
        self._cancelled = False
        self._changed = threading.Condition()
        self._room_signal: Any = None

    # -- front end side --------------------------------------------------------------------
    def grant(self, n: int) -> None:
        with self._changed:
            self._credits += n
            self._changed.notify_all()
        self._wake_scheduler()

    def cancel(self) -> None:
        with self._changed:
            self._cancelled = True
            self._changed.notify_all()
        self._wake_scheduler()

    def _wake_scheduler(self) -> None:
        signal = self._room_signal
        if signal is not None:
            signal.notify()

    # -- GenerationJob side ------------------------------------------------------------------
    def set_prompt_tokens(self, n: int) -> None:
        self._send({"op": "started", "stream": self.stream_id, "prompt_tokens": n})

    def room(self) -> int:
        """Pushes that find credit now (any number once the stream ended: they return)."""
        with self._changed:
            if self._cancelled or self._ended:
                return max(1, self._max_tokens)
            return max(0, self._credits)

    def set_room_signal(self, signal: Any) -> None:
        """The scheduler's signal: notified when credit arrives or the stream is cancelled."""
        self._room_signal = signal
        if self._cancelled or self._ended:
            signal.notify()

    def set_peak_memory(self, bytes: int) -> None:
        self._peak_memory = int(bytes)

    def _with_peak_memory(self, message: dict[str, Any]) -> dict[str, Any]:
        """`message` with the engine's peak memory when it changed since the last frame."""
        if self._peak_memory != self._peak_memory_sent:
            message["peak_memory"] = self._peak_memory_sent = self._peak_memory
        return message

    @property
    def stop_reason(self) -> str | None:
        if self._cancelled:
            return "cancelled"
        return "length" if self._ended else None

    def push(
        self,
        token: int,
        logprob: float | None = None,
        top_logprobs: list[tuple[int, float]] | None = None,
    ) -> bool:
        with self._changed:
            while self._credits <= 0 and not (self._cancelled or self._ended):
                self._changed.wait()
            if self._cancelled or self._ended:
                return False
            self._credits -= 1
        message: dict[str, Any] = {"op": "token", "stream": self.stream_id, "id": int(token)}
        if logprob is not None:
            message["logprob"] = float(logprob)
        if top_logprobs:
            message["top_logprobs"] = [[int(t), float(lp)] for t, lp in top_logprobs]
        self._send(self._with_peak_memory(message))
        self._pushed += 1
        if self._pushed >= self._max_tokens:
            # The front end's core ends the stream here too; saying so keeps the protocol
            # explicit, and stopping saves the job a step.
            self.finish("length", None)
        return not self._ended

    def finish(self, reason: str = "stop", token: int | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        if not self._cancelled:
            end = {"op": "end", "stream": self.stream_id, "reason": reason, "id": token}
            self._send(self._with_peak_memory(end))

    def fail(self, exc: BaseException) -> None:
        with self._changed:
            ended = self._ended
            self._ended = True  # also wakes a push waiting for credit (job.cancel)
            self._changed.notify_all()
        self._wake_scheduler()
        if self._cancelled or ended:
            # As the core's producer: after the end (or a cancel) a failure is not news; a
            # newer generation cancelling a job that just finished must not send an error.
            return
        self._send(
            {
                "op": "error",
                "stream": self.stream_id,
                "code": error_code(exc),
                "message": f"{type(exc).__name__}: {exc}",
            }
        )


class Worker:
    """Dispatches the front end's frames; generations run on the producer's threads."""

    def __init__(self, model: Any, writer: FrameWriter) -> None:
        self.model = model
        self.writer = writer
        self.contexts: dict[int, Any] = {}  # mullama.context.Context by front-end id
        self.streams: dict[int, WireProducer] = {}
        self.jobs: list[Any] = []
        self._lock = threading.Lock()

    def handle(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "generate":
            self.generate(message)
        elif op == "credit":
            producer = self.streams.get(int(message["stream"]))
            if producer is not None:
                producer.grant(int(message["n"]))
        elif op == "cancel":
            producer = self.streams.pop(int(message["stream"]), None)
            if producer is not None:
                producer.cancel()
        elif op == "close_context":
            context = self.contexts.pop(int(message["context"]), None)
            if context is not None:
                context.close()
        else:
            raise ValueError(f"unknown op {op!r}")

    def generate(self, message: dict[str, Any]) -> None:
        from mullama.context import Context
        from mullama.scheduler import GenerationJob

        stream_id = int(message["stream"])
        try:
            request = generation_request(
                message.get("prompt"),
                StreamConfig(**message.get("config", {})),
                messages=message.get("messages"),
                top_logprobs=int(message.get("top_logprobs", 0)),
            )
            context = self.contexts.get(int(message["context"]))
            if context is None:
                context = self.contexts[int(message["context"])] = Context(self.model)
            # The Context checks that the prompt fits (ContextLengthError), as in Python.
            ids = context.prompt_ids(request)
        except Exception as exc:  # noqa: BLE001 - reported to the stream, the worker goes on
            self.writer.send(
                {
                    "op": "error",
                    "stream": stream_id,
                    "code": error_code(exc),
                    "message": str(exc),
                }
            )
            return
        config = request.config
        producer = WireProducer(
            stream_id,
            int(message.get("credits", config.buffer_size)),
            config.max_tokens,
            self.writer.send,
        )
        self.streams[stream_id] = producer

        def exited(job: Any, context_exited: Any) -> None:
            self.streams.pop(stream_id, None)
            context_exited(job)

        context.start_job(
            lambda sequence, on_exit: GenerationJob(
                self.model.scheduler,
                sequence,
                ids,
                config,
                producer,  # type: ignore[arg-type]  # the core producer's interface, over the wire
                self.model.end_of_generation_ids,
                request.top_logprobs,
                lambda job: exited(job, on_exit),
            )
        )

    def shutdown(self) -> None:
        for producer in list(self.streams.values()):
            producer.cancel()
        for context in list(self.contexts.values()):
            context.wait_idle(JOIN_ON_EXIT_S)


def model_info(model: Any) -> dict[str, Any]:
    path = model.path
    tokenizer = (
        {"kind": "gguf", "path": str(path)}
        if path.is_file()
        else {"kind": "json", "path": str(path)}
    )
    return {
        "path": str(path),
        "architecture": model.architecture,
        "n_vocab": model.n_vocab,
        "n_ctx_train": model.n_ctx_train,
        "n_ctx": model.n_ctx,
        "engine": getattr(model.engine, "name", ""),
        "tokenizer": tokenizer,
        "end_of_generation_ids": sorted(model.end_of_generation_ids),
        "chat_template": model.chat_template,
        "max_top_logprobs": MAX_TOP_LOGPROBS,
    }


def _die_with_parent() -> None:
    """On Linux, ask the kernel to kill this process when its parent dies (stdin's end is
    the portable signal; this also covers a worker stuck inside the engine)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def main(argv: list[str]) -> int:
    _die_with_parent()
    # Frames own stdout: anything a library prints goes to stderr instead.
    frames_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    writer = FrameWriter(frames_out)
    if len(argv) > 1:
        writer.send({"op": "load_error", "code": "MODEL_LOAD", "message": "usage: worker [MODEL]"})
        return 2
    try:
        from mullama.model import Model

        model = Model.load(argv[0] if argv else None)
    except Exception as exc:  # noqa: BLE001 - reported to the front end as MODEL_LOAD
        code = error_code(exc) if isinstance(exc, MullamaError) else "MODEL_LOAD"
        writer.send({"op": "load_error", "code": code, "message": f"{exc}"})
        return 1
    worker = Worker(model, writer)
    writer.send({"op": "ready", "model": model_info(model)})
    stdin = sys.stdin.buffer
    try:
        while (message := read_frame(stdin)) is not None:
            worker.handle(message)
    except (ValueError, KeyError, TypeError) as exc:
        print(f"mullama worker: bad frame from the front end: {exc}", file=sys.stderr)
    worker.shutdown()
    # Producer threads are daemons parked on queues; leave without waiting on them.
    sys.stdout.flush()
    os._exit(0)
