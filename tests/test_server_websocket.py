"""WebSocket /v1/ws with the `websockets` client: tokens, done, cancel, errors (on the tiny
random-weight model)."""

from __future__ import annotations

import json

import pytest
from websockets.sync.client import connect

pytest_plugins = ["server_fixtures"]
pytestmark = pytest.mark.timeout(120)


def _ws_url(server) -> str:
    return server.url.replace("http://", "ws://") + "/v1/ws"


def _receive_until_done(ws) -> tuple[list[dict], dict]:
    tokens = []
    while True:
        event = json.loads(ws.recv(timeout=60))
        if event["type"] == "token":
            tokens.append(event)
        else:
            return tokens, event


def test_tokens_then_done(server):
    with connect(_ws_url(server)) as ws:
        ws.send(
            json.dumps(
                {
                    "id": 1,
                    "messages": [{"role": "user", "content": "Hi!"}],
                    "temperature": 0,
                    "max_tokens": 8,
                }
            )
        )
        tokens, done = _receive_until_done(ws)
        assert done["type"] == "done"
        assert done["id"] == 1
        assert done["finish_reason"] in ("stop", "length")
        assert done["usage"]["completion_tokens"] >= 1
        assert tokens and all(t["id"] == 1 and isinstance(t["token"], int) for t in tokens)
        assert "".join(t["text"] for t in tokens).strip()

        # The connection serves the next request too.
        ws.send(
            json.dumps({"id": 2, "prompt": "Once upon a time", "max_tokens": 3, "temperature": 0})
        )
        tokens, done = _receive_until_done(ws)
        assert done["id"] == 2 and done["finish_reason"] == "length"
        assert done["usage"]["completion_tokens"] == 3


def test_cancel_stops_the_generation(server):
    with connect(_ws_url(server)) as ws:
        ws.send(
            json.dumps({"id": "c", "prompt": "1, 2, 3, 4,", "max_tokens": 2000, "temperature": 0})
        )
        first = json.loads(ws.recv(timeout=60))
        assert first["type"] == "token"
        ws.send(json.dumps({"type": "cancel"}))
        tokens, done = _receive_until_done(ws)
        assert done["type"] == "done"
        assert done["finish_reason"] == "cancelled"
        assert done["usage"]["completion_tokens"] < 2000


def test_bad_requests_get_error_events(server):
    with connect(_ws_url(server)) as ws:
        ws.send("not json")
        error = json.loads(ws.recv(timeout=10))
        assert error["type"] == "error" and error["error"]["code"] == "invalid_json"
        ws.send(json.dumps({"id": 3, "prompt": "hi", "temperature": -1}))
        error = json.loads(ws.recv(timeout=10))
        assert error["type"] == "error" and error["id"] == 3
        assert "temperature" in error["error"]["message"]
        ws.send(json.dumps({"id": 4, "prompt": "Hello", "max_tokens": 2}))
        _, done = _receive_until_done(ws)
        assert done["id"] == 4
