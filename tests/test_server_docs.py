"""The curl examples of docs/server.md, run as written against a live server.

The server serves the tiny random-weight model under the name the docs use ("smollm2") at a
free port, which replaces the docs' http://127.0.0.1:8080. curl fails on an HTTP error status,
so a route or parameter the docs get wrong fails the test.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytest_plugins = ["server_fixtures"]
pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed"),
]

DOC = Path(__file__).resolve().parent.parent / "docs" / "server.md"
DOC_URL = "http://127.0.0.1:8080"
BASH_BLOCK = re.compile(r"```bash\n(.*?)\n```", re.S)
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


def test_the_docs_have_curl_examples():
    assert len(CURL_BLOCKS) >= 2
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
    assert DOC_URL in block
    script = 'set -euo pipefail\ncurl() { command curl -sS --fail-with-body "$@"; }\n'
    script += block.replace(DOC_URL, docs_server.url)
    done = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, errors="replace", timeout=100
    )
    assert done.returncode == 0, done.stdout + done.stderr
    compact = done.stdout.replace(": ", ":").replace(", ", ",")
    for route, needles in EXPECTED.items():
        if route in block:
            for needle in needles:
                assert needle in compact, (route, needle, done.stdout[-500:])
    assert '"error"' not in done.stdout
