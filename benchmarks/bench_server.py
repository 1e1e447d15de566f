"""Concurrent streaming clients against `mullama serve` (and llama-cpp-python's server on the
same GGUF, when it is installed): aggregate tokens/s, p50/p99 time to first token and p50/p99
gap between tokens, as a table; with --plot DIR also tok/s against clients and the time to first
token distributions as PNGs (matplotlib, the `bench` extra), plus the raw numbers as JSON.

    python benchmarks/bench_server.py [--clients 8] [--max-tokens 32] [--rounds 1] [--plot DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

PROMPTS = [
    "Write a short story about a lighthouse keeper.",
    "Explain how a bicycle works.",
    "Describe the water cycle.",
    "List some tips for learning a new language.",
    "What makes a good breakfast?",
    "Tell me about the history of tea.",
    "How do airplanes stay in the air?",
    "Describe a walk through a forest in autumn.",
]


@dataclass
class ClientTrace:
    ttft: float | None = None
    gaps: list[float] = field(default_factory=list)
    tokens: int = 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/v1/models", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError("server did not start")


async def one_client(
    client: httpx.AsyncClient, url: str, model: str, prompt: str, max_tokens: int
) -> ClientTrace:
    trace = ClientTrace()
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "seed": 1,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    last = None
    async with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                trace.tokens = chunk["usage"]["completion_tokens"]
            if not chunk.get("choices"):
                continue
            if chunk["choices"][0].get("delta", {}).get("content"):
                now = time.perf_counter()
                if last is None:
                    trace.ttft = now - started
                else:
                    trace.gaps.append(now - last)
                last = now
    return trace


async def load(url: str, model: str, clients: int, max_tokens: int, rounds: int) -> dict:
    """`rounds` rounds of `clients` concurrent streams; tok/s over the rounds' wall time."""
    traces: list[ClientTrace] = []
    wall = 0.0
    async with httpx.AsyncClient(timeout=600) as client:
        await one_client(client, url, model, "Hi", 4)  # warm-up
        for _ in range(rounds):
            started = time.perf_counter()
            traces += await asyncio.gather(
                *(
                    one_client(client, url, model, PROMPTS[i % len(PROMPTS)], max_tokens)
                    for i in range(clients)
                )
            )
            wall += time.perf_counter() - started
    ttfts = [t.ttft for t in traces if t.ttft is not None]
    gaps = [g for t in traces for g in t.gaps]
    total = sum(t.tokens for t in traces)
    return {
        "clients": clients,
        "tokens": total,
        "wall_s": wall,
        "tok_s": total / wall,
        "ttft_p50": pct(ttfts, 50),
        "ttft_p99": pct(ttfts, 99),
        "gap_p50": pct(gaps, 50),
        "gap_p99": pct(gaps, 99),
        "served": sum(1 for t in traces if t.tokens > 0),
        "ttfts": ttfts,
    }


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def run_server(
    name: str,
    command: list[str],
    port: int,
    model: str,
    clients: list[int],
    max_tokens: int,
    rounds: int,
) -> list[tuple[str, dict]]:
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        try:
            wait_healthy(url, proc)
        except RuntimeError as exc:
            last = (proc.stderr.read() if proc.stderr else "").strip().splitlines()[-1:]
            raise RuntimeError(f"{exc}: {' '.join(last)}") from exc
        return [(name, asyncio.run(load(url, model, n, max_tokens, rounds))) for n in clients]
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def default_gguf() -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
    from mullama import ModelLoadError
    from mullama.loader.default_model import default_model_path

    try:
        return default_model_path()
    except ModelLoadError as exc:  # says how to install it
        raise SystemExit(str(exc)) from None


def client_levels(most: int) -> list[int]:
    """1, 2, 4, ... up to `most`, and `most` itself: the x axis of tok/s against clients."""
    levels = {most}
    n = 1
    while n < most:
        levels.add(n)
        n *= 2
    return sorted(levels)


def plot(rows: list[tuple[str, dict]], folder: Path, caption: str) -> list[Path]:
    """Writes tok/s against clients and the TTFT distributions (one box per client count and
    server) as PNGs under `folder`; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    footer = "\n".join(textwrap.wrap(caption, 120))
    servers = list(dict.fromkeys(name for name, _ in rows))
    written = []

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name in servers:
        points = [(r["clients"], r["tok_s"]) for n, r in rows if n == name]
        ax.plot(*zip(*points, strict=True), marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted({r["clients"] for _, r in rows}))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("concurrent streaming clients")
    ax.set_ylabel("aggregate tokens/s")
    ax.set_ylim(bottom=0)
    ax.set_title("Throughput against clients", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.text(0.01, 0.01, footer, fontsize=7, color="0.35")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    written.append(folder / "server_tok_s.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.2))
    boxes = [(f"{name}\n{r['clients']} clients", r["ttfts"]) for name, r in rows if r["ttfts"]]
    ax.boxplot(
        [[t * 1e3 for t in ttfts] for _, ttfts in boxes],
        tick_labels=[label for label, _ in boxes],
        showfliers=True,
    )
    ax.set_ylabel("time to first token, ms")
    ax.set_ylim(bottom=0)
    ax.set_title("Time to first token, every request", fontsize=11)
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.text(0.01, 0.01, footer, fontsize=7, color="0.35")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    written.append(folder / "server_ttft.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    results = [{"server": name, **r} for name, r in rows]
    (folder / "server_results.json").write_text(
        json.dumps({"caption": caption, "results": results}, indent=1) + "\n", encoding="utf-8"
    )
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8, help="the most concurrent clients")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument(
        "--rounds", type=int, default=1, help="rounds per client count (more TTFT samples)"
    )
    parser.add_argument(
        "--plot", type=Path, metavar="DIR", help="write PNG plots and the numbers (JSON) here"
    )
    args = parser.parse_args()
    if args.clients < 1 or args.rounds < 1 or args.max_tokens < 1:
        parser.error("--clients, --rounds and --max-tokens must be at least 1")
    levels = client_levels(args.clients)
    gguf = default_gguf()

    rows = []
    port = free_port()
    mullama = [
        sys.executable,
        "-m",
        "mullama.cli",
        "serve",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--max-concurrent",
        str(max(8, args.clients)),
    ]
    rows += run_server(
        "mullama serve", mullama, port, "smollm2", levels, args.max_tokens, args.rounds
    )
    if importlib.util.find_spec("llama_cpp") is not None:
        port = free_port()
        llama = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf),
            "--port",
            str(port),
            "--n_ctx",
            "4096",
        ]
        try:
            rows += run_server(
                "llama-cpp-python", llama, port, str(gguf), levels, args.max_tokens, args.rounds
            )
        except (RuntimeError, TimeoutError) as exc:
            # e.g. installed without its [server] extra (fastapi, sse-starlette, ...)
            print(f"(llama-cpp-python's server did not run: {exc})\n")
    else:
        print("(llama-cpp-python is not installed: its server is not measured)\n")

    caption = (
        f"{args.max_tokens} tokens per reply, SmolLM2-135M-Instruct Q4_1, streaming chat "
        f"completions, {args.rounds} round(s) per client count, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} at the end"
    )
    print(caption + "\n")
    print(
        "| server | clients | served | tokens | wall s | aggregate tok/s | TTFT p50 ms "
        "| TTFT p99 ms | gap p50 ms | gap p99 ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        print(
            f"| {name} | {r['clients']} | {r['served']} | {r['tokens']} | {r['wall_s']:.2f} "
            f"| {r['tok_s']:.1f} | {r['ttft_p50'] * 1e3:.0f} | {r['ttft_p99'] * 1e3:.0f} "
            f"| {r['gap_p50'] * 1e3:.1f} | {r['gap_p99'] * 1e3:.1f} |"
        )
    if args.plot is not None:
        for path in plot(rows, args.plot, caption):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
