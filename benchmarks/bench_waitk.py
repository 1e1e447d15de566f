"""Wait-k on the default model: what each read costs with KV reuse (tokens fed per source word)
against re-prefilling the whole prompt at each read, and the Average Lagging, for several k.

Token counts do not depend on the machine's speed; the wall time column does (it includes
prefill of the first prompt and every decode step).

    python benchmarks/bench_waitk.py [--k 1 3 5] [--source-words 12] [--max-new-words 10]
                                     [--engine auto|mlx|llama.cpp]
"""

from __future__ import annotations

import argparse
import os
import time

from mullama import Context, Model

SOURCE = (
    "The old man walked slowly to the market to buy fresh bread and a small basket of "
    "ripe red apples for his grandchildren who were coming to visit him on Sunday"
).split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--source-words", type=int, default=12)
    parser.add_argument("--max-new-words", type=int, default=10)
    parser.add_argument("--engine", default="auto")
    args = parser.parse_args()
    source = " ".join(SOURCE[: args.source_words])
    model = Model.load(engine=args.engine)
    print(
        f"wait-k on {model.path.name}, {model.engine.describe()}: {args.source_words}-word "
        f"source, at most "
        f"{args.max_new_words} target words, greedy; load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'k':>3} {'words':>5} {'reads':>5} {'fed/word':>9} {'full/word':>9} {'ratio':>6} "
        f"{'first':>6} {'AL':>5} {'wall s':>7}"
    )
    for k in args.k:
        ctx = Context(model)
        started = time.perf_counter()
        stream = ctx.generate_stream_waitk(
            source,
            wait_k=k,
            max_new_words=args.max_new_words,
            max_tokens=8 * args.max_new_words,
            temperature=0.0,
            timeout_ms=0,
        )
        with stream:
            for _ in stream:
                pass
        wall = time.perf_counter() - started
        m = stream.metrics
        fed, full = m.tokens_recomputed_per_source_word, m.full_reprefill_per_source_word
        ratio = f"{full / fed:5.1f}x" if fed else "   n/a"
        al = "n/a" if m.average_lagging is None else f"{m.average_lagging:.2f}"
        print(
            f"{k:>3} {m.target_words:>5} {len(m.reads):>5} "
            f"{(fed or 0):>9.1f} {(full or 0):>9.1f} {ratio:>6} {m.first_prompt_tokens:>6} "
            f"{al:>5} {wall:>7.1f}"
        )


if __name__ == "__main__":
    main()
