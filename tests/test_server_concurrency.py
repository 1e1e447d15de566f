"""Disconnects stop the forward pass, concurrent clients are all served, and SIGINT/SIGTERM
shut `mullama serve` down cleanly, ending open streams. All on the tiny random-weight model,
whose greedy continuation of COUNTING runs thousands of tokens."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from server_fixtures import raw_post, record_starts

pytest_plugins = ["server_fixtures"]

MODEL_NAME = "tiny"
pytestmark = pytest.mark.timeout(180)

COUNTING = "1, 2, 3, 4,"


@pytest.fixture
def started_generations(server, monkeypatch):
    """Every Generation the server starts during the test."""
    return record_starts(server, monkeypatch)[1]


def test_client_disconnect_stops_the_forward_pass(server, started_generations, poll):
    body = {
        "model": MODEL_NAME,
        "prompt": COUNTING,
        "max_tokens": 5000,
        "temperature": 0,
        "stream": True,
    }
    with httpx.stream("POST", server.url + "/v1/completions", json=body) as response:
        received = 0
        for line in response.iter_lines():
            if line.startswith("data: "):
                received += 1
                if received == 5:
                    # Checked before leaving the loop: closing the line iterator can already
                    # end the request, and on a loaded box the server then stopped the job
                    # (after 6 tokens) before a check after the loop ran.
                    (generation,) = started_generations
                    job = generation.job  # the producer, still running
                    assert job is not None and job.is_running()
                    break
    # The client hung up after 5 chunks: the stream closes and the producer stops.
    assert poll(lambda: generation.released, 10), "the stream was not closed"
    assert poll(lambda: not job.is_running(), 10), "the producer still runs"
    stopped_at = job.tokens_computed
    # Not a token more: the producer's count stays where it stopped.
    assert not poll(lambda: job.tokens_computed > stopped_at, 0.5)
    # It stopped within one token (plus the stream buffer) of what the server had sent.
    assert stopped_at <= generation.tokens_generated + 1
    assert stopped_at < 1000


# Non-streaming requests on each route, long enough to run thousands of tokens if not stopped.
NON_STREAMING = {
    "/v1/completions": {"prompt": COUNTING, "max_tokens": 8000, "temperature": 0},
    "/v1/chat/completions": {
        "messages": [{"role": "user", "content": COUNTING}],
        "max_tokens": 8000,
        "temperature": 0,
    },
    "/api/generate": {
        "prompt": COUNTING,
        "raw": True,
        "stream": False,
        "options": {"num_predict": 8000, "temperature": 0},
    },
    "/api/chat": {
        "messages": [{"role": "user", "content": COUNTING}],
        "stream": False,
        "options": {"num_predict": 8000, "temperature": 0},
    },
}


def _raw_post(url: str, path: str, body: dict) -> socket.socket:
    return raw_post(url, path, {"model": MODEL_NAME, "temperature": 0, **body})


@pytest.mark.parametrize("path", list(NON_STREAMING))
def test_abandoned_non_streaming_request_stops_the_forward_pass(
    server, started_generations, poll, path
):
    sock = _raw_post(server.url, path, NON_STREAMING[path])
    try:
        assert poll(lambda: len(started_generations) == 1, 30), "the generation did not start"
        (generation,) = started_generations
        job = generation.job
        assert poll(lambda: job.tokens_computed >= 20 or not job.is_running(), 30)
        assert job.is_running(), "the reply ended before the client left"
    finally:
        sock.close()  # the client gives up before the reply is complete
    assert poll(lambda: not job.is_running(), 10), "the producer still runs for nobody"
    assert poll(lambda: generation.released, 10), "the Context did not go back to the pool"
    stopped_at = job.tokens_computed
    assert not poll(lambda: job.tokens_computed > stopped_at, 0.5)
    # Within one token of what the handler had read when it was cancelled.
    assert stopped_at <= generation.tokens_generated + 1
    assert stopped_at < 4000


def test_queued_request_whose_client_left_never_starts(server_factory, monkeypatch, poll):
    running = server_factory(max_concurrent=1)
    asked, started, cancelled = record_starts(running, monkeypatch)
    body = {
        "model": MODEL_NAME,
        "prompt": COUNTING,
        "max_tokens": 8000,
        "temperature": 0,
        "stream": True,
    }
    with httpx.stream("POST", running.url + "/v1/completions", json=body, timeout=60) as first:
        lines = first.iter_lines()
        assert next(lines).startswith("data: ")  # the one slot is taken
        sock = _raw_post(running.url, "/v1/completions", NON_STREAMING["/v1/completions"])
        # The second request waits for the slot; then its client leaves.
        assert poll(lambda: len(asked) == 2, 30)
        sock.close()
        # The server notices while the slot is still taken: the wait is cancelled.
        assert poll(lambda: len(cancelled) == 1, 10), "the queued request kept waiting"
    # The slot frees; a third request must be next, not the abandoned second one.
    third = httpx.post(
        running.url + "/v1/completions",
        json={"model": MODEL_NAME, "prompt": "Hi", "max_tokens": 2},
        timeout=60,
    )
    assert third.status_code == 200, third.text
    assert len(asked) == 3
    assert len(started) == 2, "the abandoned queued request was started"


def test_concurrent_streams_are_interleaved(server):
    n_clients = 4
    arrivals: dict[int, list[float]] = {i: [] for i in range(n_clients)}
    texts: dict[int, str] = {}
    errors = []
    # Each client stops reading after its first token until every client has one. A server
    # that served the requests one after another would never give the later ones a token
    # while the first waits (its stream parks when its buffer fills), so the barrier breaks;
    # a client whose request merely arrived late (a loaded CI box) cannot fail the test.
    all_started = threading.Barrier(n_clients, timeout=60)

    def client(i: int) -> None:
        body = {
            "model": MODEL_NAME,
            "prompt": COUNTING,
            "max_tokens": 200,
            "temperature": 0,
            "stream": True,
        }
        try:
            parts = []
            with httpx.stream(
                "POST", server.url + "/v1/completions", json=body, timeout=120
            ) as response:
                for line in response.iter_lines():
                    if line.startswith("data: {"):
                        text = json.loads(line[6:])["choices"][0]["text"]
                        if text:
                            arrivals[i].append(time.monotonic())
                            parts.append(text)
                            if len(parts) == 1:
                                all_started.wait()
            texts[i] = "".join(parts)
        except Exception as exc:  # reported below, with the client's number
            errors.append((i, exc))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(150)
    assert not errors
    assert len(texts) == n_clients
    # Same prompt, greedy: every client gets the same full answer.
    assert len(set(texts.values())) == 1 and texts[0]
    # Every client received its first token before any client finished.
    first_finish = min(times[-1] for times in arrivals.values())
    assert all(times[0] < first_finish for times in arrivals.values())


# -- mullama serve in a subprocess ---------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _mullama() -> list[str]:
    return [sys.executable, "-m", "mullama.cli"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_ends_open_streams_and_exits_cleanly(sig, poll, tiny_model_path):
    port = _free_port()
    proc = subprocess.Popen(
        [
            *_mullama(),
            "serve",
            "--model",
            str(tiny_model_path),
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--ctx-size",
            "8192",  # the tiny model's; long replies fit on llama.cpp too (default 4096)
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        assert poll(lambda: _healthy(url) or proc.poll() is not None, 120)
        assert proc.poll() is None, proc.stderr.read()
        body = {
            "model": MODEL_NAME,
            "prompt": COUNTING,
            "max_tokens": 8000,
            "temperature": 0,
            "stream": True,
        }
        events = []
        with httpx.stream("POST", url + "/v1/completions", json=body, timeout=60) as response:
            for line in response.iter_lines():
                if not line:
                    continue
                events.append(line)
                if len(events) == 3:
                    os.kill(proc.pid, sig)
        # The stream ended early, with an error event rather than a normal [DONE].
        assert len(events) < 1000
        assert events[-1] != "data: [DONE]"
        assert "shutting down" in events[-1]
        assert proc.wait(30) == 0
        assert "serving tiny" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
