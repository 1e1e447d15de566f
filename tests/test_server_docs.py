"""The curl examples of docs/server.md and docs/server-api.md, run as written against a live
server, and the API page's coverage of the server's route table.

The server serves the tiny random-weight model under the name the docs use ("smollm2") at a
free port, which replaces the docs' http://127.0.0.1:8080. curl fails on an HTTP error status,
so a route or parameter the docs get wrong fails the test. On the API page each curl example
is followed by the response it gives: every JSON object shown there must come back with at
least the keys shown (the values differ: the tiny model's replies are byte soup), and every
other line shown must come back as it is.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from starlette.routing import BaseRoute, WebSocketRoute

pytest_plugins = ["server_fixtures"]
pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed"),
]

DOCS = Path(__file__).resolve().parent.parent / "docs"
DOC = DOCS / "server.md"
API_DOC = DOCS / "server-api.md"
DOC_URL = "http://127.0.0.1:8080"
BASH_BLOCK = re.compile(r"```bash\n(.*?)\n```", re.S)
# On the API page: a curl example and the fenced response after it.
EXAMPLE = re.compile(
    r"```bash\n(?P<curl>[^`]*?curl [^`]*?)\n```\s*```(?:json|text)\n(?P<reply>.*?)\n```", re.S
)
# An API page section: "### `GET /v1/models`", "### `WS /v1/ws`".
ROUTE_HEADING = re.compile(r"^### `(?P<method>[A-Z]+) (?P<path>/\S*)`$", re.M)
# What each block's output must show (after removing the blanks after ":" and ",").
EXPECTED = {
    "/v1/chat/completions": ["data:[DONE]", '"object":"chat.completion.chunk"'],
    "/api/generate": ['"done":true'],
    "/api/chat": ['"done":true', '"role":"assistant"'],
    "/api/tags": ['"models":[{"name":"smollm2"'],
}


def _curl_blocks() -> list[str]:
    return [b for b in BASH_BLOCK.findall(DOC.read_text(encoding="utf-8")) if "curl " in b]


CURL_BLOCKS = _curl_blocks()


def _api_examples() -> list[tuple[str, str]]:
    return [(m["curl"], m["reply"]) for m in EXAMPLE.finditer(API_DOC.read_text(encoding="utf-8"))]


API_EXAMPLES = _api_examples()


def _api_sections() -> dict[tuple[str, str], str]:
    """(method, path) -> the text of that route's section of the API page."""
    text = API_DOC.read_text(encoding="utf-8")
    heads = list(ROUTE_HEADING.finditer(text))
    ends = [h.start() for h in heads[1:]] + [len(text)]
    return {
        (h["method"], h["path"]): text[h.end() : end] for h, end in zip(heads, ends, strict=True)
    }


def _run_curl(block: str, url: str) -> subprocess.CompletedProcess[str]:
    assert DOC_URL in block
    script = 'set -euo pipefail\ncurl() { command curl -sS --fail-with-body "$@"; }\n'
    script += block.replace(DOC_URL, url)
    return subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, errors="replace", timeout=100
    )


def _json_or_none(line: str) -> object:
    """The JSON object of an NDJSON line or SSE event; None for other lines (`data: [DONE]`)."""
    body = line.removeprefix("data: ").strip()
    if not body.startswith("{"):
        return None
    return json.loads(body)


def _has_shape(shown: object, got: object) -> bool:
    """`got` has every key `shown` has, recursively (lists: their first items)."""
    if isinstance(shown, dict):
        return isinstance(got, dict) and all(
            key in got and _has_shape(value, got[key]) for key, value in shown.items()
        )
    if isinstance(shown, list) and shown:
        return isinstance(got, list) and bool(got) and _has_shape(shown[0], got[0])
    return True


def test_the_docs_have_curl_examples():
    assert len(CURL_BLOCKS) >= 2
    assert len(API_EXAMPLES) >= 11  # every HTTP route of the API page, with its response
    for route in EXPECTED:
        assert any(route in block for block in CURL_BLOCKS), route


@pytest.fixture(scope="module")
def docs_server(tiny_model):
    from server_fixtures import start_server

    running = start_server(tiny_model, "smollm2", default_max_tokens=32)
    yield running
    running.stop()


@pytest.mark.parametrize("block", CURL_BLOCKS, ids=lambda b: re.search(r"/(v1|api)/\w+", b)[0])
def test_curl_example(docs_server, block):
    done = _run_curl(block, docs_server.url)
    assert done.returncode == 0, done.stdout + done.stderr
    compact = done.stdout.replace(": ", ":").replace(", ", ",")
    for route, needles in EXPECTED.items():
        if route in block:
            for needle in needles:
                assert needle in compact, (route, needle, done.stdout[-500:])
    assert '"error"' not in done.stdout


def _methods(route: BaseRoute) -> list[str]:
    """How the API page names a route's methods: WS for a WebSocket, HEAD left out (it comes
    with every GET)."""
    if isinstance(route, WebSocketRoute):
        return ["WS"]
    return sorted(set(getattr(route, "methods", None) or {"GET"}) - {"HEAD"})


def test_the_api_page_has_an_example_for_every_route(docs_server):
    sections = _api_sections()
    routes = docs_server.app.routes
    assert len(routes) >= 13
    documented = set()
    for route in routes:
        for method in _methods(route):
            documented.add((method, route.path))
            section = sections.get((method, route.path))
            assert section is not None, f"docs/server-api.md has no section `{method} {route.path}`"
            # A curl example with its response (run below) or a Python one (tests/test_docs.py).
            assert EXAMPLE.search(section) or "```python\n" in section, (method, route.path)
    assert set(sections) == documented, "the API page documents routes the server does not have"


@pytest.mark.parametrize(
    ("block", "reply"),
    API_EXAMPLES,
    ids=[f"{n}:{re.search(DOC_URL + r'(/[^ ]*)', b)[1]}" for n, (b, _) in enumerate(API_EXAMPLES)],
)
def test_api_example_gives_the_response_shown(docs_server, block, reply):
    done = _run_curl(block, docs_server.url)
    assert done.returncode == 0, done.stdout + done.stderr
    try:  # one JSON document (possibly over several lines)
        shown_whole = json.loads(reply)
    except json.JSONDecodeError:
        shown_whole = None
    if shown_whole is not None:
        assert _has_shape(shown_whole, json.loads(done.stdout)), done.stdout[-800:]
        return
    # A stream (SSE events or NDJSON lines), or plain text: line by line.
    got_lines = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    got_json = [_json_or_none(line) for line in got_lines]
    for shown_line in (line.strip() for line in reply.splitlines()):
        if not shown_line or shown_line == "...":
            continue
        shown = _json_or_none(shown_line)
        if shown is None:
            assert shown_line in got_lines, (shown_line, done.stdout[-800:])
        else:
            assert any(_has_shape(shown, got) for got in got_json), (shown, done.stdout[-800:])
