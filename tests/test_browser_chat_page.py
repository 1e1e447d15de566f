"""The chat page at `/` in a real browser (headless chromium, tests/browser_driver.py) against
`mullama serve --api-key` in a subprocess: the key prompt, a streamed reply growing frame by
frame, Stop ending the server's compute, a second turn on the same conversation (its KV cache
reused), and errors shown in the page. A screenshot lands in tests/artifacts/.

Errors this server cannot be made to answer on demand (503 busy with Retry-After, a timeout)
are answered for it by the browser's request interception, to test how the page shows them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from browser_driver import Browser, browser_available
from needs import REPO_ROOT, missing

API_KEY = "page-test-key"
CONTEXT = 32768
"""The served tiny model's context: room for a reply long enough that, were Stop not to stop
the compute, the server would stay busy for a long time after it (30000 tokens: minutes on a
2-core machine, tens of seconds on a fast one)."""
LONG_REPLY = 30000
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
IDLE_WINDOW_S = 0.5
IDLE_CPU_S = 0.1
"""CPU seconds the server may use in IDLE_WINDOW_S and count as idle (decoding takes a core)."""
STOP_BOUND_S = 5.0
"""How long the server may take to go idle after Stop. Stopping takes one token; the reply left
unfinished would keep a core busy for far longer (tens of thousands of tokens)."""

# The status line's phases as they change (each tick sets the phase again: repeats are dropped).
WATCH_PHASES = """(() => {
    const status = document.getElementById('status');
    window.phasesSeen = [];
    new MutationObserver(() => {
        if (phasesSeen.at(-1) !== status.dataset.phase) phasesSeen.push(status.dataset.phase);
    }).observe(status, {attributes: true, attributeFilter: ['data-phase']});
    return true;
})()"""
PHASES_SEEN = "window.phasesSeen"
LAST_REPLY = "[...document.querySelectorAll('#log .message.assistant')].at(-1)"
PHASE = "document.getElementById('status').dataset.phase"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_idle(pid: int, bound_s: float) -> bool:
    """Waits until the process uses under IDLE_CPU_S of CPU in a window of IDLE_WINDOW_S."""
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        before = _cpu_seconds(pid)
        time.sleep(IDLE_WINDOW_S)
        if _cpu_seconds(pid) - before < IDLE_CPU_S:
            return True
    return False


@dataclass
class Served:
    url: str
    proc: subprocess.Popen
    model_path: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`mullama serve --api-key` on the tiny model with a 32k context, on a free port."""
    browser_available()  # skip (or fail under CI) before starting anything
    if not Path("/proc/self/stat").is_file():
        missing("the Stop check reads the server's CPU time from /proc (Linux)")
    from mullama.testing.tiny_models import TinyConfig, write_tiny_gguf

    folder = tmp_path_factory.mktemp("page_model")
    # ends=False: greedy replies never end on their own, so only Stop can end the long one.
    config = TinyConfig(context_length=CONTEXT, ends=False)
    model = write_tiny_gguf(folder / "tiny.gguf", config)
    port = _free_port()
    command = [sys.executable, "-m", "mullama.cli", "serve", "--model", str(model)]
    command += ["--port", str(port), "--api-key", API_KEY, "--ctx-size", str(CONTEXT)]
    command += ["--log-level", "warning"]
    log = open(folder / "server.log", "w")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not _healthy(url) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None and _healthy(url), (folder / "server.log").read_text()
        yield Served(url, proc, model)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
        log.close()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    folder = tmp_path_factory.mktemp("chromium")
    running = Browser(folder / "profile", folder / "driver.log")
    yield running
    running.close()


def _open_fresh(browser: Browser, url: str) -> None:
    """The page with empty storage (no saved key or settings), its key prompt answered."""
    browser.goto(url)
    browser.eval("sessionStorage.clear(), localStorage.clear()")
    browser.goto(url)
    browser.wait_for("document.getElementById('key-dialog').open")
    browser.fill("#key-input", API_KEY)
    browser.click("#key-save")
    browser.wait_for("document.getElementById('model').dataset.loaded")


def _settings(browser: Browser, **values: str) -> None:
    browser.eval("document.getElementById('settings').open = true")
    for field, value in values.items():
        browser.fill(f"#{field}", value)


def _no_page_errors(browser: Browser) -> None:
    errors = browser.call("errors")
    assert errors["page"] == [], errors


def _chat_tokens(model_path: Path, messages: list[dict[str, str]]) -> int:
    """How many tokens the served model reads for `messages` (its chat template applied)."""
    from mullama.model import Model

    return len(Model.load(model_path, n_ctx=256).chat_ids(messages))


def test_a_conversation_in_the_browser(served: Served, browser: Browser) -> None:
    url, server = served.url, served.proc
    # -- the page is public; the API asks for the key once, and a wrong one is shown refused
    loaded = browser.goto(url)
    assert loaded["status"] == 200 and loaded["contentType"].startswith("text/html")
    browser.eval("sessionStorage.clear(), localStorage.clear()")
    browser.goto(url)
    browser.wait_for("document.getElementById('key-dialog').open")
    browser.fill("#key-input", "wrong-key")
    browser.click("#key-save")
    refusal = browser.wait_for(
        "document.getElementById('key-dialog').open && "
        "!document.getElementById('key-error').hidden && "
        "document.getElementById('key-error').textContent"
    )
    assert "refused" in refusal and "invalid or missing API key" in refusal
    browser.fill("#key-input", API_KEY)
    browser.click("#key-save")
    browser.wait_for("document.getElementById('model').dataset.loaded")
    assert browser.eval("[...document.getElementById('model').options].map(o => o.value)") == [
        "tiny"
    ]
    browser.call("reload")  # the key is kept for the tab: not asked again
    browser.wait_for("document.getElementById('model').dataset.loaded")
    assert browser.eval("document.getElementById('key-dialog').open") is False

    # -- Shift+Enter adds a line; Enter sends; the reply streams in over several frames
    _settings(browser, **{"temperature": "0", "max-tokens": str(LONG_REPLY)})
    first_prompt = "Tell me a long story about the sea, the wind and the boats of the harbour."
    browser.fill("#prompt", first_prompt)
    browser.press("#prompt", "Shift+Enter")
    assert browser.eval("document.getElementById('prompt').value") == first_prompt + "\n"
    assert browser.call("chatRequests") == []
    browser.fill("#prompt", first_prompt)
    browser.eval(WATCH_PHASES)
    idle_cpu = _cpu_seconds(server.pid)
    browser.press("#prompt", "Enter")
    browser.wait_for(f"{PHASE} === 'generating'", 60)
    lengths = browser.eval(
        f"""new Promise(resolve => {{
            const lengths = [];
            const sample = () => {{
                lengths.push({LAST_REPLY}.querySelector('.body').textContent.length);
                if (lengths.length === 20) resolve(lengths); else requestAnimationFrame(sample);
            }};
            requestAnimationFrame(sample);
        }})"""
    )
    assert lengths == sorted(lengths), lengths
    assert len(set(lengths)) >= 3, f"the reply did not grow from frame to frame: {lengths}"
    assert _cpu_seconds(server.pid) > idle_cpu  # the server is computing the reply

    # -- Stop: the request is aborted and the server stops computing
    browser.click("#stop-button")
    browser.wait_for(f"{PHASE} === 'stopped'")
    assert _wait_idle(server.pid, STOP_BOUND_S), "the server kept computing after Stop"
    # Waiting for the server, reading the prompt (headers came, no token yet), the reply.
    assert browser.eval(PHASES_SEEN) == ["waiting", "prefill", "generating", "stopped"]
    shown_tokens = int(browser.eval("document.getElementById('stats').dataset.tokens"))
    assert 0 < shown_tokens < LONG_REPLY
    assert browser.eval(f"{LAST_REPLY}.classList.contains('stopped')")
    (first_request,) = browser.call("chatRequests")
    assert first_request["headers"]["authorization"] == f"Bearer {API_KEY}"
    first_body = json.loads(first_request["body"])
    assert first_body["stream"] is True and first_body["max_tokens"] == LONG_REPLY
    assert first_body["temperature"] == 0
    assert first_body["messages"] == [{"role": "user", "content": first_prompt}]
    stopped_text = browser.eval(f"{LAST_REPLY}.querySelector('.body').textContent")

    # -- a second turn carries the conversation, and the server reuses its KV cache
    _settings(browser, **{"max-tokens": "12"})
    browser.fill("#prompt", "And then?")
    browser.click("#send")
    browser.wait_for(f"{PHASE} === 'done'", 60)
    (second_request,) = browser.call("chatRequests")
    messages = json.loads(second_request["body"])["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[0]["content"] == first_prompt and messages[2]["content"] == "And then?"
    assert messages[1]["content"].strip() and stopped_text.strip()
    stats = browser.eval("({...document.getElementById('stats').dataset})")
    assert int(stats["tokens"]) == 12  # the usage chunk's count
    # The stopped turn's Context went back to the pool and this turn landed on it: at least
    # the first prompt was read from its cache (less one token at a merge with the reply).
    first_prompt_tokens = _chat_tokens(served.model_path, first_body["messages"])
    assert first_prompt_tokens - 1 <= int(stats["cachedTokens"]) < int(stats["promptTokens"])
    assert float(stats["tokensPerSecond"]) > 0 and int(stats["ttftMs"]) >= 0
    assert browser.eval("document.querySelectorAll('#log .copy-reply').length") == 2

    # -- a server error is shown in the page: a reply that cannot fit the context
    _settings(browser, **{"max-tokens": str(CONTEXT + 1)})
    browser.fill("#prompt", "One more?")
    browser.press("#prompt", "Enter")
    error = browser.wait_for("document.querySelector('#log .message.error')?.textContent", 30)
    assert "Too long for the model's context" in error and "exceeds the context" in error
    assert browser.eval(PHASE) == "error"
    assert browser.eval("document.getElementById('prompt').value") == "One more?"

    ARTIFACTS.mkdir(exist_ok=True)
    shot = browser.call("screenshot", path=str(ARTIFACTS / "chat-page.png"))
    print(f"screenshot of the chat page: {shot}")
    assert Path(shot).stat().st_size > 0
    _no_page_errors(browser)


BUSY = {
    "error": {
        "message": "the server is busy: 64 requests are waiting",
        "type": "server_error",
        "param": None,
        "code": "server_busy",
    }
}


def test_a_busy_server_is_shown_with_its_retry_after(served: Served, browser: Browser) -> None:
    url = served.url
    _open_fresh(browser, url)
    _settings(browser, **{"max-tokens": "4"})
    pattern = "**/v1/chat/completions"
    browser.call(
        "route",
        pattern=pattern,
        status=503,
        headers={"Content-Type": "application/json", "Retry-After": "2"},
        body=json.dumps(BUSY),
    )
    browser.fill("#prompt", "Hello")
    browser.click("#send")
    error = browser.wait_for("document.querySelector('#log .message.error')?.textContent")
    assert "The server is busy" in error and "64 requests are waiting" in error
    assert browser.eval("document.querySelector('#log .message.error').dataset.retryAfter") == "2"
    assert browser.eval("document.querySelector('#log .retry').disabled") is True
    browser.call("unroute", pattern=pattern)
    browser.wait_for("!document.querySelector('#log .retry').disabled", 10)
    browser.click("#log .retry")
    browser.wait_for(f"{PHASE} === 'done'", 60)
    assert browser.eval("document.querySelectorAll('#log .message.error').length") == 0
    assert browser.eval(f"{LAST_REPLY}.querySelector('.body').textContent").strip()
    _no_page_errors(browser)


def test_a_server_that_sends_nothing_times_out_in_the_page(
    served: Served, browser: Browser
) -> None:
    url = served.url
    _open_fresh(browser, url)
    _settings(browser, timeout="1")
    pattern = "**/v1/chat/completions"
    browser.call("route", pattern=pattern, hang=True)
    try:
        browser.fill("#prompt", "Hello")
        browser.press("#prompt", "Enter")
        assert browser.wait_for(f"{PHASE} === 'waiting'")
        error = browser.wait_for("document.querySelector('#log .message.error')?.textContent")
        assert "Timed out" in error and "sent nothing for 1 s" in error
        assert browser.eval("document.getElementById('prompt').value") == "Hello"
    finally:
        browser.call("unroute", pattern=pattern)
    _no_page_errors(browser)


def test_escape_stops_a_request(served: Served, browser: Browser) -> None:
    url = served.url
    _open_fresh(browser, url)
    pattern = "**/v1/chat/completions"
    browser.call("route", pattern=pattern, hang=True)
    try:
        browser.fill("#prompt", "Hello")
        browser.press("#prompt", "Enter")
        browser.wait_for(f"{PHASE} === 'waiting'")
        browser.press("#prompt", "Escape")
        browser.wait_for(f"{PHASE} === 'stopped'")
        assert browser.eval("document.querySelectorAll('#log .message.error').length") == 0
        assert browser.eval("document.getElementById('send').disabled") is False
    finally:
        browser.call("unroute", pattern=pattern)
    _no_page_errors(browser)


def test_replies_render_markdown_safely(served: Served, browser: Browser) -> None:
    """The page's renderer on a reply with code, emphasis, a list, and HTML that must stay text."""
    url = served.url
    _open_fresh(browser, url)
    html = browser.eval(
        """import('/static/markdown.js').then(m => m.renderMarkdown(
            "Some **bold** and `x<y`\\n\\n- one\\n- two\\n\\n```python\\nprint('<b>')\\n```\\n" +
            "<img src=x onerror=alert(1)> [a](javascript:alert(1)) [b](https://example.com)"))"""
    )
    assert "<strong>bold</strong>" in html and "<code>x&lt;y</code>" in html
    assert "<ul><li>one</li><li>two</li></ul>" in html
    assert '<code class="language-python">print(&#39;&lt;b&gt;&#39;)</code>' in html
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert 'href="javascript' not in html and 'href="https://example.com"' in html
