"""The OpenAI-compatible routes, driven by the official `openai` SDK and raw httpx.

The server serves the tiny random-weight model (replies are byte soup, deterministic under
greedy decoding); `test_default_model_chat_stream` runs the SDK against SmolLM2."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from text_rules import lossy_without_unfinished_tail

pytest_plugins = ["server_fixtures"]

MODEL_NAME = "tiny"
# A raw prompt whose greedy tiny-model continuation runs long (no end-of-generation token).
LONG_RAW = "1, 2, 3, 4,"

pytestmark = pytest.mark.timeout(120)

MESSAGES = [{"role": "user", "content": "Name three colors."}]
GREEDY = {"temperature": 0.0, "max_tokens": 24}


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def test_models_lists_the_served_model(client):
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL_NAME]


def test_chat_streaming_equals_non_streaming(client):
    whole = client.chat.completions.create(model=MODEL_NAME, messages=MESSAGES, **GREEDY)
    text = whole.choices[0].message.content
    assert text
    assert whole.choices[0].message.role == "assistant"
    assert whole.choices[0].finish_reason in ("stop", "length")
    assert whole.usage.completion_tokens > 0
    assert whole.usage.prompt_tokens > 5
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens

    chunks = list(
        client.chat.completions.create(
            model=MODEL_NAME,
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
            **GREEDY,
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == whole.choices[0].finish_reason
    assert all(f is None for f in finishes[:-1])
    # include_usage: a last chunk with no choices carries the usage.
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_completions_streaming_equals_non_streaming(client):
    prompt = "The capital of France is"
    whole = client.completions.create(model=MODEL_NAME, prompt=prompt, **GREEDY)
    text = whole.choices[0].text
    assert text
    stream = client.completions.create(model=MODEL_NAME, prompt=prompt, stream=True, **GREEDY)
    assert "".join(c.choices[0].text for c in stream) == text
    echoed = client.completions.create(model=MODEL_NAME, prompt=prompt, echo=True, **GREEDY)
    assert echoed.choices[0].text == prompt + text


def test_completions_default_to_16_tokens(client):
    whole = client.completions.create(model=MODEL_NAME, prompt=LONG_RAW, temperature=0)
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage.completion_tokens == 16


def test_max_tokens_gives_finish_reason_length(client):
    whole = client.chat.completions.create(
        model=MODEL_NAME, messages=MESSAGES, max_completion_tokens=3, temperature=0
    )
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage.completion_tokens == 3


def test_chat_logprobs_and_top_logprobs(client):
    whole = client.chat.completions.create(
        model=MODEL_NAME,
        messages=MESSAGES,
        logprobs=True,
        top_logprobs=3,
        temperature=0,
        max_tokens=6,
    )
    content = whole.choices[0].logprobs.content
    assert len(content) == whole.usage.completion_tokens
    # A token may hold part of a UTF-8 character: its bytes, joined, spell the reply.
    # (A reply cut inside a character ends before it: the stream drops an unfinished one.)
    joined = b"".join(bytes(entry.bytes) for entry in content)
    assert lossy_without_unfinished_tail(joined) == whole.choices[0].message.content
    for entry in content:
        assert entry.logprob <= 0
        assert len(entry.top_logprobs) == 3
        # Greedy: the chosen token is the likeliest one.
        assert entry.top_logprobs[0].token == entry.token
        assert entry.top_logprobs[0].bytes == entry.bytes
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob, abs=1e-4)
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[1].logprob
        assert bytes(entry.bytes).decode("utf-8", "replace") == entry.token

    stream = client.chat.completions.create(
        model=MODEL_NAME,
        messages=MESSAGES,
        logprobs=True,
        top_logprobs=2,
        temperature=0,
        max_tokens=6,
        stream=True,
    )
    streamed = [
        e
        for c in stream
        if c.choices and c.choices[0].logprobs
        for e in c.choices[0].logprobs.content
    ]
    assert [e.token for e in streamed] == [e.token for e in content]


def test_completion_logprobs(client):
    whole = client.completions.create(
        model=MODEL_NAME, prompt="Hello", logprobs=2, temperature=0, max_tokens=5
    )
    logprobs = whole.choices[0].logprobs
    assert len(logprobs.tokens) == whole.usage.completion_tokens == 5
    assert len(logprobs.token_logprobs) == len(logprobs.tokens) == len(logprobs.top_logprobs)
    assert all(1 <= len(top) <= 2 for top in logprobs.top_logprobs)
    assert all(lp <= 0 for lp in logprobs.token_logprobs)
    assert logprobs.text_offset[0] == 0
    offsets = [0]
    for token in logprobs.tokens[:-1]:
        offsets.append(offsets[-1] + len(token))
    assert logprobs.text_offset == offsets


@pytest.mark.parametrize("as_list", [False, True])
def test_stop_as_string_or_list(client, as_list):
    reference = client.chat.completions.create(model=MODEL_NAME, messages=MESSAGES, **GREEDY)
    text = reference.choices[0].message.content
    # A stop text from inside the reply: the result must end right before its first match.
    stop_word = next(
        text[i : i + 2]
        for i in range(3, len(text) - 2)
        if text[i : i + 2].isascii() and text[i : i + 2].isprintable()
    )
    cut = text[: text.index(stop_word)]
    stop = [stop_word, "never-appears-xyz"] if as_list else stop_word
    for streamed in (False, True):
        result = client.chat.completions.create(
            model=MODEL_NAME, messages=MESSAGES, stop=stop, stream=streamed, **GREEDY
        )
        if streamed:
            chunks = list(result)
            got = "".join(c.choices[0].delta.content or "" for c in chunks)
            finish = chunks[-1].choices[0].finish_reason
        else:
            got, finish = result.choices[0].message.content, result.choices[0].finish_reason
        assert got == cut
        assert finish == "stop"


def test_seed_makes_sampling_reproducible(client):
    def sample(seed):
        return (
            client.chat.completions.create(
                model=MODEL_NAME,
                messages=MESSAGES,
                temperature=1.0,
                max_tokens=20,
                seed=seed,
                extra_body={"top_k": 50, "min_p": 0.0, "repeat_penalty": 1.1},
            )
            .choices[0]
            .message.content
        )

    first = sample(7)
    assert sample(7) == first
    assert sample(8) != first


def test_raw_sse_stream(server):
    body = {"model": MODEL_NAME, "messages": MESSAGES, "stream": True, **GREEDY}
    events = []
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line:
                assert line.startswith("data: ")
                events.append(line[len("data: ") :])
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_default_model_chat_stream(default_server):
    """The SDK streams a real reply from SmolLM2, with the usage chunk at the end."""
    client = openai.OpenAI(base_url=default_server.url + "/v1", api_key="unused", max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "Name the capital city of Germany."}],
            temperature=0,
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Berlin" in text, text
    assert 1 <= chunks[-1].usage.completion_tokens <= 8


# -- errors ------------------------------------------------------------------------------------
def _error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    assert error["type"]
    return error


def test_malformed_json_is_400(server):
    response = httpx.post(
        server.url + "/v1/chat/completions",
        content=b'{"model": ',
        headers={"content-type": "application/json"},
    )
    assert _error(response, 400)["code"] == "invalid_json"


def test_unknown_model_is_400(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert info.value.status_code == 400
    assert "no-such-model" in info.value.message


@pytest.mark.parametrize(
    "params, field",
    [
        ({"temperature": -1}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stop": ["ok", ""]}, "stop"),
        ({"n": 2}, "n"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"messages": []}, "messages"),
        ({"messages": "hello"}, "messages"),
    ],
)
def test_bad_parameters_are_400_naming_the_field(server, params, field):
    body = {"model": MODEL_NAME, "messages": MESSAGES, **params}
    response = httpx.post(server.url + "/v1/chat/completions", json=body)
    error = _error(response, 400)
    assert error["param"] == field
    assert field in error["message"]


def test_usage_counts_the_prompt_tokens_read_from_the_cache(server_factory):
    """A conversation's next turn lands on the Context holding its first: usage says how much
    of its prompt came from the cache (OpenAI's prompt_tokens_details.cached_tokens)."""
    running = server_factory()  # a fresh pool: the first turn finds nothing cached
    sdk = openai.OpenAI(base_url=running.url + "/v1", api_key="unused", max_retries=0)
    first = sdk.chat.completions.create(model=MODEL_NAME, messages=MESSAGES, **GREEDY)
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    turns = [
        *MESSAGES,
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "And three more?"},
    ]
    chunks = list(
        sdk.chat.completions.create(
            model=MODEL_NAME,
            messages=turns,
            stream=True,
            stream_options={"include_usage": True},
            **GREEDY,
        )
    )
    second = chunks[-1].usage
    # At least the first prompt, less one token where the reply's text may tokenize differently.
    cached = second.prompt_tokens_details.cached_tokens
    assert first.usage.prompt_tokens - 1 <= cached < second.prompt_tokens


def test_prompt_over_the_context_is_400(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL_NAME, messages=MESSAGES, max_tokens=10**7)
    assert info.value.code == "context_length_exceeded"
    assert info.value.param == "messages"
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=MODEL_NAME, prompt="Hi", max_tokens=10**7)
    assert (info.value.code, info.value.param) == ("context_length_exceeded", "prompt")


def test_oversized_body_is_413(server_factory):
    running = server_factory(max_body_bytes=1000)
    big = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "x" * 5000}]}
    response = httpx.post(running.url + "/v1/chat/completions", json=big)
    assert _error(response, 413)["code"] == "request_too_large"


def test_api_key_is_required_when_set(server_factory):
    running = server_factory(api_key="s3cret")
    wrong = openai.OpenAI(base_url=running.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    response = httpx.get(running.url + "/v1/models")
    assert _error(response, 401)["code"] == "invalid_api_key"
    right = openai.OpenAI(base_url=running.url + "/v1", api_key="s3cret", max_retries=0)
    assert [m.id for m in right.models.list().data] == [MODEL_NAME]
    assert httpx.get(running.url + "/health").status_code == 200


# -- refusals that name the problem (400, never 500) --------------------------------------------
MARK = "<lone surrogate>"


def _with_surrogate(body: dict) -> str:
    """`body` as JSON with MARK replaced by the escape of a lone UTF-16 surrogate (valid JSON,
    not text): what a client sends that cuts an emoji's surrogate pair in half."""
    return json.dumps(body).replace(MARK, "\\ud800")


@pytest.mark.parametrize(
    "path, body, field",
    [
        (
            "/v1/chat/completions",
            {"model": "tiny", "messages": [{"role": "user", "content": MARK}]},
            "messages[0].content",
        ),
        ("/v1/completions", {"model": "tiny", "prompt": MARK}, "prompt"),
        ("/v1/completions", {"model": "tiny", "prompt": "hi", "stop": [MARK]}, "stop[0]"),
        ("/api/generate", {"model": "tiny", "prompt": MARK}, "prompt"),
    ],
)
def test_lone_surrogate_is_400_naming_the_field(server, server_log, path, body, field):
    raw = _with_surrogate(body)
    assert "\\ud800" in raw
    response = httpx.post(
        server.url + path, content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    message = error["message"] if isinstance(error, dict) else error
    assert field in message and "surrogate" in message
    assert "Traceback" not in server_log.text()


def test_deeply_nested_json_is_400(server, server_log):
    response = httpx.post(
        server.url + "/v1/chat/completions",
        content=b"[" * 100_000,
        headers={"content-type": "application/json"},
    )
    assert _error(response, 400)["code"] == "invalid_json"
    assert "Traceback" not in server_log.text()


def test_unknown_role_is_400_naming_it(server):
    body = {"model": MODEL_NAME, "messages": [{"role": "robot", "content": "beep"}]}
    error = _error(httpx.post(server.url + "/v1/chat/completions", json=body), 400)
    assert error["param"] == "messages"
    assert "'robot'" in error["message"] and "user" in error["message"]


@pytest.mark.parametrize("value", [-1, 0])
def test_max_tokens_below_one_says_at_least_one(server, value):
    body = {"model": MODEL_NAME, "messages": MESSAGES, "max_tokens": value}
    error = _error(httpx.post(server.url + "/v1/chat/completions", json=body), 400)
    assert "must be >= 1" in error["message"] and str(value) in error["message"]


def test_echo_with_logprobs_is_refused(server):
    body = {"model": MODEL_NAME, "prompt": "Hello", "echo": True, "logprobs": 1}
    error = _error(httpx.post(server.url + "/v1/completions", json=body), 400)
    assert error["param"] == "echo" and "logprobs" in error["message"]


def test_a_failed_generation_says_so_once(server, monkeypatch):
    engine = server.app.state.mullama.served.model.engine

    def broken_step(*args, **kwargs):
        raise RuntimeError("the device is on fire")

    monkeypatch.setattr(engine, "step", broken_step)
    for stream in (False, True):
        body = {"model": MODEL_NAME, "prompt": "Hello", "max_tokens": 4, "stream": stream}
        response = httpx.post(server.url + "/v1/completions", json=body, timeout=60)
        text = response.text
        assert "the device is on fire" in text
        assert text.count("generation failed") == 1, text


# -- models.retrieve ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", [MODEL_NAME, f"{MODEL_NAME}:latest", f"{MODEL_NAME}:135m"])
def test_models_retrieve(client, name):
    model = client.models.retrieve(name)
    assert model.id == MODEL_NAME and model.object == "model"


def test_models_retrieve_unknown_is_404(client, server):
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")
    error = _error(httpx.get(server.url + "/v1/models/no-such-model"), 404)
    assert error["code"] == "model_not_found" and "no-such-model" in error["message"]


def test_tagged_names_are_served(client):
    reply = client.completions.create(model=f"{MODEL_NAME}:135m", prompt="Hi", max_tokens=2)
    assert reply.usage.completion_tokens == 2
