"""The Ollama-compatible routes, driven by the official `ollama` SDK and raw httpx.

The server serves the tiny random-weight model; `test_default_model_chat` runs the SDK's chat
against SmolLM2."""

from __future__ import annotations

import json

import httpx
import ollama
import pytest

pytest_plugins = ["server_fixtures"]

MODEL_NAME = "tiny"
pytestmark = pytest.mark.timeout(120)

OPTIONS = {"temperature": 0, "num_predict": 16}


@pytest.fixture(scope="module")
def client(server):
    return ollama.Client(host=server.url)


def test_tags_lists_the_served_model(client):
    models = client.list().models
    assert [m.model for m in models] == [MODEL_NAME]
    assert models[0].size > 0
    assert models[0].details.format == "gguf"


def test_generate_streaming_equals_non_streaming(client):
    whole = client.generate(model=MODEL_NAME, prompt="Why is the sky blue?", options=OPTIONS)
    assert whole.done
    assert whole.response
    assert whole.done_reason in ("stop", "length")
    assert whole.eval_count > 0
    assert whole.prompt_eval_count > 5
    assert whole.eval_duration > 0 and whole.total_duration >= whole.eval_duration

    parts = list(
        client.generate(
            model=MODEL_NAME, prompt="Why is the sky blue?", options=OPTIONS, stream=True
        )
    )
    assert all(not p.done for p in parts[:-1])
    assert parts[-1].done
    assert parts[-1].eval_count == whole.eval_count
    assert "".join(p.response for p in parts) == whole.response


def test_generate_raw_skips_the_chat_template(client):
    raw = client.generate(model=MODEL_NAME, prompt="1, 2, 3, 4,", raw=True, options=OPTIONS)
    templated = client.generate(model=MODEL_NAME, prompt="1, 2, 3, 4,", options=OPTIONS)
    assert raw.prompt_eval_count < templated.prompt_eval_count


def test_chat_streaming_equals_non_streaming(client):
    messages = [
        {"role": "system", "content": "You are brief."},
        {"role": "user", "content": "Say hello."},
    ]
    whole = client.chat(model=f"{MODEL_NAME}:latest", messages=messages, options=OPTIONS)
    assert whole.message.role == "assistant"
    assert whole.message.content
    parts = list(client.chat(model=MODEL_NAME, messages=messages, options=OPTIONS, stream=True))
    assert "".join(p.message.content for p in parts) == whole.message.content
    assert parts[-1].done and parts[-1].done_reason == whole.done_reason


def test_num_predict_and_stop(client):
    short = client.generate(
        model=MODEL_NAME, prompt="Count to ten.", options={"temperature": 0, "num_predict": 3}
    )
    assert short.done_reason == "length"
    assert short.eval_count == 3

    reference = client.generate(model=MODEL_NAME, prompt="Count to ten.", options=OPTIONS)
    text = reference.response
    stop = next(
        text[i : i + 2]
        for i in range(3, len(text) - 2)
        if text[i : i + 2].isascii() and text[i : i + 2].isprintable()
    )
    stopped = client.generate(
        model=MODEL_NAME, prompt="Count to ten.", options={**OPTIONS, "stop": [stop]}
    )
    assert stopped.response == text[: text.index(stop)]
    assert stopped.done_reason == "stop"


def test_ndjson_lines(server):
    body = {"model": MODEL_NAME, "prompt": "Hi", "options": OPTIONS}
    with httpx.stream("POST", server.url + "/api/generate", json=body) as response:
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert lines[-1]["done"] is True
    for key in (
        "total_duration",
        "load_duration",
        "prompt_eval_count",
        "prompt_eval_duration",
        "eval_count",
        "eval_duration",
    ):
        assert isinstance(lines[-1][key], int), key


def test_unknown_model_is_404(client):
    with pytest.raises(ollama.ResponseError) as info:
        client.generate(model="llama9:70b", prompt="hi")
    assert info.value.status_code == 404
    assert "llama9:70b" in info.value.error


def test_bad_option_is_400(client):
    with pytest.raises(ollama.ResponseError) as info:
        client.generate(model=MODEL_NAME, prompt="hi", options={"temperature": -3})
    assert info.value.status_code == 400
    assert "temperature" in info.value.error


def test_empty_prompt_loads_the_model(client):
    reply = client.generate(model=MODEL_NAME, prompt="")
    assert reply.done and reply.done_reason == "load"


def test_default_model_chat(default_server):
    """The SDK's streaming chat against SmolLM2: a real reply, timings in the last part."""
    client = ollama.Client(host=default_server.url)
    parts = list(
        client.chat(
            model="smollm2:latest",
            messages=[{"role": "user", "content": "Name the capital city of Germany."}],
            options={"temperature": 0, "num_predict": 8},
            stream=True,
        )
    )
    text = "".join(p.message.content for p in parts)
    assert "Berlin" in text, text
    assert parts[-1].done and 1 <= parts[-1].eval_count <= 8
    assert parts[-1].prompt_eval_count > 5


def test_images_in_chat_messages_are_refused(client):
    with pytest.raises(ollama.ResponseError) as info:
        client.chat(
            model=MODEL_NAME,
            messages=[{"role": "user", "content": "What is this?", "images": ["aGVsbG8="]}],
        )
    assert info.value.status_code == 400
    assert "images are not supported" in info.value.error


def test_unknown_role_is_refused(client):
    with pytest.raises(ollama.ResponseError) as info:
        client.chat(model=MODEL_NAME, messages=[{"role": "robot", "content": "beep"}])
    assert info.value.status_code == 400
    assert "'robot'" in info.value.error


def test_num_ctx_sets_the_context_of_the_request(client, server):
    prompt_tokens = client.generate(
        model=MODEL_NAME, prompt="Count to ten.", options={"num_predict": 1}
    ).prompt_eval_count
    num_ctx = prompt_tokens + 5
    # No num_predict: the reply runs to the end of that context, and no further.
    filled = client.generate(
        model=MODEL_NAME, prompt="Count to ten.", options={"temperature": 0, "num_ctx": num_ctx}
    )
    assert filled.eval_count <= 5
    # A reply that does not fit that context is refused; the server's own context takes it.
    with pytest.raises(ollama.ResponseError) as info:
        client.generate(
            model=MODEL_NAME, prompt="Count to ten.", options={"num_ctx": num_ctx, "num_predict": 6}
        )
    assert info.value.status_code == 400 and str(num_ctx) in info.value.error
    assert (
        client.generate(
            model=MODEL_NAME, prompt="Count to ten.", options={"num_predict": 6}
        ).eval_count
        >= 1
    )


def test_num_ctx_over_the_models_context_is_refused(client, server):
    limit = server.app.state.mullama.served.max_n_ctx
    with pytest.raises(ollama.ResponseError) as info:
        client.generate(model=MODEL_NAME, prompt="Hi", options={"num_ctx": limit + 1})
    assert info.value.status_code == 400
    assert "num_ctx" in info.value.error and str(limit) in info.value.error


def test_keep_alive_and_think_are_accepted_and_ignored(server):
    body = {
        "model": MODEL_NAME,
        "prompt": "Hi",
        "stream": False,
        "keep_alive": "5m",
        "think": False,
        "options": OPTIONS,
    }
    response = httpx.post(server.url + "/api/generate", json=body, timeout=60)
    assert response.status_code == 200 and response.json()["done"] is True


@pytest.mark.parametrize("name", [f"{MODEL_NAME}:latest", f"{MODEL_NAME}:135m"])
def test_tagged_names_are_served(client, name):
    assert client.generate(model=name, prompt="Hi", options={"num_predict": 2}).eval_count == 2
