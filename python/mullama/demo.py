"""`python -m mullama.demo "prompt"`: stream one chat reply from the default model."""

from __future__ import annotations

import sys

from mullama import Context, Model, MullamaError, StreamConfig


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    prompt = " ".join(args) or "Write a short poem about the sea."
    try:
        model = Model.load()
        ctx = Context(model)
        config = StreamConfig(max_tokens=200, temperature=0.7, seed=0)
        last = None
        for token in ctx.generate_stream(
            messages=[{"role": "user", "content": prompt}], config=config
        ):
            print(token.text, end="", flush=True)
            last = token
        print()
        if last is not None:
            print(
                f"[{last.generation_tokens} tokens, {last.generation_tps:.1f} tok/s, "
                f"first token after {last.time_to_first_token or 0:.2f} s, "
                f"finish: {last.finish_reason}]",
                file=sys.stderr,
            )
    except MullamaError as exc:
        print(f"mullama: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
