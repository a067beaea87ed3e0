# The front door: users, CI and the docs use only these targets.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
TESTENV := tests/testenv/testenv.sh
RELEASE = $${CARGO_TARGET_DIR:-target}/release
# Benchmarks run in an environment of their own, started fresh and stopped
# afterwards, so what tests left in a running one cannot skew them.
BENCH_ENV := TESTENV_DIR=$(CURDIR)/.testenv-bench TESTENV_APISERVER_PORT=26443 \
	TESTENV_CONTROLLER_MANAGER_PORT=26446 TESTENV_SCHEDULER_PORT=26447 TESTENV_KWOK_PORT=26448 \
	TESTENV_REDIS_PORT=26379 TESTENV_REDIS_CLUSTER_BASE_PORT=28000
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
IMAGE ?= ghcr.io/kubemcp/mcp-operator:$(VERSION)
IMAGE_ARCHIVE ?= $${CARGO_TARGET_DIR:-target}/image/mcp-operator.oci.tar
# make test's image: the debug binary cargo test builds anyway, stripped.
# A release build costs 20 to 50 minutes on a loaded 2-core machine, which
# the cold CI budget has no room for; the image's layout is the same.
TEST_IMAGE_ARCHIVE ?= $${CARGO_TARGET_DIR:-target}/image/mcp-operator-debug.oci.tar
DEBUG = $${CARGO_TARGET_DIR:-target}/debug

.PHONY: help demo demo-down build image test-image crds docs lint fmt testenv testenv-down test test-unit test-mcp chaos loadtest loadtest-router

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

demo: ## Run the whole system here: the operator from its manifests and the examples as real pods on a real node; a real MCP call; stays up
	@tests/testenv/demo.sh up

demo-down: ## Stop everything make demo started
	@tests/testenv/demo.sh down

build: ## Build the mcp-operator binary
	$(CARGO) build --release --bin mcp-operator

image: ## Build the container image without Docker (buildah), as an OCI archive (IMAGE=name:tag, IMAGE_ARCHIVE=path)
	$(CARGO) build --release --locked --bin mcp-operator
	image/build.sh $(RELEASE)/mcp-operator $(IMAGE) $(IMAGE_ARCHIVE)

test-image: ## The same image from a stripped debug build, for make test's real node (TEST_IMAGE_ARCHIVE=path)
	$(CARGO) build --locked --bin mcp-operator
	mkdir -p $$(dirname $(TEST_IMAGE_ARCHIVE))
	strip -o $(TEST_IMAGE_ARCHIVE).bin $(DEBUG)/mcp-operator
	image/build.sh $(TEST_IMAGE_ARCHIVE).bin $(IMAGE) $(TEST_IMAGE_ARCHIVE)
	rm -f $(TEST_IMAGE_ARCHIVE).bin

crds: ## Regenerate manifests/base/crds/ and docs/crds.md from the Rust types
	$(CARGO) run --quiet --bin mcp-operator -- crds --out-dir manifests/base/crds
	$(CARGO) run --quiet --bin mcp-operator -- crds --reference > docs/crds.md

docs: crds ## Regenerate every generated doc: the CRDs and the flag tables of docs/controller.md and docs/router.md
	$(CARGO) run --quiet --bin mcp-operator -- flags controller --into docs/controller.md
	$(CARGO) run --quiet --bin mcp-operator -- flags router --into docs/router.md

fmt: ## Format the Rust and Go code
	$(CARGO) fmt --all
	gofmt -w tests/testenv

lint: ## cargo fmt --check, clippy with warnings denied, gofmt
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@unformatted=$$(gofmt -l tests/testenv); if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted" >&2; exit 1; fi

testenv: ## Start the control plane, Redis and the real node; prints lines to eval (TESTENV_NODE_IMAGES=archives to import)
	@$(TESTENV) up

testenv-down: ## Stop the real node, the control plane and Redis and remove their state
	@$(TESTENV) down

# The image runs on the testenv's real node (tests/node.rs), imported from
# its archive: it is built first, from the same Cargo target directory.
test: lint test-image ## Everything: unit tests, integration tests, the end-to-end test on a real node, real MCP clients
	TESTENV_NODE_IMAGES=$(TEST_IMAGE_ARCHIVE) $(TESTENV) run -- bash -c '$(CARGO) test --workspace --all-targets && tests/mcp/run.sh'

test-unit: ## Only the pure tests: nothing started, no apiserver, no Redis
	$(CARGO) test --workspace --lib --bins

test-mcp: ## Real MCP clients (Python SDK, official conformance suite) against a router
	$(TESTENV) run -- tests/mcp/run.sh

chaos: ## Failover benchmark and chaos scenarios; writes docs/benchmarks.md and docs/chaos.md
	$(CARGO) build --release -p mcp-operator -p mcp-operator-chaos
	$(BENCH_ENV) $(TESTENV) run -- bash -c '$(RELEASE)/failover $(RELEASE)/mcp-operator docs/benchmarks.md && \
		$(RELEASE)/scenarios --binary $(RELEASE)/mcp-operator --report docs/chaos.md \
		--tools 400 --prompts 80 --resources 80 --servers 40 --namespaces 20 $(CHAOS_FLAGS)'

loadtest: ## Converge 15,000 objects with 1, 2 and 4 replicas, then churn; writes docs/benchmarks.md
	$(CARGO) build --release -p mcp-operator -p mcp-operator-loadtest
	$(BENCH_ENV) $(TESTENV) run -- $(RELEASE)/loadtest --binary $(RELEASE)/mcp-operator --report docs/benchmarks.md $(LOADTEST_FLAGS)

# About 6 minutes once built: 2 connection counts x 4 targets x 3 x 10 s,
# then 3 allocators x 3 x 10 s (ROUTER_BENCH_FLAGS='--allocators false' skips them).
loadtest-router: ## tools/call direct vs nginx vs the router (wrk, 16 and 64 connections), 3 allocators, router RSS; writes docs/benchmarks.md
	loadtest/router/install.sh
	$(CARGO) build --release -p mcp-operator -p mcp-operator-loadtest-router
	$(BENCH_ENV) $(TESTENV) run -- $(RELEASE)/router-bench --binary $(RELEASE)/mcp-operator --report docs/benchmarks.md $(ROUTER_BENCH_FLAGS)
