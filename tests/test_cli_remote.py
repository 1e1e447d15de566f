"""`mullama run --remote URL --model NAME` and `mullama chat --ledger FILE`, as users run them:
the installed command in a subprocess, against a ScriptedServer on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mullama.ledger import Ledger
from mullama.testing.scripted_server import ScriptedServer

pytest_plugins = ["server_fixtures"]
pytestmark = pytest.mark.timeout(240)

MULLAMA = str(Path(sys.executable).with_name("mullama"))


def mullama(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MULLAMA, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )


@pytest.fixture
def server():
    with ScriptedServer(["Hello", ", world", "!"]) as running:
        yield running


def test_run_streams_a_remote_reply(server):
    done = mullama("run", "--remote", server.url + "/v1", "--model", "scripted", "Say hi.")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hello, world!\n"
    ((path, body),) = server.requests
    assert path == "/v1/chat/completions"
    assert body["messages"] == [{"role": "user", "content": "Say hi."}]


def test_run_on_ollama_with_flags(server):
    done = mullama(
        "run", "--remote", server.url + "/api", "-m", "scripted", "--stop", ",", "--raw", "Hi"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hello\n"
    assert server.requests[0][0] == "/api/generate"


def test_remote_errors_are_one_line(server):
    missing = mullama("run", "--remote", server.url + "/v1", "--model", "absent", "Hi")
    assert missing.returncode == 3  # as for a local model that cannot be found
    assert "does not serve the model 'absent'" in missing.stderr
    no_model = mullama("run", "--remote", server.url + "/v1", "Hi")
    assert no_model.returncode == 2 and "--remote needs --model" in no_model.stderr
    bad_url = mullama("run", "--remote", "ftp://x", "--model", "m", "Hi")
    assert bad_url.returncode == 2 and "ftp://x" in bad_url.stderr


def test_chat_with_a_ledger_resumes_from_the_file(server, tmp_path):
    db = tmp_path / "chat.db"
    common = ["chat", "--remote", server.url + "/v1", "--model", "scripted", "--ledger", str(db)]
    first = mullama(*common, stdin="One\n")
    assert first.returncode == 0, first.stderr
    assert "Hello, world!" in first.stdout
    second = mullama(*common, stdin="Two\n")
    assert second.returncode == 0, second.stderr
    assert [m["content"] for m in server.requests[-1][1]["messages"]] == [
        "One",
        "Hello, world!",
        "Two",
    ]
    with Ledger(db) as ledger:
        turns = ledger.turns(ledger.open_conversation("default"))
        assert [(t.role, t.status) for t in turns] == [
            ("user", "complete"),
            ("assistant", "complete"),
            ("user", "complete"),
            ("assistant", "complete"),
        ]
    other = mullama(*common, "--conversation", "other", stdin="/clear\nThree\n")
    assert other.returncode == 0, other.stderr
    assert [m["content"] for m in server.requests[-1][1]["messages"]] == ["Three"]


def test_run_with_a_prompt_refuses_a_ledger(server, tmp_path):
    done = mullama(
        "run", "--remote", server.url + "/v1", "-m", "scripted", "--ledger", "x.db", "Hi"
    )
    assert done.returncode == 2 and "mullama chat" in done.stderr


def test_a_local_chat_keeps_its_ledger(tiny_model_path, tmp_path):
    db = tmp_path / "local.db"
    common = ["chat", "--model", str(tiny_model_path), "--ledger", str(db)]
    flags = ["--temperature", "0", "--max-tokens", "4"]
    for line in ("Hi\n", "Again\n"):
        done = mullama(*common, *flags, stdin=line)
        assert done.returncode == 0, done.stderr
    with Ledger(db) as ledger:
        turns = ledger.turns(ledger.open_conversation("default"))
    assert [(t.role, t.status, t.finish_reason) for t in turns] == [
        ("user", "complete", None),
        ("assistant", "complete", "length"),
        ("user", "complete", None),
        ("assistant", "complete", "length"),
    ]
    assert all(t.generation_tokens == 4 for t in turns if t.role == "assistant")
