"""mullama's engines against mlx-lm and llama-cpp-python on the default model (SmolLM2-135M Q4_1).

    python benchmarks/bench_engine.py [--quick] [--rounds N] [--pair-rounds N] [--processes N]
                                      [--max-tokens N]
                                      [--no-llama] [--no-profile] [--no-blas] [--engines-only]

Greedy decoding of one short chat prompt, the contenders alternating over several rounds
(medians reported), in one process:

0. the engines: mullama on llama.cpp vs llama-cpp-python's own
   `Llama.create_completion(stream=True)` on the same GGUF file, prompt ids, greedy settings and
   thread count (the core must add nothing measurable), in several fresh processes of
   alternating rounds, with the time between two forward passes (what each stack does per
   token outside llama.cpp) and the first token's wait outside its forward passes beside the
   rates; and mullama with `engine="auto"` vs
   `engine="mlx"` (what auto buys on this host);
1. mullama on MLX: `Context.generate_stream` vs mlx-lm's `stream_generate` (given an HF tokenizer
   built here from the GGUF metadata, with mlx-lm's BPE streaming detokenizer, which is what
   `mlx_lm.load` picks for this tokenizer), plus a fake instant model through both loops to
   show the per-token cost of each layer alone;
2. llama-cpp-python on the same GGUF file (skipped with a note when `llama_cpp` is not
   importable), and where MLX's time goes in one decode step and one prefill;
3. load time and memory (peak RSS) of the default model on each engine (fresh subprocesses);
4. prefill and decode with and without OpenBLAS preloaded, for keep_quantized True/False
   (fresh subprocesses).

Every timed figure also has its process CPU time next to it: this box has 2 cores shared
with builds, so wall times move with the load while CPU time mostly does not.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import mlx.core as mx

AUTO_RUNS_PER_ROUND = 5
NO_DEADLINE = 0  # timeout_ms=0: a slow, shared machine must not end a timed stream
OPENBLAS = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3"
MESSAGES = [{"role": "user", "content": "Write a short story about a robot who learns to paint."}]
# Plain English the fake model replays, so the detokenizer sees realistic tokens.
FAKE_TEXT = (
    "The quick brown fox jumps over the lazy dog. A robot named Pixel found an old brush "
    "in the attic and wondered what colours could do. Every morning it painted the sky, "
    "and every evening it tried again, a little better than before. "
)


# ---------------------------------------------------------------- timing helpers


@dataclass
class Run:
    """One generation: wall and CPU seconds, tokens, and when the first token arrived."""

    tokens: list[int]
    ttft_s: float
    total_s: float
    cpu_s: float
    text: str = ""

    @property
    def decode_tps(self) -> float:
        # Tokens after the first over the time after the first: the decode rate alone.
        n = len(self.tokens) - 1
        return n / (self.total_s - self.ttft_s) if n > 0 else float("nan")

    @property
    def cpu_ms_per_token(self) -> float:
        return 1000 * self.cpu_s / max(len(self.tokens), 1)


@dataclass
class Contender:
    name: str
    run: Callable[[], Run]
    runs: list[Run] = field(default_factory=list)

    def median(self, key: Callable[[Run], float]) -> float:
        return statistics.median(key(r) for r in self.runs)


def _drain(start: Callable[[], Iterator[Any]], token_of: Callable[[Any], int | None]) -> Run:
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    ttft = None
    tokens: list[int] = []
    for event in start():
        token = token_of(event)
        if token is None:
            continue
        if ttft is None:
            ttft = time.perf_counter() - t0
        tokens.append(token)
    total = time.perf_counter() - t0
    return Run(tokens, ttft if ttft is not None else total, total, time.process_time() - cpu0)


def median_time(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def rss_mib() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MiB. The peak is VmHWM, which starts afresh
    at exec; getrusage's ru_maxrss would carry over the parent's peak into a worker."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    print(f"\n{title}")
    line = "  ".join(
        h.ljust(w) if i == 0 else h.rjust(w)
        for i, (h, w) in enumerate(zip(header, widths, strict=True))
    )
    print(line)
    print("-" * len(line))
    for row in rows:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )


# ---------------------------------------------------------------- mlx-lm's tokenizer, offline


def hf_tokenizer_from_gguf(path: str) -> Any:
    """An HF fast tokenizer built from the GGUF's BPE vocab and merges, wrapped the way
    `mlx_lm.load` wraps SmolLM2's tokenizer.json (byte-level decoder -> BPE detokenizer).
    Only the detokenizer matters here: both contenders get the same prompt ids."""
    from mlx_lm.tokenizer_utils import BPEStreamingDetokenizer, TokenizerWrapper
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from mullama._core import gguf_metadata

    meta = gguf_metadata(path, full_arrays=True)
    tokens = list(meta["tokenizer.ggml.tokens"])
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    types = list(meta["tokenizer.ggml.token_type"])
    bpe = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    control = [tokens[i] for i, t in enumerate(types) if t == 3]  # llama.cpp CONTROL
    bpe.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])
    eos = tokens[int(meta["tokenizer.ggml.eos_token_id"])]
    hf = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=eos)
    return TokenizerWrapper(hf, BPEStreamingDetokenizer)


# ---------------------------------------------------------------- the fake instant model


class InstantModel:
    """Looks like an mlx-lm model with no layers: each call returns logits whose argmax is
    the next token of a fixed script, so a generation loop around it measures the loop."""

    def __init__(self, script: list[int], n_vocab: int) -> None:
        self.script = script
        self.position = 0
        self.layers: list[Any] = []
        self.iota = mx.arange(n_vocab)
        mx.eval(self.iota)

    def __call__(self, inputs: mx.array, cache: Any = None) -> mx.array:
        token = self.script[self.position % len(self.script)]
        self.position += 1
        row = mx.where(self.iota == token, 1.0, 0.0)
        return mx.broadcast_to(row, (1, inputs.shape[1], row.shape[0]))


# ---------------------------------------------------------------- contenders


def mullama_runner(model: Any, prompt: list[int], max_tokens: int) -> Callable[[], Run]:
    from mullama import Context, StreamConfig

    config = StreamConfig(max_tokens=max_tokens, temperature=0.0, timeout_ms=NO_DEADLINE)

    def run() -> Run:
        ctx = Context(model)  # a fresh cache: no prefix reuse between rounds
        texts: list[str] = []

        def token_of(event: Any) -> int | None:
            texts.append(event.text)
            eog = event.finish_reason is not None and event.token in model.end_of_generation_ids
            return None if event.token is None or eog else event.token

        result = _drain(lambda: iter(ctx.generate_stream(prompt, config)), token_of)
        result.text = "".join(texts)
        return result

    return run


def mlx_lm_runner(
    mlx_model: Any, tokenizer: Any, prompt: list[int], max_tokens: int, eog: frozenset[int]
) -> Callable[[], Run]:
    from mlx_lm.generate import stream_generate
    from mlx_lm.sample_utils import make_sampler

    sampler = make_sampler(temp=0.0)
    tokenizer._eos_token_ids = set(eog)  # the same end-of-generation set as mullama

    def run() -> Run:
        texts: list[str] = []

        def token_of(response: Any) -> int | None:
            texts.append(response.text)
            if response.finish_reason == "stop":
                return None
            return response.token

        events = stream_generate(mlx_model, tokenizer, prompt, max_tokens, sampler=sampler)
        result = _drain(lambda: events, token_of)
        result.text = "".join(texts)
        return result

    return run


def llama_cpp_runner(
    llm: Any, prompt: list[int], max_tokens: int, eog: frozenset[int]
) -> Callable[[], Run]:
    def run() -> Run:
        llm.reset()  # no KV prefix reuse between rounds
        pieces: list[bytes] = []

        def events() -> Iterator[int]:
            for n, token in enumerate(llm.generate(prompt, temp=0.0, reset=True)):
                if token in eog:  # the same GGUF, so the same end-of-generation ids
                    return
                pieces.append(llm.detokenize([token]))
                yield token
                if n + 1 >= max_tokens:
                    return

        result = _drain(events, lambda t: t)
        result.text = b"".join(pieces).decode("utf-8", "replace")
        return result

    return run


def load_llama_cpp(path: str, n_ctx: int) -> tuple[Any, str]:
    try:
        import llama_cpp
    except ImportError:
        return None, (
            "llama-cpp-python is not installed: its column is skipped. Install it for this "
            'benchmark only: CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install llama-cpp-python'
        )
    llm = llama_cpp.Llama(
        model_path=path,
        n_ctx=n_ctx,
        n_threads=os.cpu_count(),
        n_threads_batch=os.cpu_count(),
        verbose=False,
    )
    return llm, f"llama-cpp-python {llama_cpp.__version__}, n_threads={os.cpu_count()}"


# ---------------------------------------------------------------- sections


def compare_generation(args: argparse.Namespace, model: Any, prompt: list[int]) -> dict:
    tokenizer = hf_tokenizer_from_gguf(str(model.path))
    eog = model.end_of_generation_ids
    contenders = [
        Contender("mullama generate_stream", mullama_runner(model, prompt, args.max_tokens)),
        Contender(
            "mlx-lm stream_generate",
            mlx_lm_runner(model.mlx_model, tokenizer, prompt, args.max_tokens, eog),
        ),
    ]
    llm, llama_note = (None, "llama-cpp-python skipped (--no-llama)")
    if not args.no_llama:
        llm, llama_note = load_llama_cpp(str(model.path), n_ctx=2048)
    if llm is not None:
        contenders.append(
            Contender("llama-cpp-python", llama_cpp_runner(llm, prompt, args.max_tokens, eog))
        )

    for c in contenders:  # warm-up: compile kernels, fill allocator caches
        c.run()
    for _ in range(args.rounds):
        for c in contenders:
            c.runs.append(c.run())
            sys.stdout.write(".")
            sys.stdout.flush()
    print()

    ours, mlx_lm = contenders[0], contenders[1]
    if ours.runs[-1].tokens != mlx_lm.runs[-1].tokens:
        print("WARNING: mullama and mlx-lm produced different greedy tokens")
    rows = []
    for c in contenders:
        tps = c.median(lambda r: r.decode_tps)
        ttft = c.median(lambda r: r.ttft_s)
        rows.append(
            [
                c.name,
                f"{len(c.runs[-1].tokens)}",
                f"{ttft * 1000:.0f}",
                f"{tps:.2f}",
                f"{c.median(lambda r: r.cpu_ms_per_token):.0f}",
                f"{ours.median(lambda r: r.decode_tps) / tps:.2f}x" if c is not ours else "1.00x",
                f"{ttft / ours.median(lambda r: r.ttft_s):.2f}x" if c is not ours else "1.00x",
            ]
        )
    table(
        f"generation: {len(prompt)}-token chat prompt, greedy, up to {args.max_tokens} tokens, "
        f"median of {args.rounds} alternating rounds",
        [
            "contender",
            "tokens",
            "TTFT ms",
            "decode tok/s",
            "CPU ms/token",
            "ours/theirs tok/s",
            "their/our TTFT",
        ],
        rows,
    )
    tps_ratio = ours.median(lambda r: r.decode_tps) / mlx_lm.median(lambda r: r.decode_tps)
    ttft_ratio = ours.median(lambda r: r.ttft_s) / mlx_lm.median(lambda r: r.ttft_s)
    print(
        f"mullama vs mlx-lm: tok/s ratio {tps_ratio:.3f} (target >= 1.0: "
        f"{'PASS' if tps_ratio >= 1.0 else 'FAIL'}), TTFT ratio {ttft_ratio:.3f} "
        f"(target <= 1.05: {'PASS' if ttft_ratio <= 1.05 else 'FAIL'})"
    )
    print(f"note: {llama_note}")
    print(
        "mlx-lm's tokenizer: an HF fast tokenizer built from the GGUF vocab/merges, "
        "BPEStreamingDetokenizer (what mlx_lm.load picks for SmolLM2)"
    )
    print(f"reply (mullama): {ours.runs[-1].text[:120]!r}")
    if llm is not None:
        same = contenders[2].runs[-1].tokens == ours.runs[-1].tokens
        print(f"llama.cpp greedy tokens {'equal' if same else 'differ from'} mullama's")
    return {"llm": llm}


def completion_runner(llm: Any, prompt: list[int], max_tokens: int) -> Callable[[], Run]:
    """llama-cpp-python's high-level streaming completion (what its users call)."""

    def run() -> Run:
        llm.reset()  # no KV prefix reuse between rounds
        pieces: list[str] = []

        def events() -> Iterator[str]:
            chunks = llm.create_completion(
                prompt=prompt,
                max_tokens=max_tokens,
                temperature=0.0,
                repeat_penalty=1.0,
                stream=True,
            )
            for chunk in chunks:
                text = chunk["choices"][0]["text"]
                pieces.append(text)
                yield text

        # One chunk per token (llama-cpp-python withholds incomplete characters and stop
        # prefixes, like mullama); empty chunks carry no token.
        result = _drain(events, lambda text: 0 if text else None)
        result.text = "".join(pieces)
        return result

    return run


class DecodeGaps:
    """Wraps llama-cpp-python's `llama_decode` (both mullama's engine and `Llama` call it) to
    time what happens between two decode calls: everything a stack does per token outside
    the forward pass (sampling, detokenizing, stop scanning, the channel, the consumer). It is
    what the core could add, measured apart from the forward pass's own noise."""

    def __init__(self) -> None:
        import llama_cpp
        import llama_cpp.llama_cpp as low

        self.spans: list[tuple[float, float]] = []
        real = low.llama_decode

        def timed(ctx: Any, batch: Any) -> int:
            began = time.perf_counter()
            rc = real(ctx, batch)
            self.spans.append((began, time.perf_counter()))
            return rc

        llama_cpp.llama_decode = low.llama_decode = timed

    def first_token_outside_ms(self, began: float, ttft_s: float) -> float:
        """The first token's wait outside the forward passes that produced it, in ms: the
        prompt's tokenization, set-up and the trip to the consumer (what the core could add
        to TTFT, apart from the prefill's own process-to-process spread)."""
        arrived = began + ttft_s
        inside = sum(end - start for start, end in self.spans if end <= arrived)
        return (ttft_s - inside) * 1000

    def per_token_ms(self) -> float:
        """Median gap between decode calls after the first token's, in ms."""
        spans = self.spans[1:]
        gaps = [b[0] - a[1] for a, b in zip(spans, spans[1:], strict=False)]
        self.spans = []
        return statistics.median(gaps) * 1000 if gaps else float("nan")


def worker_pair(options: dict[str, Any]) -> dict[str, Any]:
    """mullama on llama.cpp vs `create_completion`, alternating (ABBA) in a fresh process.

    Fresh processes, because in one process one side's forward pass was seen to stay a few
    percent faster throughout, and in the next process the other's (memory placement is the
    likely cause; not proven). Several processes average that out; the rounds within one
    even out the load."""
    gaps = DecodeGaps()
    import llama_cpp

    from mullama import Model
    from mullama.engines.llamacpp import DEFAULT_N_THREADS

    prompt, max_tokens = options["prompt"], options["max_tokens"]
    model = Model.load(engine="llama.cpp")
    llm = llama_cpp.Llama(
        model_path=str(model.path),
        n_ctx=2048,
        n_threads=DEFAULT_N_THREADS,
        n_threads_batch=DEFAULT_N_THREADS,
        verbose=False,
    )
    sides = {
        "ours": mullama_runner(model, prompt, max_tokens),
        "theirs": completion_runner(llm, prompt, max_tokens),
    }
    for run in sides.values():
        run()  # warm-up
    gaps.spans = []
    rounds: list[dict[str, Any]] = []
    for i in range(options["rounds"]):
        row: dict[str, Any] = {}
        for name in ("ours", "theirs") if i % 2 == 0 else ("theirs", "ours"):
            began = time.perf_counter()
            result = sides[name]()
            row[name] = {
                "ttft_s": result.ttft_s,
                "outside_ms": gaps.first_token_outside_ms(began, result.ttft_s),
                "decode_tps": result.decode_tps,
                "cpu_ms_per_token": result.cpu_ms_per_token,
                "gap_ms": gaps.per_token_ms(),
                "tokens": len(result.tokens),
                "text": result.text,
            }
        rounds.append(row)
    model.close()
    llm.close()
    return {"rounds": rounds, "version": llama_cpp.__version__}


def compare_engines(args: argparse.Namespace, prompt: list[int]) -> None:
    from mullama import Model
    from mullama.engines.llamacpp import DEFAULT_N_THREADS

    # 1. mullama on llama.cpp vs create_completion, in fresh processes.
    per_process = max(1, args.pair_rounds // args.processes)
    rounds: list[dict[str, Any]] = []
    by_process: list[tuple[float, float]] = []
    version = "?"
    for _ in range(args.processes):
        answer = run_worker(
            "pair", {}, {"prompt": prompt, "max_tokens": args.max_tokens, "rounds": per_process}
        )
        if "error" in answer:
            print(f"pair worker failed: {answer['error']}")
            return
        rounds.extend(answer["rounds"])
        by_process.append(
            tuple(
                statistics.median(r["ours"][key] / r["theirs"][key] for r in answer["rounds"])
                for key in ("decode_tps", "ttft_s")
            )
        )
        version = answer["version"]
        sys.stdout.write(".")
        sys.stdout.flush()

    def med(side: str, key: str) -> float:
        return statistics.median(r[side][key] for r in rounds)

    def paired(key: str) -> tuple[float, float, float]:
        """Median and quartiles of the per-round ratio ours/theirs."""
        ratios = [r["ours"][key] / r["theirs"][key] for r in rounds]
        q1, median, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
        return median, q1, q3

    # 2. auto vs mlx, in this process: MLX is ~10x slower, a few rounds are enough.
    auto = Model.load(engine="auto")
    on_mlx = Model.load(engine="mlx")
    picked = Contender(
        f"mullama engine=auto ({auto.engine.name})", mullama_runner(auto, prompt, args.max_tokens)
    )
    mlx = Contender("mullama engine=mlx", mullama_runner(on_mlx, prompt, args.max_tokens))
    for c in (picked, mlx):
        c.run()  # warm-up
    # Several auto runs per MLX run: one takes a tenth of the time, and three of them alone
    # moved between 52 and 70 tok/s from run to run.
    for _ in range(args.rounds):
        for c, times in ((picked, AUTO_RUNS_PER_ROUND), (mlx, 1)):
            for _ in range(times):
                c.runs.append(c.run())
            sys.stdout.write(".")
            sys.stdout.flush()
    print()

    rows = [
        [
            name,
            f"{len(rounds)}",
            f"{rounds[-1][side]['tokens']}",
            f"{med(side, 'ttft_s') * 1000:.0f}",
            f"{med(side, 'outside_ms'):.2f}",
            f"{med(side, 'decode_tps'):.1f}",
            f"{med(side, 'cpu_ms_per_token'):.1f}",
            f"{med(side, 'gap_ms'):.3f}",
        ]
        for name, side in (
            ("mullama engine=llama.cpp", "ours"),
            ("llama-cpp-python create_completion", "theirs"),
        )
    ]
    rows += [
        [
            c.name,
            f"{len(c.runs)}",
            f"{len(c.runs[-1].tokens)}",
            f"{c.median(lambda r: r.ttft_s) * 1000:.0f}",
            "",
            f"{c.median(lambda r: r.decode_tps):.1f}",
            f"{c.median(lambda r: r.cpu_ms_per_token):.1f}",
            "",
        ]
        for c in (picked, mlx)
    ]
    table(
        f"engines: {len(prompt)}-token chat prompt, greedy, up to {args.max_tokens} tokens, "
        f"{DEFAULT_N_THREADS} llama.cpp thread(s); the llama.cpp pair in {args.processes} fresh "
        f"processes of {per_process} alternating rounds; medians",
        [
            "contender",
            "rounds",
            "tokens",
            "TTFT ms",
            "of it outside forward ms",
            "decode tok/s",
            "CPU ms/token",
            "ms between forward passes",
        ],
        rows,
    )
    tps, tps_q1, tps_q3 = paired("decode_tps")
    ttft, ttft_q1, ttft_q3 = paired("ttft_s")
    gap, _, _ = paired("gap_ms")
    print(
        f"mullama llama.cpp vs llama-cpp-python {version}, median of {len(rounds)} paired rounds "
        f"(quartiles): decode tok/s ratio {tps:.3f} ({tps_q1:.3f}-{tps_q3:.3f}; target >= 1.0: "
        f"{'PASS' if tps >= 1.0 else 'FAIL'}), TTFT ratio {ttft:.3f} ({ttft_q1:.3f}-{ttft_q3:.3f}; "
        f"target <= 1.05: {'PASS' if ttft <= 1.05 else 'FAIL'}); time between forward passes "
        f"{gap:.3f}x"
    )
    print(
        "decode tok/s ratio by process (median of its rounds): "
        + ", ".join(f"{tps:.3f}" for tps, _ in by_process)
        + f"; ratio of the medians {med('ours', 'decode_tps') / med('theirs', 'decode_tps'):.3f}"
    )
    print(
        "TTFT ratio by process: "
        + ", ".join(f"{ttft:.3f}" for _, ttft in by_process)
        + f"; outside the forward passes mullama {med('ours', 'outside_ms'):.2f} ms, "
        f"create_completion {med('theirs', 'outside_ms'):.2f} ms of the first token's wait"
    )

    def ratio(a: Contender, b: Contender, key: Callable[[Run], float]) -> float:
        return a.median(key) / b.median(key)

    speedup = ratio(picked, mlx, lambda r: r.decode_tps)
    faster_first = ratio(mlx, picked, lambda r: r.ttft_s)
    print(
        f"mullama auto ({auto.engine.describe()}) vs mlx: decode {speedup:.1f}x "
        f"(target >= 10x: {'PASS' if speedup >= 10 else 'FAIL'}), first token {faster_first:.1f}x "
        f"sooner (target >= 10x: {'PASS' if faster_first >= 10 else 'FAIL'})"
    )
    ours_text, theirs_text = rounds[-1]["ours"]["text"], rounds[-1]["theirs"]["text"]
    print(f"texts: llama.cpp engine {ours_text[:60]!r}")
    print(f"       create_completion {theirs_text[:60]!r}")
    print(f"       (the two texts {'are equal' if ours_text == theirs_text else 'differ'})")
    for model in (auto, on_mlx):
        model.close()


def compare_overhead(args: argparse.Namespace, model: Any) -> None:
    from mlx_lm.generate import stream_generate
    from mlx_lm.sample_utils import make_sampler

    from mullama import Context, Model, StreamConfig
    from mullama.engines.mlx import MlxEngine

    eog = model.end_of_generation_ids
    script = [t for t in model.tokenize(FAKE_TEXT, special=False) if t not in eog]
    n = args.fake_tokens
    fake = InstantModel(script, model.n_vocab)
    loaded = SimpleNamespace(model=fake, n_vocab=model.n_vocab, n_ctx_train=n + 64, path=model.path)
    info = dataclasses.replace(model.info, n_ctx_train=n + 64)
    fake_model = Model(MlxEngine(loaded), info, model.tokenizer, model.chat_template, {})
    tokenizer = hf_tokenizer_from_gguf(str(model.path))
    tokenizer._eos_token_ids = set(eog)
    sampler = make_sampler(temp=0.0)
    config = StreamConfig(max_tokens=n, temperature=0.0, timeout_ms=NO_DEADLINE)
    prompt = script[:8]

    def ours() -> Run:
        return _drain(
            lambda: iter(Context(fake_model).generate_stream(prompt, config)),
            lambda e: e.token if e.finish_reason is None else None,
        )

    def theirs() -> Run:
        return _drain(
            lambda: stream_generate(fake, tokenizer, prompt, n, sampler=sampler),
            lambda r: r.token if r.finish_reason is None else None,
        )

    def bare() -> Run:
        # The fake model, log-softmax and argmax alone, one eval per token: the floor.
        def tokens() -> Iterator[int]:
            for _ in range(n):
                logits = fake(mx.array([[1]]))[:, -1, :]
                logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
                yield int(mx.argmax(logprobs, axis=-1).item())

        return _drain(tokens, lambda t: t)

    contenders = [
        Contender("mullama generate_stream", ours),
        Contender("mlx-lm stream_generate", theirs),
        Contender("bare MLX step (no loop)", bare),
    ]
    for _ in range(args.overhead_rounds):
        for c in contenders:
            c.runs.append(c.run())
    rows = []
    floor = contenders[2].median(lambda r: r.total_s / len(r.tokens))
    for c in contenders:
        per = c.median(lambda r: r.total_s / len(r.tokens))
        rows.append(
            [
                c.name,
                f"{per * 1e6:.0f}",
                f"{(per - floor) * 1e6:.0f}",
                f"{c.median(lambda r: r.cpu_s / len(r.tokens)) * 1e6:.0f}",
                f"{1 / per:,.0f}",
            ]
        )
    table(
        f"per-token cost of the loop: fake instant model (one-hot logits over {model.n_vocab}), "
        f"{n} tokens, median of {args.overhead_rounds}",
        ["loop", "us/token", "us over bare step", "CPU us/token", "tok/s"],
        rows,
    )


QMM_ATTN = "attention q/k/v/o projections (quantized matmul)"
ATTN_CORE = "attention core (RoPE, KV cache update, SDPA)"
QMM_MLP = "MLP gate/up/down projections (quantized matmul)"
SWIGLU = "MLP activation (SwiGLU)"
GLUE = "RMS norms + residual adds"


def profile_forward(args: argparse.Namespace, model: Any, prompt: list[int]) -> None:
    """Where one decode step and one prefill spend their time: each piece of the forward
    pass evaluated on its own (mx.eval after every piece), summed by kind over the layers."""
    from mlx_lm.models.activations import swiglu
    from mlx_lm.models.base import create_attention_mask
    from mlx_lm.models.cache import make_prompt_cache

    lm = model.mlx_model
    inner = lm.model
    if not all(hasattr(inner.layers[0], a) for a in ("self_attn", "mlp", "input_layernorm")):
        print("\nprofile skipped: not a Llama-style layer layout")
        return
    hidden = inner.norm.weight.shape[0]
    tied = "lm_head" not in lm
    head_name = f"output projection {model.n_vocab} x {hidden}" + (
        " (tied embedding)" if tied else ""
    )

    def head(h: mx.array) -> mx.array:
        return inner.embed_tokens.as_linear(h) if tied else lm.lm_head(h)

    def pieces(x: mx.array, cache: list[Any]) -> dict[str, tuple[float, float]]:
        """(wall, CPU) seconds per kind of piece for one forward pass of `x`."""
        wall: dict[str, float] = {}
        cpu: dict[str, float] = {}

        def add(kind: str, w: float, c: float) -> None:
            wall[kind] = wall.get(kind, 0.0) + w
            cpu[kind] = cpu.get(kind, 0.0) + c

        def timed(kind: str, fn: Callable[[], mx.array]) -> mx.array:
            c0, t0 = time.process_time(), time.perf_counter()
            out = fn()
            mx.eval(out)
            add(kind, time.perf_counter() - t0, time.process_time() - c0)
            return out

        h = timed("embedding lookup", lambda: inner.embed_tokens(x))
        mask = create_attention_mask(h, cache[0])
        o_input = mx.random.normal(h.shape)  # o_proj's input has the hidden state's shape
        mx.eval(o_input)
        for layer, c in zip(inner.layers, cache, strict=True):
            attn, mlp = layer.self_attn, layer.mlp
            n1 = timed(GLUE, lambda layer=layer, h=h: layer.input_layernorm(h))
            w0, c0 = wall.get(QMM_ATTN, 0.0), cpu.get(QMM_ATTN, 0.0)
            for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
                timed(QMM_ATTN, lambda proj=proj, n1=n1: proj(n1))
            timed(QMM_ATTN, lambda attn=attn: attn.o_proj(o_input))
            proj_w, proj_c = wall[QMM_ATTN] - w0, cpu[QMM_ATTN] - c0
            # The whole attention block (its projections again), minus the projections alone.
            c1, t1 = time.process_time(), time.perf_counter()
            a = attn(n1, mask, c)
            mx.eval(a)
            core_w = time.perf_counter() - t1 - proj_w
            core_c = time.process_time() - c1 - proj_c
            add(ATTN_CORE, max(core_w, 0.0), max(core_c, 0.0))
            r = timed(GLUE, lambda h=h, a=a: h + a)
            n2 = timed(GLUE, lambda layer=layer, r=r: layer.post_attention_layernorm(r))
            g = timed(QMM_MLP, lambda mlp=mlp, n2=n2: mlp.gate_proj(n2))
            u = timed(QMM_MLP, lambda mlp=mlp, n2=n2: mlp.up_proj(n2))
            act = timed(SWIGLU, lambda g=g, u=u: swiglu(g, u))
            m = timed(QMM_MLP, lambda mlp=mlp, act=act: mlp.down_proj(act))
            h = timed(GLUE, lambda r=r, m=m: r + m)
        last = timed(GLUE, lambda: inner.norm(h[:, -1:, :]))
        logits = timed(head_name, lambda: head(last))
        timed("log-softmax + argmax", lambda: sample(logits))
        return {k: (wall[k], cpu[k]) for k in wall}

    floor = median_time(lambda: mx.eval(mx.array([1.0]) + 1), 50)
    evals_per_pass = 3 + len(inner.layers) * 13

    def report(title: str, runs: list[dict[str, tuple[float, float]]], fused: list[tuple]) -> None:
        def med(values: Iterator[float]) -> str:
            return f"{statistics.median(values) * 1000:.1f}"

        kinds = list(runs[0])
        cpu = {k: statistics.median(r[k][1] for r in runs) for k in kinds}
        total_cpu = sum(cpu.values())
        rows = [
            [
                k,
                med(r[k][0] for r in runs),
                f"{cpu[k] * 1000:.1f}",
                f"{100 * cpu[k] / total_cpu:.0f}%",
            ]
            for k in sorted(kinds, key=lambda k: -cpu[k])
        ]
        sums = [sum(v[0] for v in r.values()) for r in runs]
        rows.append(["sum of the pieces", med(iter(sums)), f"{total_cpu * 1000:.1f}", "100%"])
        rows.append(
            [
                "one fused pass (a single mx.eval)",
                med(f[0] for f in fused),
                med(f[1] for f in fused),
                "",
            ]
        )
        rows.append(["  of which building the graph (Python)", med(f[2] for f in fused), "", ""])
        rows.append(
            [
                f"eval floor x {evals_per_pass} evals in the pieces",
                f"{floor * evals_per_pass * 1000:.1f}",
                "",
                "",
            ]
        )
        table(title, ["piece", "wall ms", "CPU ms", "CPU share"], rows)

    def fused_pass(x: mx.array, cache: list[Any]) -> tuple[float, float, float]:
        c0, t0 = time.process_time(), time.perf_counter()
        out = sample(lm(x, cache=cache)[:, -1, :])
        t1 = time.perf_counter()
        mx.eval(out)
        return time.perf_counter() - t0, time.process_time() - c0, t1 - t0

    # Decode: the prompt in the cache, then one token at a time (each timing appends one).
    cache = make_prompt_cache(model.mlx_model)
    mx.eval(lm(mx.array(prompt)[None], cache=cache))
    token = mx.array([[prompt[-1]]])
    pieces(token, cache)  # warm-up: compiled activations, allocator
    runs, fused = [], []
    for _ in range(args.profile_steps):
        runs.append(pieces(token, cache))
        fused.append(fused_pass(token, cache))
    report(
        f"decode step profile (cache of ~{len(prompt)} tokens), median of {args.profile_steps}",
        runs,
        fused,
    )

    # Prefill: the whole prompt through an empty cache.
    x = mx.array(prompt)[None]
    runs, fused = [], []
    for _ in range(args.profile_prefills):
        runs.append(pieces(x, make_prompt_cache(model.mlx_model)))
        fused.append(fused_pass(x, make_prompt_cache(model.mlx_model)))
    report(
        f"prefill profile ({len(prompt)} tokens), median of {args.profile_prefills}", runs, fused
    )


def sample(logits: mx.array) -> mx.array:
    """Greedy sampling as both generation loops do it: log-softmax, then argmax."""
    logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    return mx.argmax(logprobs, axis=-1)


# ---------------------------------------------------------------- subprocess probes


def run_worker(kind: str, env_extra: dict[str, str], options: dict[str, Any]) -> dict[str, Any]:
    """Runs this script's worker `kind` in a fresh interpreter; returns its JSON answer."""
    env = {**os.environ, **env_extra}
    cmd = [sys.executable, __file__, "--worker", kind, "--worker-options", json.dumps(options)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1])


def worker_load(options: dict[str, Any]) -> dict[str, Any]:
    """Load time and memory of one engine, measured from a fresh process."""
    from mullama.loader import default_model_path

    path = str(default_model_path())
    rss_before, _ = rss_mib()
    t0 = time.perf_counter()
    if options["engine"].startswith("mullama"):
        from mullama import Model

        model = Model.load(engine=options["engine"].split(" ", 1)[1])
        load_s = time.perf_counter() - t0
        peak_mlx = mx.get_peak_memory() / 2**20
        active = mx.get_active_memory() / 2**20
        ids = model.chat_ids(MESSAGES)
        from mullama import Context, StreamConfig

        Context(model).generate(
            ids, StreamConfig(max_tokens=8, temperature=0.0, timeout_ms=NO_DEADLINE)
        )
        peak_after = mx.get_peak_memory() / 2**20
    else:
        llm, _ = load_llama_cpp(path, n_ctx=2048)
        if llm is None:
            return {"error": "llama_cpp not importable"}
        load_s = time.perf_counter() - t0
        peak_mlx = active = peak_after = float("nan")
        llm.reset()
        for n, _t in enumerate(llm.generate(llm.tokenize(b"Hello there"), temp=0.0)):
            if n >= 7:
                break
    rss, peak_rss = rss_mib()
    return {
        "load_s": load_s,
        "mlx_peak_mib": peak_mlx,
        "mlx_active_mib": active,
        "mlx_peak_after_gen_mib": peak_after,
        "rss_before_mib": rss_before,
        "rss_mib": rss,
        "peak_rss_mib": peak_rss,
    }


def worker_blas(options: dict[str, Any]) -> dict[str, Any]:
    """Prefill and decode of the chat prompt with mlx-lm's loop on the GGUF weights loaded
    quantized or expanded to float (whatever BLAS this process has)."""
    from mlx_lm.generate import generate_step

    from mullama.loader import default_model_path, load_gguf

    t0 = time.perf_counter()
    loaded = load_gguf(default_model_path(), keep_quantized=options["keep_quantized"])
    load_s = time.perf_counter() - t0
    prompt = mx.array(options["prompt"])
    decode_tokens = options["decode_tokens"]
    prefills, decodes, cpu_prefills = [], [], []
    for _ in range(options["repeats"]):
        c0 = time.process_time()
        t0 = time.perf_counter()
        steps = generate_step(prompt, loaded.model, max_tokens=decode_tokens + 1)
        next(steps)
        first = time.perf_counter()
        cpu_first = time.process_time()
        for _ in steps:
            pass
        end = time.perf_counter()
        prefills.append(first - t0)
        cpu_prefills.append(cpu_first - c0)
        decodes.append(decode_tokens / (end - first))
    return {
        "load_s": load_s,
        "prefill_s": statistics.median(prefills),
        "prefill_cpu_s": statistics.median(cpu_prefills),
        "decode_tps": statistics.median(decodes),
        "mlx_peak_mib": mx.get_peak_memory() / 2**20,
        "peak_rss_mib": rss_mib()[1],
        "blas": os.environ.get("LD_PRELOAD", "") or "bundled reference BLAS",
    }


def load_section() -> None:
    rows = []
    for engine in ("mullama mlx", "mullama llama.cpp", "llama-cpp-python"):
        r = run_worker("load", {}, {"engine": engine})
        if "error" in r:
            rows.append([engine, r["error"], "", "", "", ""])
            continue
        rows.append(
            [
                engine,
                f"{r['load_s'] * 1000:.0f}",
                f"{r['mlx_peak_mib']:.1f}",
                f"{r['mlx_peak_after_gen_mib']:.1f}",
                f"{r['rss_mib'] - r['rss_before_mib']:.0f}",
                f"{r['peak_rss_mib']:.0f}",
            ]
        )
    table(
        "load: default model (SmolLM2-135M-Instruct Q4_1), fresh process each; mullama's load "
        "includes the Rust tokenizer",
        [
            "engine",
            "load ms",
            "MLX peak MiB",
            "MLX peak after 8 tokens",
            "RSS added by load MiB",
            "peak RSS MiB",
        ],
        rows,
    )


def blas_section(args: argparse.Namespace, prompt: list[int]) -> None:
    rows = []
    for keep in (True, False):
        for preload in ("", OPENBLAS):
            options = {
                "keep_quantized": keep,
                "prompt": prompt,
                "decode_tokens": args.blas_decode_tokens,
                "repeats": args.blas_repeats,
            }
            env = {"LD_PRELOAD": preload} if preload else {}
            r = run_worker("blas", env, options)
            label = f"keep_quantized={keep}, {'OpenBLAS preloaded' if preload else 'bundled BLAS'}"
            if "error" in r:
                rows.append([label, r["error"], "", "", "", "", ""])
                continue
            rows.append(
                [
                    label,
                    f"{r['load_s'] * 1000:.0f}",
                    f"{r['prefill_s'] * 1000:.0f}",
                    f"{r['prefill_cpu_s'] * 1000:.0f}",
                    f"{r['decode_tps']:.2f}",
                    f"{r['mlx_peak_mib']:.0f}",
                    f"{r['peak_rss_mib']:.0f}",
                ]
            )
    table(
        f"OpenBLAS preload: {len(prompt)}-token prefill (time to first token) and "
        f"{args.blas_decode_tokens}-token decode with mlx-lm's generate_step, fresh process each, "
        f"median of {args.blas_repeats}",
        [
            "configuration",
            "load ms",
            "prefill ms",
            "prefill CPU ms",
            "decode tok/s",
            "MLX peak MiB",
            "peak RSS MiB",
        ],
        rows,
    )
    print(f"(LD_PRELOAD={OPENBLAS})")


# ---------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and tokens")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument(
        "--pair-rounds",
        type=int,
        default=None,
        help="paired rounds of mullama llama.cpp vs create_completion (default 24, quick 4)",
    )
    parser.add_argument(
        "--processes", type=int, default=None, help="fresh processes the pair runs in (6, quick 1)"
    )
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--no-llama", action="store_true", help="skip llama-cpp-python")
    parser.add_argument("--no-profile", action="store_true", help="skip the forward-pass profile")
    parser.add_argument("--no-blas", action="store_true", help="skip the OpenBLAS comparison")
    parser.add_argument(
        "--engines-only", action="store_true", help="only the engine comparison and load/memory"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-options", help=argparse.SUPPRESS)
    args = parser.parse_args()
    quick = args.quick
    args.rounds = args.rounds or (2 if quick else 3)
    args.max_tokens = args.max_tokens or (12 if quick else 32)
    args.pair_rounds = args.pair_rounds or (4 if quick else 24)
    args.processes = args.processes or (1 if quick else 6)
    args.fake_tokens = 300 if quick else 1000
    args.overhead_rounds = 3 if quick else 5
    args.profile_steps = 2 if quick else 5
    args.profile_prefills = 1 if quick else 3
    args.blas_decode_tokens = 8 if quick else 16
    args.blas_repeats = 1 if quick else 2
    return args


def main() -> None:
    args = parse_args()
    if args.worker:
        workers = {"load": worker_load, "blas": worker_blas, "pair": worker_pair}
        print(json.dumps(workers[args.worker](json.loads(args.worker_options))))
        return

    from mullama import Model

    started = time.perf_counter()
    model = Model.load(engine="mlx")
    prompt = model.chat_ids(MESSAGES)
    print(
        f"model {model.path.name} ({model.quantization}), mlx {mx.__version__}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    print(f"prompt: {len(prompt)} tokens (chat template applied to {MESSAGES[0]['content']!r})")

    if not args.no_llama:
        compare_engines(args, prompt)
    if args.engines_only:
        load_section()
        print(
            f"\ntotal {time.perf_counter() - started:.0f} s, load average now "
            f"{os.getloadavg()[0]:.1f}"
        )
        return
    compare_generation(args, model, prompt)
    compare_overhead(args, model)
    if not args.no_profile:
        profile_forward(args, model, prompt)
    load_section()
    if not args.no_blas:
        blas_section(args, prompt)
    print(
        f"\ntotal {time.perf_counter() - started:.0f} s, load average now {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
