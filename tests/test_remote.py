"""Remote backends against real servers on loopback: the ScriptedServer (awkward chunking,
keep-alives, split stops and characters, refusals, malformed lines, stalls, endless streams)
and `mullama serve` itself (its OpenAI and Ollama routes). Remote text goes through the core:
stops, max_tokens, the deadline, backpressure and statistics hold as for local streams."""

from __future__ import annotations

import socket
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mullama import GenerationError, Model, StreamConfig, StreamTimeoutError
from mullama.remote import (
    RemoteAuthError,
    RemoteConnectionError,
    RemoteModelNotFoundError,
    RemoteProtocolError,
    RemoteRateLimitError,
    RemoteRequestError,
    RemoteServerError,
    RemoteUnavailableError,
    running_calls,
)
from mullama.testing import stream_from_pieces
from mullama.testing.scripted_server import ScriptedServer

pytest_plugins = ["server_fixtures"]
pytestmark = pytest.mark.timeout(120)

API_PATHS = {"openai": "/v1", "ollama": "/api"}
HI = [{"role": "user", "content": "Hi"}]


def remote_for(server: ScriptedServer, api: str = "openai", **options):
    return Model.connect(server.url + API_PATHS[api], model="scripted", **options)


def texts(stream) -> list[str]:
    with stream:
        return [event.text for event in stream]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def no_call_outlives_its_test(poll):
    yield
    assert poll(lambda: running_calls() == 0, 10), "a remote reader thread kept running"


# -- the awkward server ------------------------------------------------------------------------
@pytest.mark.parametrize("api", ["openai", "ollama"])
def test_awkward_chunking_gives_the_exact_text(api):
    # Multi-byte characters land inside TCP writes; "🌊" arrives as a \\u surrogate pair split
    # across two deltas; keep-alive comments sit between events.
    deltas = ["café ", "日本", "語 ", "\ud83c", "\udf0a", " done"]
    with ScriptedServer(deltas) as server:
        result = remote_for(server, api).generate(messages=HI)
    assert result.text == "café 日本語 🌊 done"
    assert result.finish_reason == "stop"
    assert result.tokens == []
    assert (result.prompt_tokens, result.generation_tokens) == (5, 3)  # the server's usage
    assert result.time_to_first_token is not None


@pytest.mark.parametrize("api", ["openai", "ollama"])
def test_a_stop_split_across_deltas_is_cut_by_the_core(api):
    deltas = ["The answer is 42.", " E", "N", "D and more", " never sent"]
    with ScriptedServer(deltas) as server:
        remote = remote_for(server, api)
        stream = remote.generate_stream(messages=HI, stop_sequences=["END"])
        events = list(stream)
        assert "".join(e.text for e in events) == "The answer is 42. "
        assert events[-1].finish_reason == "stop" and events[-1].stop_sequence == "END"
        assert all(e.token is None for e in events)
        # Stops are the core's job: the server is not asked to apply them.
        (_, body), *_ = server.requests
        assert "stop" not in body and "stop" not in body.get("options", {})
        kept = remote.generate(messages=HI, stop_sequences=["END"], include_stop=True)
        assert kept.text == "The answer is 42. END"


def test_max_tokens_counts_deltas_and_ends_with_length():
    with ScriptedServer(["a", "b", "c", "d", "e"]) as server:
        result = remote_for(server).generate(messages=HI, max_tokens=3)
        assert result.text == "abc"
        assert result.finish_reason == "length"
        (_, body), *_ = server.requests
        assert body["max_tokens"] == 3


def test_the_request_carries_the_config():
    config = StreamConfig(temperature=0.2, top_p=0.5, seed=7, top_k=3, max_tokens=9)
    with ScriptedServer() as server:
        remote_for(server).generate(messages=HI, config=config)
        remote_for(server, "ollama").generate("raw prompt", config)
        (chat_path, chat), (raw_path, raw) = server.requests
    assert chat_path == "/v1/chat/completions"
    assert chat["messages"] == HI and chat["stream"] is True
    assert (chat["temperature"], chat["top_p"], chat["seed"], chat["top_k"]) == (
        pytest.approx(0.2),
        pytest.approx(0.5),
        7,
        3,
    )
    assert "min_p" not in chat  # left at its default: not sent to an OpenAI API
    assert raw_path == "/api/generate" and raw["raw"] is True and raw["prompt"] == "raw prompt"
    assert raw["options"]["num_predict"] == 9 and raw["options"]["top_k"] == 3


def test_a_raw_prompt_goes_to_completions():
    with ScriptedServer(["x", "y"]) as server:
        assert remote_for(server).generate("Once upon").text == "xy"
        assert server.requests[0][0] == "/v1/completions"


CHARS = st.sampled_from(list("ab \n.") + ["é", "中", "😀", "👩‍💻", "e\u0301"])


@st.composite
def remote_cases(draw):
    text = "".join(draw(st.lists(CHARS, max_size=30)))
    cuts = sorted(set(draw(st.lists(st.integers(0, len(text)), max_size=12))) | {0, len(text)})
    deltas = [text[a:b] for a, b in zip(cuts, cuts[1:], strict=False) if b > a]
    starts = st.integers(0, max(len(text) - 1, 0))
    stop = st.builds(lambda a, n: text[a : a + n], starts, st.integers(1, 3))
    stops = [s for s in draw(st.lists(stop, max_size=3)) if s]
    return deltas, stops, draw(st.booleans()), draw(st.booleans())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(remote_cases())
def test_remote_text_equals_the_local_stream_of_the_same_pieces(case):
    deltas, stops, include_stop, awkward = case
    config = StreamConfig(stop_sequences=stops, include_stop=include_stop, timeout_ms=20_000)
    local = stream_from_pieces([d.encode() for d in deltas], config)
    local_events = [(e.text, e.finish_reason, e.stop_sequence) for e in local]
    with ScriptedServer(deltas, awkward=awkward) as server:
        stream = remote_for(server).generate_stream(messages=HI, config=config)
        remote_events = [(e.text, e.finish_reason, e.stop_sequence) for e in stream]
    # The same text, cut at the same stop; the remote stream may close with one extra
    # (empty) event after the server's end marker.
    assert "".join(t for t, _, _ in remote_events) == "".join(t for t, _, _ in local_events)
    assert remote_events[-1][1:] == local_events[-1][1:]
    assert stream.finish_reason == local.finish_reason


# -- errors ----------------------------------------------------------------------------------------
def test_an_unreachable_server_is_a_connection_error_naming_the_url():
    url = f"http://127.0.0.1:{free_port()}/v1"
    remote = Model.connect(url, model="m")
    with pytest.raises(RemoteConnectionError, match=r"127\.0\.0\.1:\d+/v1/chat/completions"):
        remote.generate_stream(messages=HI)
    with pytest.raises(RemoteConnectionError, match="unknown host"):
        Model.connect("http://no-such-host.invalid/v1", model="m").generate(messages=HI)


@pytest.mark.parametrize("api", ["openai", "ollama"])
def test_wrong_api_key_and_unknown_model(api):
    with ScriptedServer(api_key="secret") as server:
        with pytest.raises(RemoteAuthError, match="401") as caught:
            remote_for(server, api, api_key="wrong").generate(messages=HI)
        assert caught.value.status == 401 and caught.value.server_message == "invalid api key"
        assert remote_for(server, api, api_key="secret").generate(messages=HI).text
        other = Model.connect(server.url + API_PATHS[api], model="nope", api_key="secret")
        with pytest.raises(RemoteModelNotFoundError, match="'nope'"):
            other.generate(messages=HI)


@pytest.mark.parametrize(
    ("status", "kind"),
    [(429, RemoteRateLimitError), (503, RemoteUnavailableError), (500, RemoteServerError)],
)
def test_overload_statuses_carry_the_servers_message(status, kind):
    with ScriptedServer(status=status, error="slow down, please", retry_after="3") as server:
        with pytest.raises(kind, match="slow down, please") as caught:
            remote_for(server).generate_stream(messages=HI)
    assert caught.value.status == status
    if status != 500:
        assert caught.value.retry_after == 3.0


def test_a_wrong_api_path_says_so():
    with ScriptedServer() as server:
        remote = Model.connect(server.url + "/v2", model="scripted")
        with pytest.raises(RemoteRequestError, match="API path"):
            remote.generate(messages=HI)


@pytest.mark.parametrize("api", ["openai", "ollama"])
def test_a_malformed_stream_line_is_a_generation_error_naming_it(api):
    bad = "data: {not json" if api == "openai" else "{not json"
    with ScriptedServer(["fine so far"], malformed=bad) as server:
        stream = remote_for(server, api).generate_stream(messages=HI)
        seen = []
        with pytest.raises(GenerationError, match="not json") as caught:
            for event in stream:
                seen.append(event.text)
    assert "".join(seen) == "fine so far"
    assert isinstance(caught.value.__cause__, RemoteProtocolError)
    assert "malformed stream line" in str(caught.value)


@pytest.mark.parametrize("api", ["openai", "ollama"])
def test_an_error_the_server_reports_mid_reply_is_a_generation_error(api):
    line = '{"error": "out of memory"}'
    with ScriptedServer(["so far "], malformed=f"data: {line}" if api == "openai" else line) as s:
        with pytest.raises(GenerationError, match="out of memory") as caught:
            remote_for(s, api).generate(messages=HI)
    assert isinstance(caught.value.__cause__, RemoteServerError)


@pytest.mark.parametrize("api", ["openai", "ollama"])
def test_a_reply_cut_short_by_the_server_is_a_generation_error(api):
    with ScriptedServer(["half a "], truncate=True) as server:
        stream = remote_for(server, api).generate_stream(messages=HI)
        with pytest.raises(GenerationError, match="before the reply ended") as caught:
            for _ in stream:
                pass
    assert isinstance(caught.value.__cause__, RemoteProtocolError)


def test_bad_urls_and_arguments_are_config_errors():
    from mullama import ConfigError

    for url in ("ftp://host/v1", "http://host", "not a url", "ollama://"):
        with pytest.raises(ConfigError):
            Model.connect(url, model="m")
    with pytest.raises(ConfigError, match="model"):
        Model.connect("http://h/v1", model="")
    remote = Model.connect("ollama://127.0.0.1:1", model="m")
    with pytest.raises(ConfigError, match="token ids"):
        remote.generate_stream([1, 2, 3])
    with pytest.raises(ConfigError, match="top_logprobs"):
        remote.generate_stream(messages=HI, top_logprobs=2)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (made by the openssl command)."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", key, "-out", cert, "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def test_https_with_a_trusted_certificate_and_without(certificate):
    import ssl

    cert, _ = certificate
    with ScriptedServer(["secure ", "text"], tls=certificate) as server:
        assert server.url.startswith("https://")
        trusting = ssl.create_default_context(cafile=cert)
        assert remote_for(server, ssl_context=trusting).generate(messages=HI).text == "secure text"
        with pytest.raises(RemoteConnectionError, match="certificate"):
            remote_for(server).generate(messages=HI)  # the system's CAs do not know it


# -- backpressure, cancel, deadline ------------------------------------------------------------
def test_backpressure_reaches_the_server(poll):
    # An endless reply: without backpressure the client would read it as fast as the server
    # writes. With a full stream buffer the reader stops reading the socket, the TCP buffers
    # fill, and the server's writes block.
    with ScriptedServer(["x" * 1000], endless=True, awkward=False) as server:
        stream = remote_for(server).generate_stream(
            messages=HI, buffer_size=4, max_tokens=10**9, timeout_ms=0
        )
        for _ in range(3):
            next(stream)

        def settled() -> bool:
            before = server.bytes_sent
            time.sleep(0.3)
            return server.bytes_sent == before

        assert poll(settled, 20), "the server never stopped writing"
        stalled_at = server.bytes_sent
        assert stalled_at < 64 * 1024 * 1024  # socket buffers, not the whole (endless) reply
        for _ in range(2000):  # reading on lets the server write on
            next(stream)
        assert server.bytes_sent > stalled_at
        stream.close()
        assert server.disconnected.wait(10), "closing the stream did not close the request"


@pytest.mark.parametrize("api", ["openai", "ollama"])
def test_closing_the_stream_closes_the_request(api):
    with ScriptedServer(["one ", "two "], stall_after=2) as server:
        stream = remote_for(server, api).generate_stream(messages=HI, timeout_ms=0)
        assert next(stream).text == "one "
        stream.close()
        assert server.disconnected.wait(10)
    assert stream.finish_reason == "cancelled"


def test_a_stream_dropped_unclosed_closes_the_request():
    import gc

    with ScriptedServer(["x "], endless=True) as server:
        stream = remote_for(server).generate_stream(messages=HI, timeout_ms=0, buffer_size=2)
        next(stream)
        del stream
        gc.collect()
        assert server.disconnected.wait(10), "the reader kept the dropped stream's request open"


def test_the_deadline_ends_a_stalled_reply_and_closes_the_request():
    with ScriptedServer(["early "], stall_after=1) as server:
        stream = remote_for(server).generate_stream(messages=HI, timeout_ms=400)
        seen = []
        with pytest.raises(StreamTimeoutError):
            for event in stream:
                seen.append(event.text)
        assert "".join(seen) == "early "
        assert server.disconnected.wait(10)


def test_the_deadline_bounds_the_wait_for_the_servers_answer():
    with ScriptedServer(answer_after_s=30) as server:
        started = time.monotonic()
        with pytest.raises(StreamTimeoutError, match="had not answered"):
            remote_for(server).generate_stream(messages=HI, timeout_ms=300)
        assert time.monotonic() - started < 20  # the deadline, not the server's 30 s


def test_a_stop_closes_the_request_at_once():
    with ScriptedServer(["go ", "STOP", " more"], endless=True) as server:
        result = remote_for(server).generate(messages=HI, stop_sequences=["STOP"], timeout_ms=0)
        assert result.text == "go " and result.finish_reason == "stop"
        assert server.disconnected.wait(10)


# -- the non-streaming fallback --------------------------------------------------------------
@pytest.mark.parametrize("api", ["openai", "ollama"])
def test_a_server_that_cannot_stream_is_asked_once_more_without_streaming(api):
    with ScriptedServer(["Whole ", "reply ", "at once"], streaming=False) as server:
        remote = remote_for(server, api)
        events = list(remote.generate_stream(messages=HI))
        assert [e.text for e in events if e.text] == ["Whole reply at once"]
        assert events[-1].finish_reason == "stop"
        assert remote.streaming is False  # remembered: the next call does not try
        stops = remote.generate(messages=HI, stop_sequences=["reply"])
        assert stops.text == "Whole " and stops.stop_sequence == "reply"
        streamed = [body.get("stream") for _, body in server.requests]
        assert streamed == [True, False, False]


def test_streaming_false_never_asks_for_a_stream():
    with ScriptedServer(["a", "b"]) as server:
        remote = remote_for(server, streaming=False)
        result = remote.generate(messages=HI, max_tokens=50)
        assert result.text == "ab" and result.generation_tokens == 3
        assert server.requests[0][1]["stream"] is False


# -- mullama serve itself ---------------------------------------------------------------------

GREEDY = StreamConfig(temperature=0.0, max_tokens=24, timeout_ms=60_000)


@pytest.fixture(scope="module")
def local_replies(tiny_model):
    from mullama import Context

    context = Context(tiny_model)
    return {
        "chat": context.generate(messages=HI, config=GREEDY).text,
        "raw": context.generate("Once upon a time", GREEDY).text,
    }


@pytest.mark.parametrize("api", ["openai", "ollama"])
def test_mullama_serve_streams_what_the_local_model_gives(server, local_replies, api):
    remote = Model.connect(server.url + API_PATHS[api], model="tiny")
    assert remote.generate(messages=HI, config=GREEDY).text == local_replies["chat"]
    assert remote.generate("Once upon a time", GREEDY).text == local_replies["raw"]
    events = list(remote.generate_stream(messages=HI, config=GREEDY))
    assert events[-1].generation_tokens >= 1 and events[-1].prompt_tokens > 0


def test_mullama_serve_with_a_client_side_stop(server, local_replies):
    text = local_replies["chat"]
    stop = text[len(text) // 2 : len(text) // 2 + 2]
    expected = text[: text.find(stop)]
    remote = Model.connect(server.url + "/v1", model="tiny")
    result = remote.generate(messages=HI, config=GREEDY.replace(stop_sequences=[stop]))
    assert result.text == expected and result.stop_sequence == stop


def test_mullama_serve_refusals_are_typed(server_factory):
    served = server_factory(api_key="k")
    with pytest.raises(RemoteAuthError):
        Model.connect(served.url + "/v1", model="tiny", api_key="bad").generate(messages=HI)
    for path in ("/v1", "/api"):
        with pytest.raises(RemoteModelNotFoundError):
            Model.connect(served.url + path, model="absent", api_key="k").generate(messages=HI)


# -- async ---------------------------------------------------------------------------------------
@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.mark.anyio
async def test_the_async_twin_streams_refuses_and_cancels():
    from mullama import AsyncModel

    with ScriptedServer(["as", "ync ", "E", "ND"]) as server:
        remote = AsyncModel.connect(server.url + "/v1", model="scripted")
        stream = remote.generate_stream(messages=HI, stop_sequences=["END"])
        assert "".join([event.text async for event in stream]) == "async "
        assert stream.finish_reason == "stop" and stream.stop_sequence == "END"
        result = await remote.chat(HI, max_tokens=2)
        assert (result.text, result.finish_reason) == ("async ", "length")
        absent = AsyncModel.connect(server.url + "/v1", model="absent")
        with pytest.raises(RemoteModelNotFoundError):
            await absent.generate(messages=HI)
    with ScriptedServer(["first "], stall_after=1) as server:
        remote = AsyncModel.connect(server.url + "/api", model="scripted")
        stream = remote.generate_stream(messages=HI, timeout_ms=0)
        async with stream:
            assert (await stream.__anext__()).text == "first "
        assert server.disconnected.wait(10), "aclose did not close the request"
