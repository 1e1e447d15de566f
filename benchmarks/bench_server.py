"""Concurrent streaming clients against `mullama serve` on each engine (and llama-cpp-python's
server on the same GGUF, given a Python that has its [server] extra): aggregate tokens/s, the
steady decode rate while every client streams, p50/p99 time to first token and p50/p99 gap
between tokens, as a table; beside it the raw batched-decode ceiling of each engine (the same
`engine.step` the scheduler makes, no streams, no HTTP) and the ratios issue 12 sets targets
for. With --plot DIR also tok/s against clients and the time to first token distributions as
PNGs (matplotlib, the `bench` extra), plus the raw numbers as JSON.

    python benchmarks/bench_server.py [--clients 16] [--max-tokens 64] [--rounds 1]
        [--engines llama.cpp,mlx] [--threads 1] [--no-peers] [--plot DIR]
        [--peer-python /path/to/venv/bin/python]   # one with llama-cpp-python[server]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
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
    arrivals: list[float] = field(default_factory=list)
    """perf_counter() of each chunk with text."""


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
                trace.arrivals.append(now)
                if last is None:
                    trace.ttft = now - started
                else:
                    trace.gaps.append(now - last)
                last = now
    if not trace.tokens:
        # A server that sends no usage chunk (llama-cpp-python's): count the text chunks.
        trace.tokens = len(trace.arrivals)
    return trace


async def load(url: str, model: str, clients: int, max_tokens: int, rounds: int) -> dict:
    """`rounds` rounds of `clients` concurrent streams; tok/s over the rounds' wall time."""
    traces: list[ClientTrace] = []
    wall = 0.0
    steady: list[float] = []
    async with httpx.AsyncClient(timeout=600) as client:
        await one_client(client, url, model, "Hi", 4)  # warm-up
        for _ in range(rounds):
            started = time.perf_counter()
            round_traces = await asyncio.gather(
                *(
                    one_client(client, url, model, PROMPTS[i % len(PROMPTS)], max_tokens)
                    for i in range(clients)
                )
            )
            wall += time.perf_counter() - started
            traces += round_traces
            steady.append(steady_rate(round_traces))
    ttfts = [t.ttft for t in traces if t.ttft is not None]
    gaps = [g for t in traces for g in t.gaps]
    total = sum(t.tokens for t in traces)
    return {
        "clients": clients,
        "tokens": total,
        "wall_s": wall,
        "tok_s": total / wall,
        "steady_tok_s": sum(steady) / len(steady),
        "ttft_p50": pct(ttfts, 50),
        "ttft_p99": pct(ttfts, 99),
        "gap_p50": pct(gaps, 50),
        "gap_p99": pct(gaps, 99),
        "served": sum(1 for t in traces if t.tokens > 0),
        "ttfts": ttfts,
    }


def steady_rate(traces: list[ClientTrace]) -> float:
    """Chunks per second while every client streams (from the last first token to the first
    last token): the batched decode rate, comparable to the raw ceiling, without the prompts."""
    arrivals = [t.arrivals for t in traces if t.arrivals]
    if len(arrivals) != len(traces):
        return float("nan")
    start, end = max(a[0] for a in arrivals), min(a[-1] for a in arrivals)
    if end <= start:
        return float("nan")
    inside = sum(1 for a in arrivals for at in a if start < at <= end)
    return inside / (end - start)


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
    # A file, not a pipe: a server that logs much (llama.cpp's loader) would block on a full pipe.
    log = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, text=True)
    try:
        try:
            wait_healthy(url, proc)
        except (RuntimeError, TimeoutError) as exc:
            log.seek(0)
            last = log.read().strip().splitlines()[-1:]
            raise RuntimeError(f"{exc}: {' '.join(last)}") from exc
        return [(name, asyncio.run(load(url, model, n, max_tokens, rounds))) for n in clients]
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def default_gguf() -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
    from mullama import ModelLoadError
    from mullama.loader.default_model import default_model_path

    try:
        return default_model_path()
    except ModelLoadError as exc:  # says how to install it
        raise SystemExit(str(exc)) from None


def decode_ceiling(
    gguf: Path, engine: str, batches: list[int], n_tokens: int, threads: int
) -> dict[int, float]:
    """Aggregate decode tok/s of `engine.step` over `batch` sequences (greedy, one chat prompt
    each, prefilled first), per batch size: what the scheduler could reach at best."""
    from mullama import Model
    from mullama.engines.base import SamplerSettings, StepRequest

    options = {"n_threads": threads} if engine == "llama.cpp" else {}
    model = Model.load(gguf, engine=engine, n_ctx=1024, parallel=max(batches), **options)
    runner = model.engine
    prompt = model.chat_ids([{"role": "user", "content": PROMPTS[0]}])
    greedy = SamplerSettings(temperature=0.0)
    rates = {}
    try:
        for batch in batches:
            seqs = [runner.new_sequence(1024) for _ in range(batch)]
            for seq in seqs:
                runner.prefill(seq, prompt[:-1])
                seq.configure(greedy, prompt[:-1])
            runner.step([StepRequest(seq, prompt[-1:]) for seq in seqs]).result()
            started = time.perf_counter()
            for _ in range(n_tokens - 1):
                runner.step([StepRequest(seq) for seq in seqs]).result()
            rates[batch] = batch * (n_tokens - 1) / (time.perf_counter() - started)
            for seq in seqs:
                seq.close()
    finally:
        model.close()
    return rates


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
    parser.add_argument("--clients", type=int, default=16, help="the most concurrent clients")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument(
        "--rounds", type=int, default=1, help="rounds per client count (more TTFT samples)"
    )
    parser.add_argument(
        "--engines", default="llama.cpp", help="comma-separated: llama.cpp, mlx (MLX-CPU is slow)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="llama.cpp threads, for mullama and the peer"
    )
    parser.add_argument("--no-peers", action="store_true", help="skip llama-cpp-python's server")
    parser.add_argument(
        "--peer-python",
        default=sys.executable,
        help="the Python whose llama_cpp.server runs as the peer (it needs the [server] extra)",
    )
    parser.add_argument(
        "--plot", type=Path, metavar="DIR", help="write PNG plots and the numbers (JSON) here"
    )
    args = parser.parse_args()
    if min(args.clients, args.rounds, args.max_tokens, args.threads) < 1:
        parser.error("--clients, --rounds, --max-tokens and --threads must be at least 1")
    levels = client_levels(args.clients)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    gguf = default_gguf()
    load_before = os.getloadavg()[0]

    ceilings = {e: decode_ceiling(gguf, e, levels, args.max_tokens, args.threads) for e in engines}
    rows = []
    for engine in engines:
        port = free_port()
        mullama = [sys.executable, "-m", "mullama", "serve", "--port", str(port)]
        mullama += ["--log-level", "warning", "--engine", engine]
        mullama += ["--parallel", str(max(8, args.clients))]
        if engine == "llama.cpp":
            mullama += ["--threads", str(args.threads)]
        name = f"mullama serve ({engine})"
        rows += run_server(name, mullama, port, "smollm2", levels, args.max_tokens, args.rounds)
    if not args.no_peers:
        port = free_port()
        llama = [args.peer_python, "-m", "llama_cpp.server", "--model", str(gguf)]
        llama += ["--port", str(port), "--n_ctx", "4096", "--n_threads", str(args.threads)]
        try:
            rows += run_server(
                "llama-cpp-python", llama, port, str(gguf), levels, args.max_tokens, args.rounds
            )
        except (RuntimeError, TimeoutError) as exc:
            # e.g. not installed, or without its [server] extra (fastapi, sse-starlette, ...)
            print(f"(llama-cpp-python's server did not run: {exc})\n")

    caption = (
        f"{args.max_tokens} tokens per reply, SmolLM2-135M-Instruct Q4_1, streaming chat "
        f"completions, {args.rounds} round(s) per client count, {args.threads} llama.cpp "
        f"thread(s), {os.cpu_count()} CPUs, load average {load_before:.1f} before and "
        f"{os.getloadavg()[0]:.1f} at the end"
    )
    print(caption + "\n")
    print(
        "| server | clients | served | tokens | wall s | aggregate tok/s | steady tok/s "
        "| TTFT p50 ms | TTFT p99 ms | gap p50 ms | gap p99 ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        print(
            f"| {name} | {r['clients']} | {r['served']} | {r['tokens']} | {r['wall_s']:.2f} "
            f"| {r['tok_s']:.1f} | {r['steady_tok_s']:.1f} | {r['ttft_p50'] * 1e3:.0f} "
            f"| {r['ttft_p99'] * 1e3:.0f} | {r['gap_p50'] * 1e3:.1f} | {r['gap_p99'] * 1e3:.1f} |"
        )
    for engine, ceiling in ceilings.items():
        print(f"\nraw batched decode ({engine} engine.step, greedy, no streams, no HTTP)\n")
        print("| batch | aggregate tok/s | vs batch 1 |")
        print("|---|---|---|")
        for batch, rate in ceiling.items():
            print(f"| {batch} | {rate:.1f} | {rate / ceiling[min(ceiling)]:.2f}x |")
    print("\nratios in this run (issue 12's targets in brackets; steady: all clients streaming)\n")
    print(
        "| server | clients | steady / ceiling [>= 0.85] | aggregate / ceiling "
        "| aggregate / 1 client | aggregate / llama-cpp-python [>= 2] "
        "| TTFT p99 / 1 client [<= 3] | gap p99 / 1 client [<= 3] |"
    )
    print("|---|---|---|---|---|---|---|---|")
    by = {(n, r["clients"]): r for n, r in rows}

    def ratio(a: float, b: float | None) -> str:
        return "-" if not b else f"{a / b:.2f}"

    for name, r in rows:
        if not name.startswith("mullama"):
            continue
        ceiling = ceilings[name[name.index("(") + 1 : -1]].get(r["clients"])
        solo = by.get((name, 1))
        peer = by.get(("llama-cpp-python", r["clients"]))
        print(
            f"| {name} | {r['clients']} | {ratio(r['steady_tok_s'], ceiling)} "
            f"| {ratio(r['tok_s'], ceiling)} | {ratio(r['tok_s'], solo and solo['tok_s'])} "
            f"| {ratio(r['tok_s'], peer and peer['tok_s'])} "
            f"| {ratio(r['ttft_p99'], solo and solo['ttft_p50'])} "
            f"| {ratio(r['gap_p99'], solo and solo['gap_p99'])} |"
        )
    if args.plot is not None:
        for path in plot(rows, args.plot, caption):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
