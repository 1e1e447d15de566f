"""A headless chromium for browser tests: Debian's /usr/bin/chromium driven by playwright-core
(npm, tests/browser/) through a small Node script speaking JSON lines over stdin/stdout.

What it needs (chromium, node, `npm ci` in tests/browser) is installed by scripts/test.sh;
without it a browser test skips on a developer's machine and fails under CI=true.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

from needs import REPO_ROOT, missing

BROWSER_DIR = REPO_ROOT / "tests" / "browser"
CHROMIUM = Path(os.environ.get("MULLAMA_CHROMIUM", "/usr/bin/chromium"))
SETUP = "apt-get install -y chromium && (cd tests/browser && npm ci)"
CALL_TIMEOUT_S = 30.0
"""The longest one command may take unless it says otherwise (playwright's own waits are 15 s)."""


class BrowserError(Exception):
    """A command the page could not carry out (the driver's error, with its stack)."""


def browser_available() -> str:
    """The node executable, once chromium, node and playwright-core are all there; otherwise
    skips the test (fails under CI)."""
    node = shutil.which("node")
    if node is None:
        missing(f"node is not installed (browser tests need it): {SETUP}")
    if not CHROMIUM.is_file():
        missing(f"chromium is not installed at {CHROMIUM}: {SETUP}")
    if not (BROWSER_DIR / "node_modules" / "playwright-core" / "package.json").is_file():
        missing(f"playwright-core is not installed in {BROWSER_DIR}: {SETUP}")
    assert node is not None
    return node


class Browser:
    """One chromium page. Every call waits at most its timeout; `close()` ends chromium."""

    def __init__(self, user_data_dir: Path, log_path: Path) -> None:
        node = browser_available()
        self.log_path = log_path
        self._log = open(log_path, "w")  # the driver's and chromium's stderr, for failures
        self._proc = subprocess.Popen(
            [node, str(BROWSER_DIR / "driver.mjs"), str(user_data_dir)],
            cwd=BROWSER_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env={**os.environ, "MULLAMA_CHROMIUM": str(CHROMIUM)},
        )
        self._replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                reply = json.loads(line)
            except ValueError:
                continue  # not a reply (a stray print): the log has the story
            if isinstance(reply, dict):
                self._replies.put(reply)
        self._replies.put(None)  # the driver exited

    def call(self, op: str, timeout_s: float = CALL_TIMEOUT_S, **args: Any) -> Any:
        """Runs one driver command and returns its value (BrowserError when it failed)."""
        self._next_id += 1
        command_id = self._next_id
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps({"id": command_id, "op": op, **args}) + "\n")
        self._proc.stdin.flush()
        while True:
            try:
                reply = self._replies.get(timeout=timeout_s)
            except queue.Empty:
                raise BrowserError(f"{op}: no answer within {timeout_s} s") from None
            if reply is None:
                raise BrowserError(f"{op}: the driver exited; see {self.log_path}")
            if reply.get("id") != command_id:
                continue  # the late answer to a command that timed out
            if not reply.get("ok"):
                raise BrowserError(f"{op}: {reply.get('error')}")
            return reply.get("value")

    # -- shorthands -------------------------------------------------------------------------
    def goto(self, url: str) -> dict[str, Any]:
        return self.call("goto", url=url)

    def eval(self, expression: str, timeout_s: float = CALL_TIMEOUT_S) -> Any:
        return self.call("eval", timeout_s, expression=expression)

    def wait_for(self, expression: str, timeout_s: float = 15.0) -> Any:
        """Waits (at most `timeout_s`) until `expression` is truthy in the page; its value."""
        return self.call(
            "waitFor", timeout_s + 5, expression=expression, timeoutMs=int(timeout_s * 1000)
        )

    def click(self, selector: str) -> None:
        self.call("click", selector=selector)

    def fill(self, selector: str, value: str) -> None:
        self.call("fill", selector=selector, value=value)

    def press(self, selector: str, key: str) -> None:
        self.call("press", selector=selector, key=key)

    def close(self) -> None:
        try:
            if self._proc.poll() is None:
                self.call("close", 15)
        except BrowserError:
            pass
        finally:
            if self._proc.stdin is not None:
                self._proc.stdin.close()
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(15)
            self._log.close()
