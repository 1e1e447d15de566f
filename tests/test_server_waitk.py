"""WebSocket /v1/ws/waitk with the `websockets` client on the tiny random-weight model: target
words under the wait-k schedule as source chunks arrive, the final metrics, cancel, a client
that leaves, and refused requests."""

from __future__ import annotations

import json
import logging

import pytest
from websockets.sync.client import connect

pytest_plugins = ["server_fixtures"]
pytestmark = pytest.mark.timeout(120)


def _url(server) -> str:
    return server.url.replace("http://", "ws://") + "/v1/ws/waitk"


def _receive_until_done(ws) -> tuple[list[dict], dict]:
    words = []
    while True:
        event = json.loads(ws.recv(timeout=60))
        if event["type"] == "word":
            words.append(event)
        else:
            return words, event


def test_words_follow_the_schedule_as_the_source_arrives(server):
    source = "one two three four five six seven"
    with connect(_url(server)) as ws:
        ws.send(
            json.dumps(
                {
                    "type": "start",
                    "id": "w",
                    "wait_k": 2,
                    "max_new_words": 5,
                    "max_tokens": 200,
                    "temperature": 0,
                }
            )
        )
        for at in range(0, len(source), 4):  # chunks split words
            ws.send(json.dumps({"type": "source", "text": source[at : at + 4]}))
        ws.send(json.dumps({"type": "end"}))
        words, done = _receive_until_done(ws)
    assert done["type"] == "done", done
    assert done["finish_reason"] in ("stop", "length")
    delays = [w["source_words_read"] for w in words]
    assert delays == [min(2 + t - 1, 7) for t in range(1, len(words) + 1)]
    assert [w["target_words_generated"] for w in words] == list(range(1, len(words) + 1))
    assert done["metrics"]["delays"] == delays
    assert done["metrics"]["source_words"] == 7 or not done["metrics"]["source_complete"]
    assert all(w["id"] == "w" for w in words)


def test_cancel_ends_with_cancelled(server):
    with connect(_url(server)) as ws:
        ws.send(json.dumps({"type": "start", "wait_k": 1, "max_tokens": 2000, "temperature": 0}))
        ws.send(json.dumps({"type": "source", "text": "a b c d e f g h i j k l m n o p "}))
        ws.send(json.dumps({"type": "cancel"}))
        _, done = _receive_until_done(ws)
    assert done["type"] == "done" and done["finish_reason"] == "cancelled"


@pytest.mark.parametrize(
    ("start", "field"),
    [
        ({"type": "start"}, "wait_k"),
        ({"type": "start", "wait_k": 0}, "wait_k"),
        ({"type": "start", "wait_k": 2, "temperature": -1}, "temperature"),
        ({"type": "source", "text": "hi"}, "start"),
    ],
)
def test_bad_start_messages_get_an_error(server, start, field):
    with connect(_url(server)) as ws:
        ws.send(json.dumps(start))
        error = json.loads(ws.recv(timeout=10))
    assert error["type"] == "error"
    assert field in error["error"]["message"]


def test_client_leaving_mid_reply_stops_the_generation(server, server_log, poll):
    with connect(_url(server)) as ws:
        ws.send(json.dumps({"type": "start", "wait_k": 1, "max_tokens": 4000, "temperature": 0}))
        ws.send(json.dumps({"type": "source", "text": "a b c d e f g h i j "}))
        ws.socket.close()  # gone without a closing handshake, the source still open
    assert poll(lambda: not server.app.state.mullama.websockets, 10), "sessions still open"
    assert poll(_no_running_jobs, 10), "a generation still runs for nobody"
    assert "Exception in ASGI application" not in server_log.text()
    assert not [r for r in server_log.records if r.levelno >= logging.ERROR]


def _no_running_jobs() -> bool:
    from mullama.producer import running_jobs

    return running_jobs() == 0
