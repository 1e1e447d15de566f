#!/usr/bin/env bash
# Sets everything up, then runs every check and test: Rust (fmt, clippy, tests), Python (ruff,
# pytest), Node (the napi addon in release mode, tsc on the typed example, node --test).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$repo/scripts/bootstrap.sh" --test
cd "$repo"

# System packages the tests drive: nginx (the scale-out recipe in docs/scale-out.md).
apt_packages=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || apt_packages+=(nginx-light)
if [ "${#apt_packages[@]}" -gt 0 ]; then
    echo "== apt-get install ${apt_packages[*]}"
    as_root=()
    [ "$(id -u)" = 0 ] || as_root=(sudo)
    "${as_root[@]}" apt-get update -q
    DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -q --no-install-recommends \
        "${apt_packages[@]}"
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -q -- -D warnings
echo "== cargo test"
cargo test --workspace -q
echo "== ruff"
ruff check python tests benchmarks
ruff format --check python tests benchmarks
echo "== pytest"
python -m pytest -q tests
echo "== node (bindings-node)"
(
    cd bindings-node
    npm ci --no-audit --no-fund
    npx napi build --platform --release --js native.js --dts native.d.ts
    npx tsc --noEmit --strict -p test/types
    # The engine worker runs in this checkout's venv.
    MULLAMA_PYTHON="$repo/.venv/bin/python" node --test test/*.test.js
)
