"""Stream throughput: the whole Python-visible path against a pure-Python equivalent.

    python benchmarks/bench_stream.py [--tokens N] [--repeats R]

Both sides do the same work per token: a producer thread hands token pieces over a bounded
channel (64 slots) to the consumer, which decodes UTF-8 incrementally and withholds any tail
that could begin one of 16 stop sequences (none of which ever matches). mullama does it in the
Rust core (producer thread in Rust, `for t in stream: t.text` in Python); the baseline is
threading + queue.Queue(maxsize=64) + codecs' incremental decoder + a naive stop search.

Measure a release build (`maturin develop -q --release`); a debug build is several times
slower.
"""

from __future__ import annotations

import argparse
import codecs
import os
import queue
import random
import statistics
import threading
import time
from collections.abc import Callable

from mullama import StreamConfig
from mullama.testing import stream_from_pieces

BUFFER = 64

# Typical chat-template and prompt-format stops. The text below contains their first
# characters (newlines, '<', '#', '[') so the withholding logic runs, but never a whole stop.
STOPS = [
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "</s>",
    "<end_of_turn>",
    "\n\nHuman:",
    "\n\nUser:",
    "\nUser:",
    "###",
    "[/INST]",
    "[INST]",
    "Observation:",
    "\nQ:",
    "<|user|>",
    "<|assistant|>",
    "END_OF_ANSWER",
]

WORDS = (
    "the model streams tokens to the consumer while the producer keeps going and "
    "nothing is lost or repeated when the buffer fills up so memory stays flat "
    "ünïcödé naïve café 東京 数据 流 🙂 🚀 <b> # [x] Obs User Q"
).split()


def make_pieces(count: int, seed: int = 1) -> list[bytes]:
    """Token-like byte pieces: mostly " word" pieces, some newlines and some pieces that cut
    multi-byte characters in half, as byte-level BPE vocabularies do."""
    rng = random.Random(seed)
    vocab: list[bytes] = []
    for word in WORDS:
        data = (" " + word).encode()
        vocab.append(data)
        if len(data) != len(word) + 1:  # has multi-byte characters: add a split version
            cut = len(data) // 2
            vocab.append(data[:cut] + b"\x00" + data[cut:])
    vocab += [b"\n", b"\n\n", b".", b","]
    pieces: list[bytes] = []
    while len(pieces) < count:
        piece = rng.choice(vocab)
        if b"\x00" in piece:
            pieces.extend(piece.split(b"\x00"))
        else:
            pieces.append(piece)
    return pieces[:count]


def run_mullama(pieces: list[bytes], stops: list[str]) -> int:
    config = StreamConfig(max_tokens=len(pieces) + 1, stop_sequences=stops, buffer_size=BUFFER)
    chars = 0
    for t in stream_from_pieces(pieces, config):
        chars += len(t.text)
    return chars


def run_python(pieces: list[bytes], stops: list[str]) -> int:
    channel: queue.Queue[bytes | None] = queue.Queue(maxsize=BUFFER)

    def produce() -> None:
        for piece in pieces:
            channel.put(piece)
        channel.put(None)

    producer = threading.Thread(target=produce)
    producer.start()
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    longest = max((len(s) for s in stops), default=0)
    held = ""
    chars = 0
    while True:
        piece = channel.get()
        if piece is None:
            text = held + decoder.decode(b"", final=True)
            chars += len(text)
            break
        text = held + decoder.decode(piece)
        cut = -1
        for stop in stops:
            at = text.find(stop)
            if at >= 0 and (cut < 0 or at < cut):
                cut = at
        if cut >= 0:
            chars += cut
            break
        # Withhold the longest tail that could still begin a stop.
        keep = 0
        for k in range(min(longest - 1, len(text)), 0, -1):
            tail = text[-k:]
            if any(stop.startswith(tail) for stop in stops):
                keep = k
                break
        released, held = (text[:-keep], text[-keep:]) if keep else (text, "")
        chars += len(released)
    producer.join()
    return chars


def best_rate(run: Callable[[], int], tokens: int, repeats: int) -> tuple[float, int]:
    rates = []
    result = 0
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        rates.append(tokens / (time.perf_counter() - start))
    return max(rates), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=500_000)
    parser.add_argument(
        "--baseline-tokens",
        type=int,
        default=100_000,
        help="tokens for the (much slower) pure-Python pipeline; its rate does not depend on it",
    )
    parser.add_argument("--repeats", type=int, default=5, help="runs per cell; the best counts")
    args = parser.parse_args()

    pieces = make_pieces(args.tokens)
    baseline_pieces = pieces[: args.baseline_tokens]
    rows = []
    for label, stops in (("16 stops", STOPS), ("no stops", [])):
        fast, _ = best_rate(lambda s=stops: run_mullama(pieces, s), len(pieces), args.repeats)
        slow, slow_chars = best_rate(
            lambda s=stops: run_python(baseline_pieces, s), len(baseline_pieces), args.repeats
        )
        # Same work: both pipelines release exactly the same text.
        fast_chars = run_mullama(baseline_pieces, stops)
        assert fast_chars == slow_chars, f"outputs differ: {fast_chars} vs {slow_chars} chars"
        rows.append((label, fast, slow))

    print(
        f"stream throughput: mullama {len(pieces):,} tokens, pure Python "
        f"{len(baseline_pieces):,} tokens, best of {args.repeats}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'workload':<10} {'mullama tok/s':>15} {'pure Python tok/s':>18} {'ratio':>7}")
    for label, fast, slow in rows:
        print(f"{label:<10} {fast:>15,.0f} {slow:>18,.0f} {fast / slow:>6.1f}x")
    fast16, slow16 = rows[0][1], rows[0][2]
    verdict = "PASS" if fast16 >= 500_000 and fast16 >= 3 * slow16 else "FAIL"
    print(f"target (16 stops): >= 500,000 tok/s and >= 3.0x baseline: {verdict}")
    if verdict == "FAIL" and statistics.mean([r[1] for r in rows]) < 300_000:
        print("(is this a debug build, or a busy machine? `maturin develop -q --release`)")


if __name__ == "__main__":
    main()
