#!/usr/bin/env bash
# chart-check.sh: every offline check of the packaging: the Helm chart, the generated deploy/
# manifests, the Dockerfile and the packaging scripts. `make test` (and so CI) runs it.
#
#   - helm lint --strict, with the defaults and with every charts/highpress/ci/*-values.yaml;
#   - helm template with each of those; every document checked by
#     scripts/check_rendered_manifests.py (kubernetes-validate --strict for built-in kinds, the
#     CRD schema for CounterCluster, explicit checks for ServiceMonitor/PrometheusRule,
#     restricted Pod Security, probes, resources, no RBAC wildcards);
#   - dashboards/*.json and rules/*.yaml are wrapped (with fixture files in a copy of the chart),
#     and render nothing when there are none;
#   - values.schema.json rejects unknown keys and bad enums, naming them;
#   - NOTES.txt renders the in-cluster API commands;
#   - drift: chart crds/ == deploy/crds/ == `highpress-operator crd`; deploy/operator/install.yaml
#     == a fresh render; Chart.yaml appVersion == the workspace crate version;
#   - hadolint Dockerfile; shellcheck on the packaging scripts; yamllint on the chart's YAML.
#
# Prints `PASS: <check>` or `FAIL: <check>` per check, then `chart-check: N passed, M failed`,
# and exits 1 when any check failed. A missing tool is a failure, never a skip.
# Usage: scripts/chart-check.sh   (after scripts/install-test-deps.sh)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export PATH="${HIGHPRESS_TOOLS_DIR:-$HOME/.cache/highpress-tools}/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/highpress-target}"

CHART=charts/highpress
CRD_NAME=highpress.dev_counterclusters.yaml
RELEASE=highpress
NAMESPACE=highpress-system

WORK=$(mktemp -d "${TMPDIR:-/tmp}/highpress-chart-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

passed=0
failed=0

# check NAME CMD...: runs CMD with its output captured; prints PASS, or FAIL and the output.
check() {
    local name=$1
    shift
    if "$@" >"$WORK/out" 2>&1; then
        passed=$((passed + 1))
        echo "PASS: $name"
        grep -E '^# skipped' "$WORK/out" | sed 's/^/      /'
    else
        failed=$((failed + 1))
        echo "FAIL: $name"
        sed 's/^/      /' "$WORK/out"
    fi
}

# expect_failure NEEDLE CMD...: CMD must fail and its output must contain NEEDLE.
expect_failure() {
    local needle=$1
    shift
    if "$@" >"$WORK/neg" 2>&1; then
        echo "expected a failure, but it succeeded"
        return 1
    fi
    cat "$WORK/neg"
    grep -qF -- "$needle" "$WORK/neg" || {
        echo "the error does not mention '$needle'"
        return 1
    }
}

have_tools() {
    local missing=() tool
    for tool in helm hadolint shellcheck yamllint python3; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    python3 -c 'import kubernetes_validate, jsonschema, yaml' 2>/dev/null || missing+=(kubernetes-validate)
    [ "${#missing[@]}" -eq 0 ] || {
        echo "missing (run scripts/install-test-deps.sh): ${missing[*]}"
        return 1
    }
    helm version --short
}

# render_and_check OUT [helm template args...]
render_and_check() {
    local out=$1
    shift
    helm template "$RELEASE" "$CHART" --namespace "$NAMESPACE" "$@" >"$out" &&
        python3 scripts/check_rendered_manifests.py --crd "deploy/crds/$CRD_NAME" "$out"
}

app_version_matches_crate() {
    local chart crate
    chart=$(python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["appVersion"])' "$CHART/Chart.yaml")
    crate=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["workspace"]["package"]["version"])' Cargo.toml)
    echo "Chart.yaml appVersion $chart, Cargo.toml [workspace.package] version $crate"
    [ "$chart" = "$crate" ]
}

crds_match() {
    cargo run -q -p highpress-operator -- crd >"$WORK/crd.yaml" || return 1
    cmp "deploy/crds/$CRD_NAME" "$CHART/crds/$CRD_NAME" || {
        echo "$CHART/crds/$CRD_NAME differs from deploy/crds/$CRD_NAME: run make crds"
        return 1
    }
    cmp "$WORK/crd.yaml" "deploy/crds/$CRD_NAME" || {
        echo "deploy/crds/$CRD_NAME differs from \`highpress-operator crd\`: run make crds"
        return 1
    }
}

install_manifest_matches() {
    bash scripts/render-install-manifest.sh >"$WORK/install.yaml" || return 1
    diff -u deploy/operator/install.yaml "$WORK/install.yaml" || {
        echo "deploy/operator/install.yaml is stale: run make manifests"
        return 1
    }
}

# A copy of the chart with one fixture dashboard and one fixture rule file: both are wrapped,
# the ConfigMap carries the file verbatim, the PrometheusRule carries every group.
files_are_wrapped() {
    local chart="$WORK/files-chart"
    rm -rf "$chart"
    cp -r "$CHART" "$chart"
    rm -rf "$chart/dashboards" "$chart/rules"
    mkdir -p "$chart/dashboards" "$chart/rules"
    printf '{\n  "title": "Fixture Board",\n  "uid": "fixture",\n  "panels": []\n}\n' >"$chart/dashboards/Fixture Board.json"
    cat >"$chart/rules/fixture.yaml" <<'RULES'
groups:
  - name: fixture-a
    rules:
      - alert: FixtureDown
        expr: up{job="fixture"} == 0
        for: 5m
        labels: {severity: critical}
        annotations: {summary: "fixture is down"}
  - name: fixture-b
    rules:
      - record: fixture:requests:rate5m
        expr: sum(rate(http_requests_total[5m]))
RULES
    helm template "$RELEASE" "$chart" --namespace "$NAMESPACE" -f "$CHART/ci/all-features-values.yaml" >"$WORK/files.yaml" || return 1
    python3 scripts/check_rendered_manifests.py --crd "deploy/crds/$CRD_NAME" "$WORK/files.yaml" || return 1
    python3 - "$WORK/files.yaml" "$chart" <<'PY'
import sys, pathlib, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
chart = pathlib.Path(sys.argv[2])
boards = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["labels"].get("grafana_dashboard") == "1"]
assert len(boards) == 1, f"expected 1 dashboard ConfigMap, got {len(boards)}"
cm = boards[0]
assert cm["metadata"]["name"] == "highpress-dashboard-fixture-board", cm["metadata"]["name"]
assert cm["metadata"]["namespace"] == "monitoring", cm["metadata"]["namespace"]
assert cm["metadata"]["annotations"] == {"grafana_folder": "highpress"}, cm["metadata"]
want = (chart / "dashboards" / "Fixture Board.json").read_text()
assert cm["data"]["Fixture Board.json"] == want.rstrip("\n"), "dashboard content differs"
rules = [d for d in docs if d["kind"] == "PrometheusRule"]
assert len(rules) == 1, f"expected 1 PrometheusRule, got {len(rules)}"
want_groups = yaml.safe_load((chart / "rules" / "fixture.yaml").read_text())["groups"]
assert rules[0]["spec"]["groups"] == want_groups, rules[0]["spec"]["groups"]
assert rules[0]["metadata"]["labels"]["release"] == "kube-prometheus-stack"
print("dashboard ConfigMap and PrometheusRule carry the fixture files")
PY
}

# With no dashboards/ or rules/ files, enabling both renders neither object and does not fail.
no_files_render_nothing() {
    local chart="$WORK/empty-chart"
    rm -rf "$chart"
    cp -r "$CHART" "$chart"
    rm -rf "$chart/dashboards" "$chart/rules"
    helm template "$RELEASE" "$chart" --namespace "$NAMESPACE" \
        --set dashboards.enabled=true --set prometheusRule.enabled=true >"$WORK/empty.yaml" || return 1
    if grep -E 'kind: PrometheusRule|grafana_dashboard' "$WORK/empty.yaml"; then
        echo "rendered a dashboard or rule object without files"
        return 1
    fi
}

# A rules file without top-level `groups:` fails the render, naming the file.
bad_rules_file_fails() {
    local chart="$WORK/bad-rules-chart"
    rm -rf "$chart"
    cp -r "$CHART" "$chart"
    mkdir -p "$chart/rules"
    printf 'rules:\n  - alert: X\n    expr: up == 0\n' >"$chart/rules/zz-broken.yaml"
    expect_failure "rules/zz-broken.yaml" helm template "$RELEASE" "$chart" --set prometheusRule.enabled=true
}

# Guards against a checker that accepts everything: a root, privileged, probe-less workload,
# a wildcard ClusterRole and a CounterCluster with an unknown field must each be rejected.
checker_rejects_bad_objects() {
    cat >"$WORK/bad.yaml" <<'BAD'
apiVersion: apps/v1
kind: Deployment
metadata: {name: bad, namespace: x}
spec:
  selector: {matchLabels: {app: bad}}
  template:
    metadata: {labels: {app: bad}}
    spec:
      containers:
        - name: c
          image: busybox
          securityContext: {privileged: true, runAsUser: 0}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: bad}
rules:
  - apiGroups: ["*"]
    resources: ["pods"]
    verbs: ["watch", "get"]
---
apiVersion: highpress.dev/v1alpha1
kind: CounterCluster
metadata: {name: bad, namespace: x}
spec: {gateway: {replicaz: 2}}
BAD
    python3 scripts/check_rendered_manifests.py --crd "deploy/crds/$CRD_NAME" "$WORK/bad.yaml" >"$WORK/bad.out" 2>&1
    local status=$?
    cat "$WORK/bad.out"
    [ "$status" -ne 0 ] || return 1
    local want
    for want in "not ok - Deployment x/bad meets the restricted" \
        "not ok - Deployment x/bad has probes and resources" \
        "not ok - ClusterRole bad has no wildcards" \
        "not ok - CounterCluster x/bad validates against the CRD"; do
        grep -qF -- "$want" "$WORK/bad.out" || {
            echo "missing: $want"
            return 1
        }
    done
}

notes_render() {
    local notes
    notes=$(helm install "$RELEASE" "$CHART" --namespace "$NAMESPACE" --dry-run=client) || return 1
    local want
    for want in \
        "kubectl apply -f deploy/examples/countercluster-minimal.yaml" \
        "get cc" \
        "http://likes-gateway.apps.svc:8080/api/v1/counter/increment" \
        "http://likes-gateway.apps.svc:8080/api/v1/counter/article_1/like" \
        '"resource_id":"article_1","counter_type":"like","user_id":"u1","increment":1'; do
        grep -qF -- "$want" <<<"$notes" || {
            echo "NOTES.txt lacks: $want"
            echo "$notes"
            return 1
        }
    done
}

check "tools present (helm, hadolint, shellcheck, yamllint, kubernetes-validate)" have_tools
check "Chart.yaml appVersion equals the workspace crate version" app_version_matches_crate
check "helm lint --strict $CHART (defaults)" helm lint --strict "$CHART"
for values in "$CHART"/ci/*-values.yaml; do
    check "helm lint --strict $CHART -f $values" helm lint --strict "$CHART" -f "$values"
done
check "helm template (defaults): every document passes check_rendered_manifests.py" \
    render_and_check "$WORK/default.yaml"
for values in "$CHART"/ci/*-values.yaml; do
    check "helm template -f $values: every document passes check_rendered_manifests.py" \
        render_and_check "$WORK/$(basename "$values")" -f "$values"
done
check "deploy/operator/install.yaml passes check_rendered_manifests.py" \
    python3 scripts/check_rendered_manifests.py --crd "deploy/crds/$CRD_NAME" deploy/operator/install.yaml
check "check_rendered_manifests.py rejects a non-restricted workload, a wildcard role, a bad CounterCluster" \
    checker_rejects_bad_objects
check "dashboards/*.json become grafana_dashboard ConfigMaps and rules/*.yaml one PrometheusRule" files_are_wrapped
check "with no dashboards/ or rules/ files, both features render nothing" no_files_render_nothing
check "a rules file without top-level groups fails the render, naming the file" bad_rules_file_fails
check "values.schema.json rejects an unknown top-level key (--set bogusKey=1)" \
    expect_failure "bogusKey" helm template "$RELEASE" "$CHART" --set bogusKey=1
check "values.schema.json rejects an unknown nested key (--set image.tagg=x)" \
    expect_failure "tagg" helm template "$RELEASE" "$CHART" --set image.tagg=x
check "values.schema.json rejects a bad enum (--set logLevel=loud)" \
    expect_failure "logLevel" helm template "$RELEASE" "$CHART" --set logLevel=loud
check "replicaCount 2 without leader election fails the render" \
    expect_failure "leaderElection" helm template "$RELEASE" "$CHART" --set replicaCount=2 --set leaderElection.enabled=false
check "NOTES.txt shows kubectl apply, get cc and the in-cluster API calls" notes_render
check "CRD: $CHART/crds/ == deploy/crds/ == highpress-operator crd" crds_match
check "deploy/operator/install.yaml equals a fresh render (make manifests)" install_manifest_matches
check "hadolint Dockerfile" hadolint Dockerfile
check "shellcheck packaging scripts" shellcheck -x scripts/chart-check.sh scripts/render-install-manifest.sh \
    scripts/image-build-check.sh scripts/e2e-kind.sh scripts/install-test-deps.sh
check "yamllint chart values, ci values, Chart.yaml and deploy/operator/install.yaml" \
    yamllint -d relaxed --no-warnings "$CHART/Chart.yaml" "$CHART/values.yaml" "$CHART/ci/" deploy/operator/install.yaml

echo "chart-check: ${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
