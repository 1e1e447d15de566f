#!/usr/bin/env bash
# Sets everything up, then runs every check and test: Rust (fmt, clippy, tests), Python (ruff,
# pytest, which also builds the docs site with mkdocs --strict and drives the chat page in
# headless chromium), Node (the napi addon in release mode, tsc on the typed example,
# node --test).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$repo/scripts/bootstrap.sh" --test
cd "$repo"

# System packages the tests drive: nginx (the scale-out recipe, docs/scale-out.md) and
# Debian's chromium (the chat page's browser tests, driven by playwright-core from
# tests/browser/: its lockfile, no browser download).
apt_packages=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || apt_packages+=(nginx-light)
[ -x /usr/bin/chromium ] || apt_packages+=(chromium)
if [ "${#apt_packages[@]}" -gt 0 ]; then
    if command -v apt-get >/dev/null 2>&1; then
        echo "== apt-get install ${apt_packages[*]}"
        as_root=()
        [ "$(id -u)" = 0 ] || as_root=(sudo)
        "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
        "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            "${apt_packages[@]}"
    else
        echo "note: no apt-get for ${apt_packages[*]}: the tests that need them will skip" >&2
    fi
fi
# npm ci only when node_modules does not hold exactly what the lockfile names.
if ! (cd tests/browser && node -e '
    const fs = require("fs");
    const { packages } = JSON.parse(fs.readFileSync("package-lock.json", "utf8"));
    for (const [path, { version }] of Object.entries(packages)) {
        if (path && JSON.parse(fs.readFileSync(path + "/package.json", "utf8")).version !== version)
            process.exit(1);
    }' 2>/dev/null); then
    echo "== npm ci (tests/browser)"
    (cd tests/browser && npm ci --no-audit --no-fund)
fi

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
