"""The interactive chat of `mullama run`, driven through a pseudo-terminal, on the tiny
random-weight model (its replies are byte soup; what matters is the session around them)."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest_plugins = ["server_fixtures"]
pytestmark = pytest.mark.timeout(240)

MULLAMA = str(Path(sys.executable).with_name("mullama"))
PROMPT = b">>> "


class Terminal:
    """A process on a pty: what it writes (stdout and stderr) is read back with expect()."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        main, secondary = pty.openpty()
        self.proc = subprocess.Popen(
            [MULLAMA, *args],
            stdin=secondary,
            stdout=secondary,
            stderr=secondary,
            start_new_session=True,
            env={**os.environ, "TERM": "xterm", **(env or {})},
            # The tests send Ctrl+C: a parent that ignores SIGINT (a background job of a
            # non-interactive shell) would pass that on, so the child sets it itself.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        os.close(secondary)
        self.fd = main
        self.seen = b""

    def expect(self, needle: bytes, timeout_s: float = 120) -> bytes:
        """Reads until `needle` appears after what earlier expects consumed."""
        deadline = time.monotonic() + timeout_s
        while needle not in self.seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"never saw {needle!r}; got {self.seen[-500:]!r}")
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"exited before {needle!r}; got {self.seen[-500:]!r}")
                self.seen += chunk
        before, _, self.seen = self.seen.partition(needle)
        return before

    def read_some(self, timeout_s: float = 60) -> bytes:
        """Waits for more output than earlier expects consumed; returns (and consumes) it."""
        if not self.seen:
            ready, _, _ = select.select([self.fd], [], [], timeout_s)
            if not ready:
                raise AssertionError("no output")
            self.seen += os.read(self.fd, 4096)
        out, self.seen = self.seen, b""
        return out

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def interrupt(self) -> None:
        # What Ctrl+C does: SIGINT to the terminal's foreground process group.
        os.killpg(self.proc.pid, signal.SIGINT)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        os.close(self.fd)


@pytest.fixture
def history(tmp_path) -> Path:
    return tmp_path / "state" / "history"


@pytest.fixture
def terminal(history, engine_name):
    """Starts `mullama` on a pseudo-terminal, on each engine in turn."""
    terminals = []

    def start(*args: str, env: dict[str, str] | None = None) -> Terminal:
        # Every chat keeps its readline history in the test's folder, never the user's.
        own = {"MULLAMA_HISTORY_FILE": str(history), "MULLAMA_ENGINE": engine_name}
        terminals.append(Terminal(*args, env={**own, **(env or {})}))
        return terminals[-1]

    yield start
    for t in terminals:
        t.close()


def _prompt_and_reply_tokens(output: bytes) -> tuple[int, int]:
    match = re.search(rb"prompt: (\d+) tokens.*generation: (\d+) tokens", output)
    assert match, output[-500:]
    return int(match.group(1)), int(match.group(2))


def test_chat_keeps_history_and_obeys_commands(terminal, tiny_model_path):
    term = terminal(
        "run", "--model", str(tiny_model_path), "--temperature", "0", "--max-tokens", "8", "-v"
    )
    assert b"chatting with tiny" in term.expect(PROMPT)
    term.send("My name is Ada.\n")
    first_prompt, first_reply = _prompt_and_reply_tokens(term.expect(PROMPT))
    # The second turn's prompt holds the first exchange too.
    term.send("What is my name?\n")
    second_prompt, _ = _prompt_and_reply_tokens(term.expect(PROMPT))
    assert second_prompt > first_prompt + first_reply

    term.send("/set temperature 0.5\n")
    assert b"temperature = 0.5" in term.expect(PROMPT)
    term.send("/set top_p 7\n")
    assert b"invalid value for top_p" in term.expect(PROMPT)
    term.send("/set\n")
    assert b"temperature = 0.5" in term.expect(PROMPT)
    term.send("/set max_tokens 3\n")
    term.expect(PROMPT)
    term.send("/clear\n")
    assert b"conversation cleared" in term.expect(PROMPT)
    # After /clear the same first message makes the same prompt as at the start.
    term.send("My name is Ada.\n")
    prompt, reply = _prompt_and_reply_tokens(term.expect(PROMPT))
    assert (prompt, reply) == (first_prompt, 3)
    term.send("/bye\n")
    assert term.proc.wait(30) == 0


def test_ctrl_c_stops_the_reply_not_the_session(terminal, tiny_model_path):
    # The tiny model's greedy reply to "Hi" runs thousands of tokens.
    term = terminal(
        "run",
        "--model",
        str(tiny_model_path),
        "--temperature",
        "0",
        "--max-tokens",
        "8000",
        "--ctx-size",
        "8192",
    )
    term.expect(PROMPT)
    term.send("Hi\n")
    term.expect(b"Hi\r\n")  # the terminal's echo of the line
    assert term.read_some()  # the reply is streaming
    term.interrupt()
    term.expect(PROMPT, timeout_s=30)  # back at the prompt: the session survived
    assert term.proc.poll() is None
    term.send("/set max_tokens 4\n")
    term.expect(PROMPT)
    term.send("Hi\n")
    term.expect(PROMPT)
    # Ctrl+D leaves.
    term.send("\x04")
    assert term.proc.wait(30) == 0


UP = "\x1b[A"  # what the Up arrow key sends


def test_up_arrow_recalls_lines_across_turns_and_sessions(terminal, tiny_model_path, history):
    term = terminal("run", "--model", str(tiny_model_path), "--max-tokens", "4")
    term.expect(PROMPT)
    term.send("/set temperature 0.25\n")
    assert b"mullama: temperature = 0.25" in term.expect(PROMPT)
    term.send("/set top_k 3\n")
    assert b"mullama: top_k = 3" in term.expect(PROMPT)
    # Up twice: the line before last, sent again as it was.
    term.send(UP + UP + "\n")
    assert b"mullama: temperature = 0.25" in term.expect(PROMPT)
    term.send("/bye\n")
    assert term.proc.wait(30) == 0
    assert "/set top_k 3" in history.read_text()

    # A new session starts with the old one's lines: Up twice skips "/bye".
    again = terminal("run", "--model", str(tiny_model_path), "--max-tokens", "4")
    again.expect(PROMPT)
    again.send(UP + UP + "\n")
    assert b"mullama: temperature = 0.25" in again.expect(PROMPT)
    again.send("/bye\n")
    assert again.proc.wait(30) == 0


def test_triple_quotes_make_one_message_of_several_lines(terminal, tiny_model_path, tiny_model):
    term = terminal(
        "run", "--model", str(tiny_model_path), "--temperature", "0", "--max-tokens", "2", "-v"
    )
    term.expect(PROMPT)
    term.send('"""\nMy name\nis Ada.\n"""\n')
    shown = term.expect(PROMPT)
    assert shown.count(b"generation:") == 1  # one reply, not one per line
    prompt, _ = _prompt_and_reply_tokens(shown)
    expected = tiny_model.chat_ids([{"role": "user", "content": "My name\nis Ada."}])
    assert prompt == len(expected)
    # Quotes on one line are one message too.
    term.send('"""My name\n')
    term.send('is Ada."""\n')
    assert _prompt_and_reply_tokens(term.expect(PROMPT))[0] > prompt  # the history grew
    term.send("/bye\n")
    assert term.proc.wait(30) == 0


def test_history_file_is_made_by_the_chat_only(tmp_path, tiny_model_path):
    state = tmp_path / "xdg-state"
    env = {**os.environ, "XDG_STATE_HOME": str(state)}
    env.pop("MULLAMA_HISTORY_FILE", None)
    done = subprocess.run(
        [MULLAMA, "run", "--model", str(tiny_model_path), "--max-tokens", "2", "Hi"],
        env=env,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert not state.exists()
    term = Terminal(
        "run",
        "--model",
        str(tiny_model_path),
        env={"XDG_STATE_HOME": str(state), "MULLAMA_HISTORY_FILE": ""},
    )
    try:
        term.expect(PROMPT)
        term.send("/set seed 7\n")
        term.expect(PROMPT)
        assert "/set seed 7" in (state / "mullama" / "history").read_text()
    finally:
        term.close()
