"""Encode throughput of mullama's folder tokenizer (tokenizer.json through the
`tokenizers` crate) against the `tokenizers` Python package, on the same file and texts.

    python benchmarks/bench_tokenizer_json.py [--family NAME ...] [--texts N] [--repeat N]
    python benchmarks/bench_tokenizer_json.py --file path/to/tokenizer.json

Families are the configurations of tests/hf_families.py (small vocabularies trained on
generated text). Ratio = mullama texts/s over the package's; >= 1.0 means mullama is at
least as fast. Both are called once per text from Python, the way a prompt is encoded.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from tokenizers import Tokenizer as HfTokenizer

from mullama import _core

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from hf_families import FAMILIES, random_text, write_family  # noqa: E402


def _rates(encoders, texts: list[str], repeat: int) -> list[float]:
    """Best of `repeat` passes of each encoder, in texts per second. The encoders take
    turns pass by pass, so a swing in the machine's load falls on both."""
    best = [float("inf")] * len(encoders)
    for _ in range(repeat):
        for i, encode in enumerate(encoders):
            start = time.perf_counter()
            for t in texts:
                encode(t)
            best[i] = min(best[i], time.perf_counter() - start)
    return [len(texts) / b for b in best]


def _row(name: str, folder: Path, texts: list[str], repeat: int) -> tuple[str, float, float]:
    hf = HfTokenizer.from_file(str(folder / "tokenizer.json"))
    mine = _core.Tokenizer.from_json(str(folder))
    for t in texts[:200]:  # same ids, or the comparison means nothing
        assert mine.encode(t) == hf.encode(t, add_special_tokens=False).ids, t
    # Both sides hand the ids to Python (an Encoding builds its list on `.ids`).
    ours, theirs = _rates(
        [mine.encode, lambda t: hf.encode(t, add_special_tokens=False).ids], texts, repeat
    )
    return name, ours, theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", action="append", choices=FAMILIES)
    parser.add_argument("--file", type=Path, help="a tokenizer.json (or folder) to time")
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    rng = random.Random(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.file:
            folder = args.file if args.file.is_dir() else args.file.parent
            texts = [random_text(rng, []) for _ in range(args.texts)]
            rows.append(_row(str(args.file), folder, texts, args.repeat))
        for name in args.family or ([] if args.file else FAMILIES):
            _, specials = write_family(name, Path(tmp) / name)
            texts = [random_text(rng, specials) for _ in range(args.texts)]
            rows.append(_row(name, Path(tmp) / name, texts, args.repeat))

    load = os.getloadavg()
    print(
        f"{args.texts} texts per family, best of {args.repeat}; load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs"
    )
    print(f"{'tokenizer':<12} {'mullama texts/s':>16} {'tokenizers texts/s':>19} {'ratio':>7}")
    for name, ours, theirs in rows:
        print(f"{name:<12} {ours:>16,.0f} {theirs:>19,.0f} {ours / theirs:>7.2f}")


if __name__ == "__main__":
    main()
