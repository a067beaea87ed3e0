# The front door: users, CI and the docs use only these targets.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
TESTENV := tests/testenv/testenv.sh

.PHONY: help build crds lint fmt testenv testenv-down test test-mcp chaos loadtest-router

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

build: ## Build the mcp-operator binary
	$(CARGO) build --release --bin mcp-operator

crds: ## Regenerate manifests/base/crds/ and docs/crds.md from the Rust types
	$(CARGO) run --quiet --bin mcp-operator -- crds --out-dir manifests/base/crds
	$(CARGO) run --quiet --bin mcp-operator -- crds --reference > docs/crds.md

fmt: ## Format the Rust and Go code
	$(CARGO) fmt --all
	gofmt -w tests/testenv

lint: ## cargo fmt --check, clippy with warnings denied, gofmt
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@unformatted=$$(gofmt -l tests/testenv); if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted" >&2; exit 1; fi

testenv: ## Start the control plane and Redis; prints lines to eval
	@$(TESTENV) up

testenv-down: ## Stop the control plane and Redis and remove their state
	@$(TESTENV) down

test: lint ## Everything: unit tests, integration tests and real MCP clients against the testenv
	$(TESTENV) run -- bash -c '$(CARGO) test --workspace --all-targets && tests/mcp/run.sh'

test-mcp: ## Real MCP clients (Python SDK, official conformance suite) against a router
	$(TESTENV) run -- tests/mcp/run.sh

chaos: ## Failover benchmark (kill -9 and SIGTERM of shard holders); writes docs/benchmarks.md
	$(CARGO) build --release -p mcp-operator -p mcp-operator-chaos
	$(TESTENV) run -- $(CARGO) run --release --quiet -p mcp-operator-chaos --bin failover -- \
		$${CARGO_TARGET_DIR:-target}/release/mcp-operator docs/benchmarks.md

loadtest-router: ## tools/call through the router vs directly, and router RSS; writes docs/benchmarks.md
	$(CARGO) build --release -p mcp-operator -p mcp-operator-loadtest-router
	$(TESTENV) run -- $${CARGO_TARGET_DIR:-target}/release/router-bench \
		--binary $${CARGO_TARGET_DIR:-target}/release/mcp-operator --report docs/benchmarks.md
