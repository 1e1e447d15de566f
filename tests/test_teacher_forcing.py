"""Our forward pass against llama.cpp: feed prompt + llama.cpp's greedy continuation in
one pass and check, at each generated position, that our argmax is llama.cpp's greedy
token (and within its top 5). Quantized kernels differ, so near-ties may flip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mullama.loader import load_gguf
from needs import shared_testdata

MIN_ARGMAX_AGREEMENT = 0.97
MIN_TOP5_AGREEMENT = 0.995


def _records(name: str) -> list[dict]:
    path = shared_testdata(name, "greedy.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _agreement(loaded, records: list[dict]) -> tuple[float, float, int]:
    argmax_hits = top5_hits = positions = 0
    for record in records:
        prompt, greedy = record["prompt_ids"], record["greedy_ids"]
        logits = loaded.forward(prompt + greedy)
        ours = logits[len(prompt) - 1 : len(prompt) - 1 + len(greedy)].argmax(-1)
        for position, (mine, theirs) in enumerate(zip(ours, greedy, strict=True)):
            top5 = {token for token, _ in record["top5"][position]}
            argmax_hits += int(mine) == theirs
            top5_hits += int(mine) in top5
            positions += 1
    return argmax_hits / positions, top5_hits / positions, positions


def _check(name: str, loaded) -> None:
    argmax, top5, positions = _agreement(loaded, _records(name))
    print(f"\n{name}: argmax agreement {argmax:.2%}, within top-5 {top5:.2%} over {positions}")
    assert argmax >= MIN_ARGMAX_AGREEMENT
    assert top5 >= MIN_TOP5_AGREEMENT


def test_smollm2_matches_llama_cpp(smollm2_model):
    _check("smollm2", smollm2_model)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_gemma3_matches_llama_cpp(gemma3_path: Path):
    _check("gemma3", load_gguf(gemma3_path))
