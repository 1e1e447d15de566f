"""docs/scale-out.md as written: two `mullama serve` replicas behind nginx, routed by the
conversation's first message, so every turn of a conversation reaches the replica holding its
KV cache. The test starts both replicas and nginx itself (free ports on 127.0.0.1) and stops
them; every wait is bounded."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from needs import REPO_ROOT, missing

pytest_plugins = ["server_fixtures"]
pytestmark = pytest.mark.timeout(300)

DOC = REPO_ROOT / "docs" / "scale-out.md"
START_S = 120.0
"""Bound on a replica's start (loading the model) and on nginx's."""
REPLY_TOKENS = 12
CONVERSATIONS = 12


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_listening(port: int, proc: subprocess.Popen, what: str) -> None:
    end = time.monotonic() + START_S
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{what} did not listen on port {port} within {START_S} s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


def documented_config() -> str:
    blocks = re.findall(r"```nginx\n(.*?)\n```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1, "docs/scale-out.md has one nginx configuration"
    return blocks[0]


def test_documented_config_routes_through_both_documented_replica_ports():
    config = documented_config()
    assert "server 127.0.0.1:8081;" in config and "server 127.0.0.1:8082;" in config
    assert "listen 127.0.0.1:8080;" in config
    assert "hash $mullama_route consistent;" in config


@pytest.fixture(scope="module")
def balancer(tiny_model_path: Path, tmp_path_factory) -> Iterator[str]:
    # Debian puts it in /usr/sbin, which a non-root PATH may lack.
    nginx = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if nginx is None:
        missing("nginx is not installed (apt-get install nginx-light)")
    folder = tmp_path_factory.mktemp("scale_out")
    front, ports = free_port(), [free_port(), free_port()]
    config = (
        documented_config()
        .replace("127.0.0.1:8080", f"127.0.0.1:{front}")
        .replace("127.0.0.1:8081", f"127.0.0.1:{ports[0]}")
        .replace("127.0.0.1:8082", f"127.0.0.1:{ports[1]}")
    )
    # Test-only settings: files under the test's folder, in the foreground, as a child.
    paths = "\n".join(
        f"    {name}_temp_path {folder / name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    config = config.replace("http {\n", f"http {{\n    access_log off;\n{paths}\n", 1)
    head = f"daemon off;\npid {folder / 'nginx.pid'};\nerror_log {folder / 'error.log'} warn;\n"
    if os.geteuid() == 0:
        head += "user root;\n"  # workers must reach the test's private temp folder
    (folder / "nginx.conf").write_text(head + config, encoding="utf-8")

    procs: list[subprocess.Popen] = []
    try:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for port in ports:
            cmd = [sys.executable, "-m", "mullama", "serve", "--model", str(tiny_model_path)]
            cmd += ["--port", str(port), "--ctx-size", "2048", "--log-level", "warning"]
            procs.append(subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL))
        check = subprocess.run(
            [nginx, "-t", "-p", str(folder), "-c", str(folder / "nginx.conf")],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert check.returncode == 0, f"nginx rejects the documented config:\n{check.stderr}"
        procs.append(
            subprocess.Popen(
                [nginx, "-p", str(folder), "-c", str(folder / "nginx.conf")],
                stdin=subprocess.DEVNULL,
            )
        )
        for port, proc, what in zip(
            [*ports, front], procs, ["replica 1", "replica 2", "nginx"], strict=True
        ):
            wait_until_listening(port, proc, what)
        yield f"http://127.0.0.1:{front}"
    finally:
        for proc in reversed(procs):
            stop(proc)


def chat_turn(url: str, messages: list[dict[str, str]]) -> tuple[str, str, dict, int]:
    """Streams one chat turn; returns (reply text, replica, usage, SSE chunks with text)."""
    body = {
        "model": "tiny",
        "messages": messages,
        "max_tokens": REPLY_TOKENS,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    text, usage, chunks = [], None, 0
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=60) as response:
        assert response.status_code == 200, response.read()
        replica = response.headers["x-mullama-replica"]
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                usage = event["usage"]
            for choice in event.get("choices", []):
                piece = choice.get("delta", {}).get("content")
                if piece:
                    text.append(piece)
                    chunks += 1
    assert usage is not None, "the stream ends with its usage"
    return "".join(text), replica, usage, chunks


def test_a_conversations_turns_reach_the_replica_that_holds_its_cache(balancer):
    seen_replicas: set[str] = set()
    for n in range(CONVERSATIONS):
        messages = [{"role": "user", "content": f"Conversation {n}: tell me about number {n}."}]
        reply, first_replica, first_usage, chunks = chat_turn(balancer, messages)
        assert chunks > 1, "tokens pass through nginx as they are made, not in one piece"
        messages += [
            {"role": "assistant", "content": reply},
            {"role": "user", "content": "And the next one?"},
        ]
        _, second_replica, second_usage, _ = chat_turn(balancer, messages)
        assert second_replica == first_replica, f"conversation {n} moved between replicas"
        cached = second_usage["prompt_tokens_details"]["cached_tokens"]
        assert cached >= first_usage["prompt_tokens"], (
            f"conversation {n}'s second turn reused {cached} tokens of its first turn's "
            f"{first_usage['prompt_tokens']}-token prompt"
        )
        seen_replicas.add(first_replica)
    assert len(seen_replicas) == 2, f"{CONVERSATIONS} conversations all went to {seen_replicas}"


def test_a_client_conversation_id_routes_instead_of_the_first_message(balancer):
    replicas = set()
    for n in range(6):
        body = {
            "model": "tiny",
            "messages": [{"role": "user", "content": f"Different opening {n}"}],
            "max_tokens": 2,
            "temperature": 0,
        }
        response = httpx.post(
            balancer + "/v1/chat/completions",
            json=body,
            headers={"X-Conversation-Id": "session-42"},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        replicas.add(response.headers["x-mullama-replica"])
    assert len(replicas) == 1, f"one session id, one replica: got {replicas}"
