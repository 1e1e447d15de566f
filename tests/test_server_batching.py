"""The server on the batching scheduler: `--parallel` streams share one batch, later requests
queue first come first served, and beyond `--max-queue` a request gets 503 with Retry-After
in the OpenAI and Ollama error shapes, never a cut stream."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

pytest_plugins = ["server_fixtures"]

MODEL_NAME = "tiny"
pytestmark = pytest.mark.timeout(300)

WAIT_S = 60.0
COUNTING = "1, 2, 3, 4,"
"""The tiny model continues this for thousands of tokens."""


def poll(condition, timeout: float = WAIT_S) -> bool:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.005)
    return True


@pytest.fixture(scope="module")
def tiny_parallel8(tiny_model_path, engine_name):
    from mullama.model import Model

    return Model.load(tiny_model_path, engine=engine_name, parallel=8)


def start_server(model, **served_options):
    from server_fixtures import start_server as start  # imported here: it is a pytest plugin

    return start(model, **served_options)


def stream_completion(url: str, prompt: str, max_tokens: int, on_first_token) -> dict:
    body = {
        "model": MODEL_NAME,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    text, finish = [], None
    with httpx.stream("POST", url + "/v1/completions", json=body, timeout=WAIT_S) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            choice = json.loads(line[6:])["choices"][0]
            if choice.get("text") and not text:
                on_first_token()
            text.append(choice.get("text") or "")
            finish = choice.get("finish_reason") or finish
    return {"text": "".join(text), "finish": finish}


def test_16_clients_with_parallel_8_all_complete_first_come_first_served(
    tiny_parallel8, monkeypatch
):
    running = start_server(tiny_parallel8, max_concurrent=8, max_queue=16)
    served = running.app.state.mullama.served
    arrived: list[object] = []
    original_start = served.start

    async def counting_start(request, **options):
        arrived.append(request)
        return await original_start(request, **options)

    monkeypatch.setattr(served, "start", counting_start)
    try:
        n_clients, max_tokens = 16, 24
        results: dict[int, dict] = {}
        errors: list[BaseException] = []
        first_token_order: list[int] = []
        order_lock = threading.Lock()

        def client(i: int) -> None:
            def first() -> None:
                with order_lock:
                    first_token_order.append(i)

            try:
                results[i] = stream_completion(running.url, f"{i}, {i + 1},", max_tokens, first)
            except BaseException as exc:
                errors.append(exc)

        threads = []
        for i in range(n_clients):
            thread = threading.Thread(target=client, args=(i,))
            thread.start()
            threads.append(thread)
            # Arrival order is defined: each request reaches the server before the next.
            assert poll(lambda i=i: len(arrived) == i + 1), f"request {i} did not arrive"
        for thread in threads:
            thread.join(WAIT_S * 2)
        assert not errors, errors
        assert sorted(results) == list(range(n_clients))
        for i, result in results.items():
            assert result["finish"] in ("length", "stop"), (i, result)
        # The first eight shared the batch; the queued eight started only after them.
        assert set(first_token_order[:8]) == set(range(8)), first_token_order
        assert first_token_order[8:] == sorted(first_token_order[8:]), first_token_order
    finally:
        running.stop()


def test_beyond_parallel_and_queue_a_request_gets_503_with_retry_after(
    tiny_model_path, engine_name
):
    from mullama import Context, StreamConfig
    from mullama.model import Model

    # A batch of one, taken by a library stream nobody reads (parked): the server's one
    # generation slot then stays taken by a request queued in the scheduler, for as long as
    # the test needs, whatever the speed of the machine.
    model = Model.load(tiny_model_path, engine=engine_name, parallel=1)
    hog = Context(model).generate_stream(
        COUNTING, StreamConfig(max_tokens=1000, buffer_size=1, timeout_ms=0, temperature=0)
    )
    running = start_server(model, max_concurrent=1, max_queue=1)
    served = running.app.state.mullama.served
    replies: dict[str, httpx.Response] = {}

    def post(name: str) -> None:
        body = {"model": MODEL_NAME, "prompt": "Hi", "max_tokens": 2}
        replies[name] = httpx.post(running.url + "/v1/completions", json=body, timeout=WAIT_S)

    first = threading.Thread(target=post, args=("first",))
    second = threading.Thread(target=post, args=("second",))
    try:
        first.start()
        assert poll(lambda: model.scheduler.queued == 1), "the first request did not start"
        second.start()
        assert poll(lambda: served.waiting == 1), "the second request did not queue"

        openai = httpx.post(
            running.url + "/v1/chat/completions",
            json={"model": MODEL_NAME, "messages": [{"role": "user", "content": "Hi"}]},
            timeout=WAIT_S,
        )
        assert openai.status_code == 503
        assert int(openai.headers["retry-after"]) >= 1
        error = openai.json()["error"]
        assert error["code"] == "server_busy" and error["type"] == "server_error"
        assert "busy" in error["message"]

        ollama = httpx.post(
            running.url + "/api/generate",
            json={"model": MODEL_NAME, "prompt": "Hi", "stream": True},
            timeout=WAIT_S,
        )
        assert ollama.status_code == 503
        assert int(ollama.headers["retry-after"]) >= 1
        assert set(ollama.json()) == {"error"} and "busy" in ollama.json()["error"]

        # The batch frees: the started and the queued request both complete, uncut.
        hog.close()
        first.join(WAIT_S)
        second.join(WAIT_S)
        for name in ("first", "second"):
            assert replies[name].status_code == 200, replies[name].text
            assert replies[name].json()["choices"][0]["finish_reason"] in ("length", "stop")
    finally:
        hog.close()
        running.stop()
