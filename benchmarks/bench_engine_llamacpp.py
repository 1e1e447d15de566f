"""The llama.cpp engine's raw decode loop vs llama-cpp-python's own `Llama` on the same GGUF.

    python benchmarks/bench_engine_llamacpp.py [--rounds N] [--max-tokens N] [--threads N]
                                               [--batches 1,2,4,8] [--busy] [--model PATH]

Greedy decoding of one chat prompt (ids from mullama's Rust tokenizer, given as ids to both),
the contenders alternating round by round, medians over the rounds:

- `engine bN`: N sequences with the same prompt advanced together by `LlamaCppEngine.step`
  (prefill one by one, then one llama_decode per step for all N); decode tok/s is the
  aggregate over the N sequences;
- `Llama`: `Llama.create_completion(prompt=ids, stream=True, temperature=0)`, reset before
  each round so neither side reuses a cached prompt.

`--busy` runs one `while True: pass` process beside the benchmark (a second tenant on the box).
Also printed: the per-token cost of the engine's numpy log-softmax over the vocabulary.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mullama._core import Tokenizer
from mullama.engines.base import SamplerSettings, StepRequest
from mullama.engines.llamacpp import LlamaCppEngine
from mullama.loader.default_model import default_model_path

PROMPT = (
    "<|im_start|>user\nWrite a short story about a robot who learns to paint.<|im_end|>\n"
    "<|im_start|>assistant\n"
)
GREEDY = SamplerSettings(temperature=0.0, repeat_penalty=1.0)


@dataclass
class Run:
    n_tokens: int
    ttft_s: float
    total_s: float
    text: str

    @property
    def decode_tps(self) -> float:
        return (self.n_tokens - 1) / (self.total_s - self.ttft_s)


def engine_run(
    engine: LlamaCppEngine, tok: Tokenizer, prompt: list[int], n: int, batch: int
) -> Run:
    """`batch` fresh sequences, each generating `n` tokens; the text is sequence 0's."""
    t0 = time.perf_counter()
    seqs = [engine.new_sequence(len(prompt) + n + 1) for _ in range(batch)]
    try:
        for seq in seqs:
            todo = seq.reuse_prefix(prompt)
            engine.prefill(seq, todo[:-1])
            seq.configure(GREEDY, history=prompt)
        pending = engine.step([StepRequest(s, prompt[-1:]) for s in seqs])
        outs = pending.result()
        ttft = time.perf_counter() - t0
        got = [outs[0].token]
        for _ in range(n - 1):
            outs = engine.step([StepRequest(s) for s in seqs]).result()
            got.append(outs[0].token)
        total = time.perf_counter() - t0
    finally:
        for seq in seqs:
            seq.close()
    return Run(batch * n, ttft, total, tok.decode(got))


def llama_run(llm, prompt: list[int], n: int) -> Run:
    llm.reset()
    t0 = time.perf_counter()
    ttft = None
    pieces: list[str] = []
    stream = llm.create_completion(
        prompt=prompt, max_tokens=n, temperature=0.0, repeat_penalty=1.0, stream=True
    )
    for chunk in stream:
        if ttft is None:
            ttft = time.perf_counter() - t0
        pieces.append(chunk["choices"][0]["text"])
    total = time.perf_counter() - t0
    # One chunk per token for this English prompt (no multi-byte characters held back).
    return Run(len(pieces), ttft or total, total, "".join(pieces))


def log_softmax_cost_us(n_vocab: int, repeats: int = 2000) -> float:
    """The engine's per-token log-softmax (max, exp, sum, log over the vocab) in numpy."""
    x = np.random.default_rng(0).standard_normal(n_vocab).astype(np.float32)
    t0 = time.perf_counter()
    for _ in range(repeats):
        m = float(x.max())
        float(x[7]) - (m + float(np.log(np.exp(x - m).sum())))
    return 1e6 * (time.perf_counter() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None, help="default: the engine's default")
    ap.add_argument("--batches", default="1,2,4,8")
    ap.add_argument("--busy", action="store_true", help="one busy-loop process beside")
    args = ap.parse_args()

    from llama_cpp import Llama, __version__

    path = str(args.model or default_model_path())
    batches = [int(b) for b in args.batches.split(",")]
    tok = Tokenizer.from_gguf(path)
    prompt = tok.encode(PROMPT, special=True, add_bos=False)
    n = args.max_tokens
    thread_kw = {} if args.threads is None else {"n_threads": args.threads}
    engine = LlamaCppEngine(path, n_ctx=1024, max_sequences=max(batches), **thread_kw)
    threads = args.threads or engine.n_threads
    llm = Llama(
        model_path=path,
        n_ctx=4096,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )
    busy = None
    if args.busy:
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    contenders: dict[str, Callable[[], Run]] = {"Llama": lambda: llama_run(llm, prompt, n)}
    for b in batches:
        contenders[f"engine b{b}"] = lambda b=b: engine_run(engine, tok, prompt, n, b)
    runs: dict[str, list[Run]] = {name: [] for name in contenders}
    try:
        for fn in contenders.values():  # warm-up, untimed
            fn()
        for _ in range(args.rounds):
            for name, fn in contenders.items():
                runs[name].append(fn())
        load = os.getloadavg()
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()

    base_tps = statistics.median(r.decode_tps for r in runs["Llama"])
    base_ttft = statistics.median(r.ttft_s for r in runs["Llama"])
    print(
        f"llama-cpp-python {__version__}; {os.path.basename(path)}; prompt {len(prompt)} "
        f"tokens, {n} generated, greedy; n_threads={threads}; busy process: {args.busy}; "
        f"median of {args.rounds} alternating rounds"
    )
    print(f"load average after the rounds: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if "engine b1" in runs:
        same = runs["engine b1"][0].text == runs["Llama"][0].text
        # Llama decodes the prompt in one batch, the engine's loop the last prompt token
        # alone (the producer's path); llama.cpp's logits move with batching, so near ties
        # can part (fed alike they are equal: tests/test_engine_llamacpp.py).
        print(f"engine b1 and Llama greedy text identical: {same}")
    header = f"{'contender':<12} {'TTFT ms':>9} {'decode tok/s':>13} {'decode x':>9} {'TTFT x':>7}"
    print(header)
    print("-" * len(header))
    for name, rs in runs.items():
        tps = statistics.median(r.decode_tps for r in rs)
        ttft = statistics.median(r.ttft_s for r in rs)
        print(
            f"{name:<12} {1000 * ttft:>9.1f} {tps:>13.1f} {tps / base_tps:>9.2f} "
            f"{ttft / base_ttft:>7.2f}"
        )
    cost = log_softmax_cost_us(engine.n_vocab)
    print(f"numpy log-softmax over {engine.n_vocab} logits: {cost:.1f} us/token")
    engine.close()
    llm.close()


if __name__ == "__main__":
    main()
