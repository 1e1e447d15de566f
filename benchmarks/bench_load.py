"""Load time and peak memory of a model (default: the packaged SmolLM2 Q4_1 GGUF),
then a prefill and decode-step timing, with the decode step split into the transformer
body and the output projection.

    python benchmarks/bench_load.py [MODEL] [--prompt-tokens N] [--steps N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import mlx.core as mx

from mullama.loader import load_model, resolve_model


def _timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default=None, help="GGUF file, folder or 'smollm2'")
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    path = resolve_model(args.model)
    mx.reset_peak_memory()
    load_s, loaded = _timed(lambda: load_model(path))
    print(f"model        {path}")
    print(f"quantization {loaded.quantization}  ({loaded.architecture}, vocab {loaded.n_vocab})")
    print(
        f"load         {load_s * 1000:.0f} ms, peak memory {mx.get_peak_memory() / 2**20:.1f} MiB"
    )
    print(f"active       {mx.get_active_memory() / 2**20:.1f} MiB after load")

    model = loaded.model
    prompt = mx.array([[(7 * i + 11) % loaded.n_vocab for i in range(args.prompt_tokens)]])
    cache = loaded.make_cache()
    prefill_s, logits = _timed(lambda: mx.eval(model(prompt, cache=cache)))
    print(f"prefill      {args.prompt_tokens} tokens in {prefill_s * 1000:.0f} ms")

    token = mx.array([[42]])
    body_times, head_times, step_times = [], [], []
    for _ in range(args.steps):
        # The body and head are timed separately by evaluating the hidden state first.
        start = time.perf_counter()
        hidden = model.model(token, cache=cache)
        mx.eval(hidden)
        mid = time.perf_counter()
        if "lm_head" in model:  # mlx-lm models drop lm_head when embeddings are tied
            out = model.lm_head(hidden)
        else:
            out = model.model.embed_tokens.as_linear(hidden)
        mx.eval(out)
        end = time.perf_counter()
        body_times.append(mid - start)
        head_times.append(end - mid)
        step_times.append(end - start)
    body = statistics.median(body_times) * 1000
    head = statistics.median(head_times) * 1000
    step = statistics.median(step_times) * 1000
    print(
        f"decode step  {step:.1f} ms median over {args.steps} "
        f"(transformer {body:.1f} ms, output projection {head:.1f} ms; {1000 / step:.0f} tok/s)"
    )
    print(f"peak memory  {mx.get_peak_memory() / 2**20:.1f} MiB after decoding")


if __name__ == "__main__":
    main()
