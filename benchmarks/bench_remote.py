"""Remote stream throughput: `RemoteModel.generate_stream` (h11 on a socket -> SSE parsing ->
the core's text path: stop scanning, bounded channel) against the chat-app adapter's way
(httpx `iter_lines` -> json.loads -> a naive stop search in Python), on the same server.

    python benchmarks/bench_remote.py [--deltas N] [--repeats R]

The server is mullama.testing's ScriptedServer (plain chunking) on 127.0.0.1, streaming N
OpenAI chat deltas; both clients must release exactly the same text. The server shares the
machine, so the ratio is what to read, not the absolute rate.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import httpx

from mullama import Model, StreamConfig
from mullama.testing.scripted_server import ScriptedServer

STOPS = ["<|im_end|>", "</s>", "\n\nUser:", "###", "[INST]", "<end_of_turn>", "END_OF_ANSWER"]
WORDS = ["the ", "quick ", "brown ", "fox ", "jumps ", "over ", "a ", "lazy ", "dog. ", "\n"]
HI = [{"role": "user", "content": "Hi"}]


def mullama_client(url: str, n: int) -> str:
    remote = Model.connect(url + "/v1", model="scripted")
    config = StreamConfig(stop_sequences=STOPS, max_tokens=n + 10, timeout_ms=0)
    return "".join(token.text for token in remote.generate_stream(messages=HI, config=config))


def adapter_client(url: str, n: int) -> str:
    """What the chat-app write-up does, plus the stop withholding it lacked."""
    body = {"model": "scripted", "messages": HI, "stream": True, "max_tokens": n + 10}
    longest = max(len(s) for s in STOPS)
    out: list[str] = []
    held = ""
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=60) as response:
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                break
            choice = json.loads(data)["choices"]
            if not choice:
                continue
            held += choice[0].get("delta", {}).get("content") or ""
            cut = min((held.find(s) for s in STOPS if s in held), default=-1)
            if cut >= 0:
                out.append(held[:cut])
                return "".join(out)
            # Release all but a tail that could still start a stop.
            keep = 0
            for size in range(1, min(longest, len(held)) + 1):
                if any(s.startswith(held[-size:]) for s in STOPS):
                    keep = size
            out.append(held[: len(held) - keep])
            held = held[len(held) - keep :]
    out.append(held)
    return "".join(out)


def best_rate(client, url: str, n: int, repeats: int) -> tuple[float, str]:
    best = 0.0
    text = ""
    for _ in range(repeats):
        started = time.perf_counter()
        text = client(url, n)
        best = max(best, n / (time.perf_counter() - started))
    return best, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deltas", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    deltas = [WORDS[i % len(WORDS)] for i in range(args.deltas)]
    with ScriptedServer(deltas, awkward=False, usage=None) as server:
        ours, our_text = best_rate(mullama_client, server.url, args.deltas, args.repeats)
        theirs, their_text = best_rate(adapter_client, server.url, args.deltas, args.repeats)
    if our_text != their_text or our_text != "".join(deltas):
        raise SystemExit("the two clients released different text")
    load = os.getloadavg()[0]
    print(
        f"remote stream throughput: {args.deltas:,} deltas, {len(STOPS)} stops, best of "
        f"{args.repeats}, {os.cpu_count()} CPUs, load average {load:.1f}"
    )
    print(f"{'client':<28}{'deltas/s':>12}")
    print(f"{'mullama RemoteModel':<28}{ours:>12,.0f}")
    print(f"{'httpx iter_lines + Python':<28}{theirs:>12,.0f}")
    print(f"ratio {ours / theirs:.2f}x (the server, on the same machine, bounds both)")


if __name__ == "__main__":
    main()
