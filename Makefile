# highpress developer commands. `make run` starts standalone on the embedded store (port 8080);
# `make test` installs what the tests need, then lints and runs every test against real Redis.

export CARGO_TARGET_DIR ?= $(HOME)/.cache/highpress-target
CARGO ?= cargo
BIN := $(CARGO_TARGET_DIR)/release/highpress
# helm and kubectl: installed by scripts/install-test-deps.sh into a cache dir, first on PATH.
HIGHPRESS_TOOLS_DIR ?= $(HOME)/.cache/highpress-tools
export PATH := $(HIGHPRESS_TOOLS_DIR)/bin:$(PATH)
CHART := charts/highpress
APP_VERSION := $(shell sed -n 's/^appVersion: *"\(.*\)"/\1/p' $(CHART)/Chart.yaml)
IMAGE ?= highpress:$(APP_VERSION)

.PHONY: run test deps lint fmt unit build-release bench load-test load-test-split crds clean \
	manifests chart-lint chart-check image image-build-check e2e cluster-up cluster-down

run: ## Run highpress standalone on the embedded memory store at :8080
	$(CARGO) run --release -p highpress --bin highpress -- standalone

deps: ## Install the test tools (redis-server, hey, wrk, webdis, shellcheck, yamllint, helm, hadolint, Apache Kafka; a Kubernetes control plane and kubectl built from Go modules)
	bash scripts/install-test-deps.sh

lint: deps ## rustfmt, clippy -D warnings, shellcheck, yamllint
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	shellcheck scripts/*.sh .ci/run
	shellcheck -s sh operator/src/reconcile/build/scripts/*.sh
	shellcheck -x bench/bench.sh
	yamllint -d relaxed --no-warnings configs/

unit: ## Unit tests only (no external processes)
	$(CARGO) test --workspace --lib

# scripts/no-leftovers.sh fails the run when a process a test started outlives it (and kills it).
test: deps lint ## Everything CI runs: lint, the benchmark's unit tests, unit, property, integration and fault tests, chart and image checks
	PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s bench/tests -t bench
	bash scripts/no-leftovers.sh $(CARGO) test --workspace
	bash scripts/no-leftovers.sh bash scripts/chart-check.sh
	bash scripts/image-build-check.sh

fmt:
	$(CARGO) fmt --all

build-release:
	$(CARGO) build --release -p highpress --bin highpress

bench: deps build-release ## Side-by-side peer benchmark, standalone and split (README "Benchmarks", rows P1-P10, H1-H3, E1, U1); writes target/bench/bench.json
	bash bench/bench.sh

load-test: deps build-release ## HighGoPress's five hey levels against a fresh standalone on Redis
	bash scripts/load_test.sh --start --redis

load-test-split: deps build-release ## The same against a gateway in front of one counter
	bash scripts/load_test.sh --start --redis --topology split

crds: ## Regenerate deploy/crds/ and the chart's crds/ from the operator's types (tests fail when they drift)
	$(CARGO) run -q -p highpress-operator -- crd > deploy/crds/highpress.dev_counterclusters.yaml
	cp deploy/crds/highpress.dev_counterclusters.yaml $(CHART)/crds/highpress.dev_counterclusters.yaml

manifests: ## Regenerate deploy/operator/install.yaml: the chart rendered with defaults, without the CRD
	bash scripts/render-install-manifest.sh > deploy/operator/install.yaml.tmp
	mv deploy/operator/install.yaml.tmp deploy/operator/install.yaml

chart-lint: ## helm lint --strict the chart with its defaults and every ci/*-values.yaml
	helm lint --strict $(CHART)
	for values in $(CHART)/ci/*-values.yaml; do helm lint --strict $(CHART) -f "$$values" || exit 1; done

chart-check: deps ## Every offline chart, manifest and Dockerfile check (part of `make test`)
	bash scripts/chart-check.sh

image: ## Build the image highpress:<appVersion> (NEEDS a Docker engine: not available on the dev/CI machines)
	docker build -t $(IMAGE) --build-arg VERSION=$(APP_VERSION) \
		--build-arg REVISION=$$(git rev-parse HEAD) \
		--build-arg CREATED=$$(date -u +%Y-%m-%dT%H:%M:%SZ) .

image-build-check: ## Run the Dockerfile's exact cargo build here, without Docker (part of `make test`)
	bash scripts/image-build-check.sh

e2e: ## Real-cluster test on kind (NEEDS Docker, kind, kubectl, helm): never run here or by CI
	bash scripts/e2e-kind.sh

# A real control plane on loopback (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kwok with three fake Nodes), for poking at the operator and chart with kubectl and helm.
CLUSTER_DIR ?= $(HOME)/.cache/highpress-cluster

cluster-up: deps ## Start a local Kubernetes control plane (kwok nodes); prints the KUBECONFIG to export
	bash scripts/control-plane.sh up $(CLUSTER_DIR)

cluster-down: ## Stop the control plane that `make cluster-up` started
	bash scripts/control-plane.sh down $(CLUSTER_DIR)

clean:
	$(CARGO) clean
