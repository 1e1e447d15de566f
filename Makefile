# Developer shortcuts. The README's two commands (scripts/run.sh, scripts/test.sh) stay the
# entry points on a fresh machine; these targets assume `make setup` (or either script) ran.
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help
help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

.PHONY: setup
setup: ## Create .venv with everything the tests need, build the extension (release)
	bash scripts/bootstrap.sh --test

.PHONY: dev
dev: ## Rebuild the extension after Rust changes (release, editable install)
	$(VENV)/bin/maturin develop -q --release --extras test

.PHONY: test
test: ## Every check and test, as CI runs them (bootstraps first)
	bash scripts/test.sh

.PHONY: test-fast
test-fast: dev ## Rust and Python tests without the bootstrap and without slow tests
	cargo test --workspace -q
	$(PY) -m pytest -q -m "not slow" tests

.PHONY: test-node
test-node: ## Build the Node addon (release) and run its typecheck and node --test suite
	cd bindings-node && npm ci --no-audit --no-fund && npx napi build --platform --release --js native.js --dts native.d.ts
	cd bindings-node && npx tsc --noEmit --strict -p test/types
	cd bindings-node && MULLAMA_PYTHON=$(CURDIR)/$(PY) node --test test/*.test.js

.PHONY: lint
lint: ## cargo fmt --check, clippy -D warnings, ruff
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -q -- -D warnings
	$(VENV)/bin/ruff check python tests benchmarks scripts
	$(VENV)/bin/ruff format --check python tests benchmarks scripts

.PHONY: fmt
fmt: ## Format Rust and Python
	cargo fmt --all
	$(VENV)/bin/ruff format python tests benchmarks scripts
	$(VENV)/bin/ruff check --fix -q python tests benchmarks scripts

.PHONY: docs
docs: ## Build the docs site into site/ (mkdocs build --strict; `$(VENV)/bin/mkdocs serve` previews)
	$(VENV)/bin/mkdocs build --strict

.PHONY: bench
bench: ## Benchmarks (ratios printed as tables; see benchmarks/README.md)
	cargo bench -p mullama-core --bench core_stream
	for script in benchmarks/bench_*.py; do $(PY) $$script || exit 1; done
	node benchmarks/bench_node_stream.js
	MULLAMA_PYTHON=$(CURDIR)/$(PY) node benchmarks/bench_node_e2e.js
