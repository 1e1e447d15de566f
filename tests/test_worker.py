"""The engine worker (`python -m mullama worker`): its frames, its per-stream credits, cancel,
errors, and its exit when the front end's pipe closes. The Node side is tested by
bindings-node/test/worker.test.js."""

from __future__ import annotations

import io
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mullama._core import ContextLengthError
from mullama.errors import Superseded
from mullama.worker import (
    FRAME_HEADER,
    MAX_FRAME_BYTES,
    WireProducer,
    encode_frame,
    error_code,
    read_frame,
)

REPO = Path(__file__).resolve().parent.parent
WAIT_S = 60.0
"""Bound on every wait for the worker (a cold model load on a loaded 2-core box)."""


def test_frames_round_trip_and_end_cleanly():
    stream = io.BytesIO(encode_frame({"op": "token", "id": 7, "text": "é😀"}) * 2)
    assert read_frame(stream) == {"op": "token", "id": 7, "text": "é😀"}
    assert read_frame(stream)["id"] == 7
    assert read_frame(stream) is None
    cut = io.BytesIO(encode_frame({"op": "x"})[:-1])
    assert read_frame(cut) is None


def test_a_frame_over_the_limit_or_not_an_object_is_refused():
    with pytest.raises(ValueError, match="over the limit"):
        read_frame(io.BytesIO(FRAME_HEADER.pack(MAX_FRAME_BYTES + 1)))
    with pytest.raises(ValueError, match="JSON object"):
        read_frame(io.BytesIO(FRAME_HEADER.pack(2) + b"[]"))


def test_error_codes_follow_the_class_hierarchy():
    assert error_code(ContextLengthError("x")) == "CONTEXT_LENGTH"
    assert error_code(Superseded()) == "CANCELLED"
    assert error_code(RuntimeError("x")) == "GENERATION_ERROR"


class Sent:
    def __init__(self) -> None:
        self.frames: queue.Queue[dict] = queue.Queue()

    def __call__(self, message: dict) -> None:
        self.frames.put(message)

    def next(self) -> dict:
        return self.frames.get(timeout=WAIT_S)


def _push_in_thread(producer: WireProducer, token: int) -> queue.Queue[bool]:
    result: queue.Queue[bool] = queue.Queue()
    threading.Thread(target=lambda: result.put(producer.push(token, -0.5)), daemon=True).start()
    return result


def test_push_waits_for_credit_and_sends_the_token():
    sent = Sent()
    producer = WireProducer(3, credits=1, max_tokens=10, send=sent)
    assert producer.push(11, -0.25) is True
    assert sent.next() == {"op": "token", "stream": 3, "id": 11, "logprob": -0.25}
    blocked = _push_in_thread(producer, 12)
    with pytest.raises(queue.Empty):
        blocked.get(timeout=0.2)  # no credit: the push waits
    assert sent.frames.empty()
    producer.grant(1)
    assert blocked.get(timeout=WAIT_S) is True
    assert sent.next()["id"] == 12


def test_cancel_wakes_a_waiting_push_and_silences_the_stream():
    sent = Sent()
    producer = WireProducer(1, credits=0, max_tokens=10, send=sent)
    blocked = _push_in_thread(producer, 5)
    producer.cancel()
    assert blocked.get(timeout=WAIT_S) is False
    assert producer.stop_reason == "cancelled"
    producer.fail(RuntimeError("late"))
    producer.finish("stop", 2)
    assert sent.frames.empty(), "a cancelled stream sends nothing more"


def test_job_cancel_wakes_a_waiting_push_and_reports_it():
    sent = Sent()
    producer = WireProducer(1, credits=0, max_tokens=10, send=sent)
    blocked = _push_in_thread(producer, 5)
    producer.fail(Superseded())
    assert blocked.get(timeout=WAIT_S) is False
    frame = sent.next()
    assert (frame["op"], frame["code"]) == ("error", "CANCELLED")


def test_max_tokens_ends_the_push_loop_and_finish_sends_the_end():
    sent = Sent()
    producer = WireProducer(2, credits=5, max_tokens=2, send=sent)
    assert producer.push(1) is True
    assert producer.push(2) is False
    assert producer.stop_reason == "length"
    producer.finish("length", None)  # the job's own finish after that is a no-op
    frames = [sent.next() for _ in range(3)]
    assert frames[-1] == {"op": "end", "stream": 2, "reason": "length", "id": None}
    assert sent.frames.empty()


def test_a_failure_after_the_end_sends_nothing():
    # A newer generation cancels (fails) a job whose stream just ended: no error frame.
    sent = Sent()
    producer = WireProducer(2, credits=5, max_tokens=1, send=sent)
    assert producer.push(1) is False
    producer.fail(Superseded())
    assert [sent.next()["op"], sent.next()["op"]] == ["token", "end"]
    assert sent.frames.empty()


def test_peak_memory_rides_on_the_frames_when_it_changes():
    sent = Sent()
    producer = WireProducer(2, credits=5, max_tokens=5, send=sent)
    producer.set_peak_memory(1000)
    producer.push(1)
    producer.set_peak_memory(1000)
    producer.push(2)
    producer.set_peak_memory(3000)
    producer.finish("stop", 9)
    frames = [sent.next() for _ in range(3)]
    assert [f.get("peak_memory") for f in frames] == [1000, None, 3000]


# -- the worker process -------------------------------------------------------------------


class WorkerProcess:
    def __init__(self, model: str | None) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO / "python")}
        args = [sys.executable, "-m", "mullama", "worker", *([model] if model else [])]
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        self.frames: queue.Queue[dict | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while (frame := read_frame(self.proc.stdout)) is not None:
            self.frames.put(frame)
        self.frames.put(None)

    def send(self, message: dict) -> None:
        self.proc.stdin.write(encode_frame(message))
        self.proc.stdin.flush()

    def next(self, timeout: float = WAIT_S) -> dict | None:
        return self.frames.get(timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=WAIT_S)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            pipe.close()


@pytest.fixture
def tiny_worker(tiny_gguf: Path):
    worker = WorkerProcess(str(tiny_gguf))
    try:
        ready = worker.next()
        assert ready is not None and ready["op"] == "ready", worker.proc.stderr.read()
        assert ready["model"]["tokenizer"] == {"kind": "gguf", "path": str(tiny_gguf)}
        yield worker
    finally:
        worker.stop()


def _generate(
    worker: WorkerProcess, stream: int, credits: int, max_tokens: int = 50, **extra
) -> None:
    worker.send(
        {
            "op": "generate",
            "stream": stream,
            "context": 1,
            "prompt": [1, 5, 9, 12],
            "config": {"temperature": 0.0, "max_tokens": max_tokens, "timeout_ms": 0},
            "credits": credits,
            **extra,
        }
    )


def test_a_stream_gets_no_more_tokens_than_its_credits(tiny_worker):
    _generate(tiny_worker, stream=1, credits=2)
    assert tiny_worker.next() == {"op": "started", "stream": 1, "prompt_tokens": 4}
    tokens = [tiny_worker.next()["op"] for _ in range(2)]
    assert tokens == ["token", "token"]
    with pytest.raises(queue.Empty):
        tiny_worker.next(timeout=0.5)  # out of credit: the generation is parked
    tiny_worker.send({"op": "credit", "stream": 1, "n": 1})
    assert tiny_worker.next()["op"] == "token"
    tiny_worker.send({"op": "cancel", "stream": 1})
    tiny_worker.send({"op": "credit", "stream": 1, "n": 5})
    with pytest.raises(queue.Empty):
        tiny_worker.next(timeout=0.5)  # cancelled: nothing more for stream 1


def test_a_generation_ends_with_length_and_the_next_one_runs(tiny_worker):
    _generate(tiny_worker, stream=1, credits=10, max_tokens=3)
    frames = [tiny_worker.next() for _ in range(5)]
    assert [f["op"] for f in frames] == ["started", "token", "token", "token", "end"]
    assert frames[-1]["reason"] == "length"
    _generate(tiny_worker, stream=2, credits=10, max_tokens=1)
    assert [tiny_worker.next()["op"] for _ in range(3)] == ["started", "token", "end"]


def test_a_prompt_over_the_context_is_a_context_length_error(tiny_worker):
    tiny_worker.send(
        {"op": "generate", "stream": 4, "context": 1, "prompt": [1] * 100_000, "config": {}}
    )
    frame = tiny_worker.next()
    assert (frame["op"], frame["stream"], frame["code"]) == ("error", 4, "CONTEXT_LENGTH")
    tiny_worker.send(
        {"op": "generate", "stream": 5, "context": 1, "prompt": [1], "config": {"top_p": 2}}
    )
    frame = tiny_worker.next()
    assert (frame["code"], "top_p" in frame["message"]) == ("CONFIG", True)


def test_the_worker_exits_when_its_input_closes(tiny_worker):
    _generate(tiny_worker, stream=1, credits=1)
    assert tiny_worker.next()["op"] == "started"
    tiny_worker.proc.stdin.close()
    assert tiny_worker.proc.wait(timeout=WAIT_S) == 0


def test_a_model_that_cannot_load_is_reported_and_the_worker_exits(tmp_path):
    worker = WorkerProcess(str(tmp_path / "nope.gguf"))
    try:
        frame = worker.next()
        assert frame is not None and frame["op"] == "load_error"
        assert frame["code"] == "MODEL_LOAD" and "nope.gguf" in frame["message"]
        assert worker.proc.wait(timeout=WAIT_S) == 1
    finally:
        worker.stop()


def test_tokens_carry_top_logprobs_when_asked_and_peak_memory(tiny_worker):
    _generate(tiny_worker, stream=1, credits=10, max_tokens=2, top_logprobs=3)
    frames = [tiny_worker.next() for _ in range(4)]
    assert [f["op"] for f in frames] == ["started", "token", "token", "end"]
    for token in frames[1:3]:
        top = token["top_logprobs"]
        assert len(top) == 3 and top[0][1] >= top[1][1] >= top[2][1]
    # llama.cpp reports the process's peak RSS, MLX its allocator's peak: never 0 here.
    assert frames[1]["peak_memory"] > 0


def test_too_many_top_logprobs_is_a_config_error(tiny_worker):
    _generate(tiny_worker, stream=1, credits=10, top_logprobs=10_000)
    frame = tiny_worker.next()
    assert (frame["op"], frame["code"], "top_logprobs" in frame["message"]) == (
        "error",
        "CONFIG",
        True,
    )


def test_a_closed_context_frees_its_cache_and_its_id_starts_afresh(tiny_worker):
    _generate(tiny_worker, stream=1, credits=10, max_tokens=1)
    assert [tiny_worker.next()["op"] for _ in range(3)] == ["started", "token", "end"]
    tiny_worker.send({"op": "close_context", "context": 1})
    _generate(tiny_worker, stream=2, credits=10, max_tokens=1)
    assert [tiny_worker.next()["op"] for _ in range(3)] == ["started", "token", "end"]
    tiny_worker.proc.stdin.close()
    assert tiny_worker.proc.wait(timeout=WAIT_S) == 0, "the worker kept running after close"
