"""Chat with a ledger: the user turn is committed before the reply, the reply only once its
stream ended (with its finish reason and statistics); cancelled, timed-out and failed replies
are recorded apart and never sent as history; reopening the file rebuilds the conversation;
a SIGKILL mid-stream leaves an intact file with the user turn and no complete reply."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

from mullama import AsyncChat, Chat, ConfigError, GenerationError, Model, StreamTimeoutError
from mullama.ledger import Ledger
from mullama.remote import RemoteConnectionError, running_calls
from mullama.testing.scripted_server import ScriptedServer

pytest_plugins = ["server_fixtures"]
pytestmark = pytest.mark.timeout(120)
REPO = Path(__file__).resolve().parent.parent


def remote(server: ScriptedServer):
    return Model.connect(server.url + "/v1", model="scripted")


def sent_messages(server: ScriptedServer, n: int = -1) -> list[dict]:
    return server.requests[n][1]["messages"]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "chat.db"


@pytest.fixture(autouse=True)
def no_call_outlives_its_test(poll):
    yield
    assert poll(lambda: running_calls() == 0, 10), "a remote reader thread kept running"


def test_a_complete_reply_is_committed_with_its_statistics(db):
    with ScriptedServer(["Hello", " there"]) as server:
        chat = Chat(remote(server), ledger=db, conversation="c1", system="Be brief.")
        reply = chat.send("Hi")
        assert [t.role for t in chat.turns()] == ["user"]  # committed before the reply
        assert "".join(e.text for e in reply) == "Hello there"
        assert reply.status == "complete"
        assert sent_messages(server) == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
        ]
        user, answer = chat.turns()
        assert (answer.role, answer.status, answer.content) == (
            "assistant",
            "complete",
            "Hello there",
        )
        assert answer.partial_text is None and answer.reply_to == user.id
        assert answer.finish_reason == "stop"
        assert (answer.prompt_tokens, answer.generation_tokens) == (5, 3)
        assert answer.time_to_first_token is not None and answer.elapsed is not None
        chat.close()


def test_reopening_the_file_continues_the_conversation(db):
    with ScriptedServer(["First."]) as server:
        with Chat(remote(server), ledger=db, conversation="talk") as chat:
            list(chat.send("One"))
        with Chat(remote(server), ledger=db, conversation="talk") as again:
            assert again.history() == [
                {"role": "user", "content": "One"},
                {"role": "assistant", "content": "First."},
            ]
            list(again.send("Two"))
            assert sent_messages(server)[-3:] == [
                {"role": "user", "content": "One"},
                {"role": "assistant", "content": "First."},
                {"role": "user", "content": "Two"},
            ]


def test_several_conversations_share_a_file(db):
    with ScriptedServer(["ok"]) as server:
        a = Chat(remote(server), ledger=db, conversation="a")
        b = Chat(remote(server), ledger=db, conversation="b")
        list(a.send("to a"))
        list(b.send("to b"))
        assert [m["content"] for m in a.history()] == ["to a", "ok"]
        assert [m["content"] for m in b.history()] == ["to b", "ok"]
        a.close()
        b.close()
    with Ledger(db) as ledger:
        assert ledger.conversations() == ["a", "b"]


def test_a_cancelled_reply_is_kept_apart_and_not_sent_again(db):
    with ScriptedServer(["partial ", "words "], stall_after=2) as server:
        chat = Chat(
            remote(server),
            ledger=db,
            conversation="c",
        )
        reply = chat.send("Tell me", timeout_ms=0)
        assert next(reply).text == "partial "
        reply.close()
        assert reply.status == "cancelled"
        _, broken = chat.turns()
        assert (broken.status, broken.content, broken.partial_text) == (
            "cancelled",
            None,
            "partial ",
        )
        assert chat.history() == [{"role": "user", "content": "Tell me"}]
        server.stall_after = None
        list(chat.send("Again"))
        assert sent_messages(server) == [
            {"role": "user", "content": "Tell me"},
            {"role": "user", "content": "Again"},
        ]
        chat.close()


def test_timed_out_and_failed_replies_are_recorded_as_such(db):
    with ScriptedServer(["slow "], stall_after=1) as server:
        chat = Chat(remote(server), ledger=db)
        with pytest.raises(StreamTimeoutError):
            for _ in chat.send("Hi", timeout_ms=300):
                pass
        assert chat.turns()[-1].status == "timeout"
        assert chat.turns()[-1].partial_text == "slow "
        chat.close()
    with ScriptedServer(["half "], malformed="data: {oops") as server:
        chat = Chat(remote(server), ledger=db)
        with pytest.raises(GenerationError):
            list(chat.send("Hi"))
        failed = chat.turns()[-1]
        assert failed.status == "failed" and "malformed stream line" in failed.error
        assert failed.partial_text == "half "
        assert all(m["role"] == "user" for m in chat.history())
        chat.close()


def test_a_refused_request_is_recorded_failed_and_raised(db):
    unreachable = Model.connect("http://127.0.0.1:9/v1", model="m")
    chat = Chat(unreachable, ledger=db)
    with pytest.raises(RemoteConnectionError):
        chat.send("anyone?")
    user, failed = chat.turns()
    assert (user.content, failed.status, failed.reply_to) == ("anyone?", "failed", user.id)
    assert "RemoteConnectionError" in failed.error
    chat.close()


def test_bad_arguments_write_nothing(db):
    with ScriptedServer() as server:
        chat = Chat(remote(server), ledger=db)
        with pytest.raises(ConfigError):
            chat.send("Hi", max_tokens=0)
        with pytest.raises(ConfigError):
            chat.send("   ")
        assert chat.turns() == []
        chat.close()
    with pytest.raises(ConfigError, match="generate_stream"):
        Chat(object(), ledger=db)
    db.with_name("junk.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(ConfigError, match="not a mullama ledger"):
        Ledger(db.with_name("junk.db"))


def test_a_local_model_chats_through_a_context(db, tiny_gguf):
    model = Model.load(tiny_gguf)
    with Chat(model, ledger=db) as chat:
        reply = chat.send("Hi", temperature=0.0, max_tokens=5)
        text = "".join(e.text for e in reply)
        (_, answer) = chat.turns()
        assert answer.content == text and answer.generation_tokens == 5
        assert answer.finish_reason == "length"


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_the_async_twin_records_the_same_way(db, anyio_backend):
    with ScriptedServer(["as", "ync"]) as server:
        chat = AsyncChat(Model.connect(server.url + "/v1", model="scripted"), ledger=db)
        reply = await chat.send("Hi")
        assert "".join([e.text async for e in reply]) == "async"
        assert reply.status == "complete"
        server.stall_after = 1
        cut = await chat.send("More", timeout_ms=0)
        with anyio.move_on_after(0.5):
            async for _ in cut:
                pass
        await cut.aclose()
        turns = await chat.turns()
        assert [t.status for t in turns] == ["complete", "complete", "complete", "cancelled"]
        assert [m["content"] for m in await chat.history()] == ["Hi", "async", "More"]
        chat.close()
    refused = AsyncChat(Model.connect("http://127.0.0.1:9/v1", model="m"), ledger=db)
    reply = await refused.send("anyone?")
    with pytest.raises(RemoteConnectionError):
        await reply.__anext__()
    assert (await refused.turns())[-1].status == "failed"
    refused.close()


CRASHING_CLIENT = textwrap.dedent(
    """
    import sys
    from mullama import Chat, Model

    url, db = sys.argv[1], sys.argv[2]
    chat = Chat(Model.connect(url, model="scripted"), ledger=db, conversation="crash")
    reply = chat.send("Will you finish?", timeout_ms=0)
    for n, token in enumerate(reply):
        if n == 3:
            print("streaming", flush=True)
    """
)


def test_sigkill_mid_stream_leaves_the_user_turn_and_no_reply(db):
    with ScriptedServer(["tick "], endless=True, delay_s=0.01) as server:
        env = {**os.environ, "PYTHONPATH": str(REPO / "python")}
        child = subprocess.Popen(
            [sys.executable, "-c", CRASHING_CLIENT, server.url + "/v1", str(db)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        try:
            line = child.stdout.readline()  # bounded by the test's timeout
            assert line.strip() == "streaming", child.stderr.read()
            os.kill(child.pid, signal.SIGKILL)
            assert child.wait(timeout=30) == -signal.SIGKILL
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(timeout=30)
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with Ledger(db) as ledger:
        assert ledger.integrity_check() == "ok"
        (conversation,) = ledger.conversations()
        turns = ledger.turns(ledger.open_conversation(conversation))
        assert [(t.role, t.content) for t in turns] == [("user", "Will you finish?")]
        assert not any(t.role == "assistant" and t.complete for t in turns)
