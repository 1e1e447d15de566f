"""Async stream throughput: AsyncTokenStream vs a naive thread hop per token.

A Rust producer thread (mullama.testing.stream_from_pieces) pushes tokens through the real
core (detokenization, channel); the consumer is an `async for` under asyncio or trio.
Measured side by side in one run:

- mullama's AsyncTokenStream (try_next + wake-up socket),
- the naive wrapper `await anyio.to_thread.run_sync(next, iterator)` per token,
- for reference, the plain sync iterator.

Reported: tokens/s (wall clock, median of --repeat runs), the event loop thread's CPU time
per token (what the loop spends on each token: the rest of the app gets everything else),
the ratio to the naive wrapper, and a 5 ms heartbeat task's worst lateness while the
AsyncTokenStream runs. With --model (a path, or "default"), also the heartbeat lateness while
a real model generates.

Run: python benchmarks/bench_async.py [--tokens 200000] [--repeat 3] [--model default]
(build the extension with `maturin develop --release` first).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import anyio.to_thread

from mullama import StreamConfig
from mullama.testing import astream_from_pieces, stream_from_pieces

BACKENDS = ("asyncio", "trio")
HEARTBEAT_PERIOD_S = 0.005


@dataclass
class Run:
    tokens: int
    wall_s: float
    loop_cpu_s: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s

    @property
    def loop_us_per_token(self) -> float:
        return self.loop_cpu_s / self.tokens * 1e6


def pieces(n: int) -> list[bytes]:
    return [f"tok{i % 1000} ".encode() for i in range(n)]


def config(n: int) -> StreamConfig:
    return StreamConfig(max_tokens=n, timeout_ms=0)


async def consume_async_stream(n: int) -> int:
    count = 0
    async for _ in astream_from_pieces(pieces(n), config(n)):
        count += 1
    return count


async def consume_naive(n: int) -> int:
    iterator = iter(stream_from_pieces(pieces(n), config(n)))
    done = object()
    count = 0
    while await anyio.to_thread.run_sync(next, iterator, done) is not done:
        count += 1
    return count


def measure(backend: str, consume: Callable[[int], Awaitable[int]], n: int) -> Run:
    async def main() -> Run:
        wall, cpu = time.perf_counter(), time.thread_time()
        count = await consume(n)
        return Run(count, time.perf_counter() - wall, time.thread_time() - cpu)

    return anyio.run(main, backend=backend)


def measure_sync(n: int) -> Run:
    wall, cpu = time.perf_counter(), time.thread_time()
    count = sum(1 for _ in stream_from_pieces(pieces(n), config(n)))
    return Run(count, time.perf_counter() - wall, time.thread_time() - cpu)


def median_run(runs: list[Run]) -> Run:
    return sorted(runs, key=lambda r: r.tokens_per_s)[len(runs) // 2]


async def heartbeat_while(consume: Callable[[], Awaitable[object]]) -> list[float]:
    """Lateness of each tick of a 5 ms heartbeat task while `consume()` runs."""
    lateness: list[float] = []
    done = anyio.Event()

    async def heartbeat() -> None:
        while not done.is_set():
            due = anyio.current_time() + HEARTBEAT_PERIOD_S
            await anyio.sleep_until(due)
            lateness.append(anyio.current_time() - due)

    async with anyio.create_task_group() as tg:
        tg.start_soon(heartbeat)
        await consume()
        done.set()
    return lateness


def lateness_summary(lateness: list[float]) -> str:
    ordered = sorted(lateness)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"max {ordered[-1] * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms over {len(ordered)} ticks"


def model_heartbeat(backend: str, model_path: str | None, max_tokens: int) -> str:
    from mullama import AsyncModel

    async def main() -> str:
        model = await AsyncModel.load(model_path)
        stream = model.generate_stream(
            "Write a long story about a lighthouse keeper.",
            max_tokens=max_tokens,
            temperature=0.0,
        )
        count = 0

        async def consume() -> None:
            nonlocal count
            async for _ in stream:
                count += 1

        started = time.perf_counter()
        lateness = await heartbeat_while(consume)
        rate = count / (time.perf_counter() - started)
        return f"{lateness_summary(lateness)}; {count} tokens at {rate:.1f} tok/s"

    return anyio.run(main, backend=backend)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=200_000)
    parser.add_argument("--naive-tokens", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model", help='a model path, or "default" for the built-in model')
    parser.add_argument("--model-tokens", type=int, default=100)
    args = parser.parse_args()

    rows: list[tuple[str, str, Run, Run | None]] = []
    sync = median_run([measure_sync(args.tokens) for _ in range(args.repeat)])
    for backend in BACKENDS:
        naive = median_run(
            [measure(backend, consume_naive, args.naive_tokens) for _ in range(args.repeat)]
        )
        fast = median_run(
            [measure(backend, consume_async_stream, args.tokens) for _ in range(args.repeat)]
        )
        rows.append((backend, "AsyncTokenStream", fast, naive))
        rows.append((backend, "naive to_thread(next) per token", naive, None))

    print(f"\nsynthetic producer, {args.tokens} tokens ({args.naive_tokens} for the naive path),")
    print(f"median of {args.repeat} runs\n")
    print("| backend  | path                             |   tokens/s | loop us/token | vs naive |")
    print("|----------|----------------------------------|-----------:|--------------:|---------:|")
    for backend, path, run, naive in rows:
        ratio = f"{run.tokens_per_s / naive.tokens_per_s:.1f}x" if naive else "1.0x"
        print(
            f"| {backend:<8} | {path:<32} | {run.tokens_per_s:>10,.0f} | "
            f"{run.loop_us_per_token:>13.2f} | {ratio:>8} |"
        )
    print(
        f"| {'(sync)':<8} | {'for token in TokenStream':<32} | {sync.tokens_per_s:>10,.0f} | "
        f"{sync.loop_us_per_token:>13.2f} | {'':>8} |"
    )

    print("\nheartbeat (5 ms period) lateness while an AsyncTokenStream runs:")
    for backend in BACKENDS:
        for delay_s, n in ((0.0, args.tokens), (0.001, 500)):

            async def run(delay_s: float = delay_s, n: int = n) -> list[float]:
                async def consume() -> None:
                    async for _ in astream_from_pieces(pieces(n), config(n), delay_s):
                        pass

                return await heartbeat_while(consume)

            lateness = anyio.run(run, backend=backend)
            label = "flat out" if delay_s == 0 else f"1 token per {delay_s * 1e3:.0f} ms"
            print(f"  {backend:<8} synthetic, {label:<17}: {lateness_summary(lateness)}")
    if args.model:
        path = None if args.model == "default" else args.model
        for backend in BACKENDS:
            summary = model_heartbeat(backend, path, args.model_tokens)
            print(f"  {backend:<8} model generating: {summary}")


if __name__ == "__main__":
    main()
