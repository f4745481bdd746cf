#!/usr/bin/env bash
# e2e-kind.sh (`make e2e`): the real-cluster end-to-end test, for users' CI with a Docker engine.
#
#   NOT RUN HERE, NOR BY THIS PROJECT'S CI. The development and CI machines have no Docker
#   engine, and kind needs one, so this script has never been run by the project; it is not
#   counted as a passing test anywhere. The offline layers (scripts/chart-check.sh and the
#   operator's cargo tests) are what `make test` runs.
#
# What it does, on a machine with docker, kind, kubectl, helm and curl:
#   1. creates a kind cluster ($CLUSTER_NAME);
#   2. builds the image from the repository's Dockerfile as highpress:<appVersion> and loads it
#      into the cluster (the chart's and the CounterCluster's default image, so no overrides);
#   3. `helm install`s charts/highpress into highpress-system and waits for the operator;
#   4. applies deploy/examples/countercluster-minimal.yaml (CounterCluster `likes` in `apps`) and
#      waits for its Ready condition;
#   5. runs a smoke load through `kubectl port-forward` to the gateway: $INCREMENTS increments
#      of +1 on a fresh counter, $PARALLEL at a time, then reads the counter back. It passes
#      only if every increment was acknowledged (HTTP 200) and the counter reads exactly the
#      number acknowledged (the consistency check);
#   6. tears everything down on exit (the trap), unless KEEP_CLUSTER=1.
#
# Usage: scripts/e2e-kind.sh
# Environment: CLUSTER_NAME (highpress-e2e), INCREMENTS (200), PARALLEL (8),
#              LOCAL_PORT (18080), READY_TIMEOUT (10m), KEEP_CLUSTER (0).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${HIGHPRESS_TOOLS_DIR:-$HOME/.cache/highpress-tools}/bin:$PATH"

CLUSTER_NAME=${CLUSTER_NAME:-highpress-e2e}
INCREMENTS=${INCREMENTS:-200}
PARALLEL=${PARALLEL:-8}
LOCAL_PORT=${LOCAL_PORT:-18080}
READY_TIMEOUT=${READY_TIMEOUT:-10m}
KEEP_CLUSTER=${KEEP_CLUSTER:-0}
OPERATOR_NAMESPACE=highpress-system
EXAMPLE=deploy/examples/countercluster-minimal.yaml
CC_NAME=likes
CC_NAMESPACE=apps

log() { echo "e2e: $*"; }

for tool in docker kind kubectl helm curl python3; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "e2e: $tool is required (see the header of $0)" >&2
        exit 1
    }
done
docker info >/dev/null 2>&1 || {
    echo "e2e: no Docker engine answers; kind cannot run here" >&2
    exit 1
}

APP_VERSION=$(python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["appVersion"])' charts/highpress/Chart.yaml)
IMAGE="highpress:${APP_VERSION}"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/highpress-e2e.XXXXXX")
PORT_FORWARD_PID=""
CONTEXT="kind-${CLUSTER_NAME}"

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local status=$?
    if [ -n "$PORT_FORWARD_PID" ]; then
        kill "$PORT_FORWARD_PID" 2>/dev/null || true
        wait "$PORT_FORWARD_PID" 2>/dev/null || true
    fi
    if [ "$status" -ne 0 ] && kubectl --context "$CONTEXT" version >/dev/null 2>&1; then
        log "failed; state of the cluster:"
        kubectl --context "$CONTEXT" get pods -A || true
        kubectl --context "$CONTEXT" -n "$OPERATOR_NAMESPACE" logs deployment/highpress-operator --tail=50 || true
        kubectl --context "$CONTEXT" -n "$CC_NAMESPACE" get cc "$CC_NAME" -o yaml || true
    fi
    if [ "$KEEP_CLUSTER" = 1 ]; then
        log "KEEP_CLUSTER=1: leaving kind cluster $CLUSTER_NAME"
    else
        kind delete cluster --name "$CLUSTER_NAME" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

kc() { kubectl --context "$CONTEXT" "$@"; }

log "1/6 kind cluster $CLUSTER_NAME"
kind create cluster --name "$CLUSTER_NAME" --wait 180s

log "2/6 build and load $IMAGE"
docker build -t "$IMAGE" --build-arg "VERSION=$APP_VERSION" .
kind load docker-image "$IMAGE" --name "$CLUSTER_NAME"

log "3/6 helm install"
helm install highpress charts/highpress --kube-context "$CONTEXT" \
    --namespace "$OPERATOR_NAMESPACE" --create-namespace --wait --timeout 5m

log "4/6 apply $EXAMPLE and wait for Ready"
kc create namespace "$CC_NAMESPACE"
kc apply -f "$EXAMPLE"
kc -n "$CC_NAMESPACE" wait --for=condition=Ready "countercluster/$CC_NAME" --timeout="$READY_TIMEOUT"
kc -n "$CC_NAMESPACE" get cc

log "5/6 smoke load through a port-forward"
kc -n "$CC_NAMESPACE" port-forward "svc/${CC_NAME}-gateway" "${LOCAL_PORT}:8080" >"$WORK/port-forward.log" 2>&1 &
PORT_FORWARD_PID=$!
BASE="http://127.0.0.1:${LOCAL_PORT}"
for _ in $(seq 1 60); do
    curl -fsS "$BASE/readyz" >/dev/null 2>&1 && break
    sleep 1
done
curl -fsS "$BASE/readyz" >/dev/null

RESOURCE="e2e-$(date +%s)-$$"
export BASE RESOURCE
# One line per increment: its HTTP status code.
# shellcheck disable=SC2016  # $BASE, $RESOURCE and $1 are expanded by the inner sh
seq 1 "$INCREMENTS" | xargs -P "$PARALLEL" -I{} sh -c '
    curl -s -o /dev/null -w "%{http_code}\n" -X POST "$BASE/api/v1/counter/increment" \
        -H "Content-Type: application/json" \
        -d "{\"resource_id\":\"$RESOURCE\",\"counter_type\":\"like\",\"user_id\":\"u$1\",\"increment\":1}"
' sh {} >"$WORK/codes.txt"
acknowledged=$(grep -c '^200$' "$WORK/codes.txt" || true)
value=$(curl -fsS "$BASE/api/v1/counter/$RESOURCE/like" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["current_value"])')
log "sent $INCREMENTS, acknowledged $acknowledged, counter reads $value"
if [ "$acknowledged" -ne "$INCREMENTS" ]; then
    log "FAIL: $((INCREMENTS - acknowledged)) increments were not acknowledged:"
    sort "$WORK/codes.txt" | uniq -c
    exit 1
fi
if [ "$value" -ne "$acknowledged" ]; then
    log "FAIL: consistency: the counter reads $value, $acknowledged increments were acknowledged"
    exit 1
fi

log "6/6 PASS: $acknowledged acknowledged increments, counter reads $value; tearing down"
