# highpress developer commands. `make run` starts standalone on the embedded store (port 8080);
# `make test` installs what the tests need, then lints and runs every test against real Redis.

export CARGO_TARGET_DIR ?= $(HOME)/.cache/highpress-target
CARGO ?= cargo
BIN := $(CARGO_TARGET_DIR)/release/highpress

.PHONY: run test deps lint fmt unit build-release bench load-test load-test-split crds clean

run: ## Run highpress standalone on the embedded memory store at :8080
	$(CARGO) run --release -p highpress --bin highpress -- standalone

deps: ## Install the test tools (redis-server, hey, wrk, webdis, shellcheck, yamllint)
	bash scripts/install-test-deps.sh

lint: deps ## rustfmt, clippy -D warnings, shellcheck, yamllint
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	shellcheck scripts/*.sh .ci/run
	yamllint -d relaxed --no-warnings configs/

unit: ## Unit tests only (no external processes)
	$(CARGO) test --workspace --lib

test: deps lint ## Everything CI runs: lint, unit, property, integration and fault tests
	$(CARGO) test --workspace

fmt:
	$(CARGO) fmt --all

build-release:
	$(CARGO) build --release -p highpress --bin highpress --examples

bench: deps build-release ## Side-by-side peer benchmark, standalone and split (PERFORMANCE.md); writes target/bench/bench.json
	bash scripts/bench.sh

load-test: deps build-release ## The original's five hey levels against a fresh standalone on Redis
	bash scripts/load_test.sh --start --redis

load-test-split: deps build-release ## The same against a gateway in front of one counter
	bash scripts/load_test.sh --start --redis --topology split

crds: ## Regenerate deploy/crds/ from the operator's types (a test fails when they drift)
	$(CARGO) run -q -p highpress-operator -- crd > deploy/crds/highpress.dev_counterclusters.yaml

clean:
	$(CARGO) clean
