#!/usr/bin/env bash
# Sets everything up, then runs every check and test: Rust (fmt, clippy, tests), Python (ruff,
# pytest, which also builds the docs site with mkdocs --strict), Node (the napi addon in release
# mode, tsc on the typed example, node --test).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$repo/scripts/bootstrap.sh" --test
cd "$repo"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -q -- -D warnings
echo "== cargo test"
cargo test --workspace -q
echo "== ruff"
ruff check python tests benchmarks scripts
ruff format --check python tests benchmarks scripts
echo "== pytest"
# Includes the docs site: tests/test_docs_site.py runs `mkdocs build --strict` (mkdocs.yml).
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
