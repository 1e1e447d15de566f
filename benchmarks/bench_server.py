"""Concurrent streaming clients against `mullama serve` (and llama-cpp-python's server on the
same GGUF, when it is installed): aggregate tokens/s, p50/p99 time to first token and p50/p99
gap between tokens, as a table; beside it the raw batched-decode ceiling of each engine
(the same `engine.step` the scheduler makes, no streams, no HTTP) at batch 1, 2, 4, 8, 16,
and the ratios issue 12 sets targets for (to the ceiling, to one client, to the peer).

    python benchmarks/bench_server.py [--clients 1,4,8,16] [--max-tokens 64]
        [--engines llama.cpp,mlx] [--ceiling-batches 1,2,4,8,16] [--no-peers]
        [--peer-python /path/to/venv/bin/python]   # one with llama-cpp-python[server]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

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


async def load(url: str, model: str, clients: int, max_tokens: int) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=600) as client:
        await one_client(client, url, model, "Hi", 4)  # warm-up
        started = time.perf_counter()
        traces = await asyncio.gather(
            *(
                one_client(client, url, model, PROMPTS[i % len(PROMPTS)], max_tokens)
                for i in range(clients)
            )
        )
        wall = time.perf_counter() - started
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
    }


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def run_server(
    name: str, command: list[str], port: int, model: str, clients: list[int], max_tokens: int
) -> list[tuple[str, dict[str, float]]]:
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        try:
            wait_healthy(url, proc)
        except RuntimeError as exc:
            last = (proc.stderr.read() if proc.stderr else "").strip().splitlines()[-1:]
            raise RuntimeError(f"{exc}: {' '.join(last)}") from exc
        return [(name, asyncio.run(load(url, model, n, max_tokens))) for n in clients]
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def default_gguf() -> Path:
    from mullama import ModelLoadError
    from mullama.loader.default_model import default_model_path

    try:
        return default_model_path()
    except ModelLoadError as exc:  # says how to install it
        raise SystemExit(str(exc)) from None


def decode_ceiling(gguf: Path, engine: str, batches: list[int], n_tokens: int) -> dict[int, float]:
    """Aggregate decode tok/s of `engine.step` over `batch` sequences (greedy, one chat prompt
    each, prefilled first), per batch size: what the scheduler could reach at best."""
    from mullama import Model
    from mullama.engines.base import SamplerSettings, StepRequest

    model = Model.load(gguf, engine=engine, n_ctx=1024, parallel=max(batches))
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


def int_list(text: str) -> list[int]:
    return sorted({int(part) for part in text.split(",") if part.strip()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int_list, default=[1, 4, 8, 16])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument(
        "--engines", default="llama.cpp", help="comma-separated: llama.cpp, mlx (MLX-CPU is slow)"
    )
    parser.add_argument("--ceiling-batches", type=int_list, default=[1, 2, 4, 8, 16])
    parser.add_argument("--no-peers", action="store_true", help="skip llama-cpp-python's server")
    parser.add_argument(
        "--peer-python",
        default=sys.executable,
        help="the Python whose llama_cpp.server runs as the peer (it needs the [server] extra)",
    )
    args = parser.parse_args()
    levels = args.clients
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    gguf = default_gguf()
    with open("/proc/loadavg") as f:
        load_before = f.read().split()[0]

    ceilings = {e: decode_ceiling(gguf, e, args.ceiling_batches, args.max_tokens) for e in engines}
    rows = []
    for engine in engines:
        port = free_port()
        mullama = [sys.executable, "-m", "mullama", "serve", "--port", str(port)]
        mullama += ["--log-level", "warning", "--engine", engine]
        mullama += ["--parallel", str(max(8, *levels))]
        name = f"mullama serve ({engine})"
        rows += run_server(name, mullama, port, "smollm2", levels, args.max_tokens)
    if not args.no_peers:
        port = free_port()
        llama = [args.peer_python, "-m", "llama_cpp.server", "--model", str(gguf)]
        llama += ["--port", str(port), "--n_ctx", "4096"]
        try:
            rows += run_server("llama-cpp-python", llama, port, str(gguf), levels, args.max_tokens)
        except (RuntimeError, TimeoutError) as exc:
            # e.g. not installed, or without its [server] extra (fastapi, sse-starlette, ...)
            print(f"(llama-cpp-python's server did not run: {exc})\n")
    with open("/proc/loadavg") as f:
        load_after = f.read().split()[0]

    print(
        f"{args.max_tokens} tokens per reply, SmolLM2-135M-Instruct Q4_1, streaming chat "
        f"completions; load average {load_before} before, {load_after} after\n"
    )
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
    for engine, ceiling in ceilings.items():
        print(f"\nraw batched decode ({engine} engine.step, greedy, no streams, no HTTP)\n")
        print("| batch | aggregate tok/s | vs batch 1 |")
        print("|---|---|---|")
        for batch, rate in ceiling.items():
            print(f"| {batch} | {rate:.1f} | {rate / ceiling[min(ceiling)]:.2f}x |")
    print("\nratios in this run (targets of issue 12 in brackets)\n")
    print(
        "| server | clients | aggregate / ceiling [>= 0.85] | aggregate / 1 client "
        "| aggregate / llama-cpp-python [>= 2] | TTFT p99 / 1 client [<= 3] "
        "| gap p99 / 1 client [<= 3] |"
    )
    print("|---|---|---|---|---|---|---|")
    by = {(n, r["clients"]): r for n, r in rows}
    for name, r in rows:
        if not name.startswith("mullama"):
            continue
        engine = name[name.index("(") + 1 : -1]
        ceiling = ceilings[engine]
        solo = by.get((name, 1))
        peer = by.get(("llama-cpp-python", r["clients"]))

        def ratio(a: float, b: float | None) -> str:
            return "-" if not b else f"{a / b:.2f}"

        print(
            f"| {name} | {r['clients']} | {ratio(r['tok_s'], ceiling.get(r['clients']))} "
            f"| {ratio(r['tok_s'], solo and solo['tok_s'])} "
            f"| {ratio(r['tok_s'], peer and peer['tok_s'])} "
            f"| {ratio(r['ttft_p99'], solo and solo['ttft_p50'])} "
            f"| {ratio(r['gap_p99'], solo and solo['gap_p99'])} |"
        )


if __name__ == "__main__":
    main()
