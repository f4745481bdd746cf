#!/usr/bin/env bash
# build-control-plane.sh: build a real Kubernetes control plane from its Go modules into the tools
# cache, once per machine, for the operator's end-to-end suite (operator/tests/control_plane.rs).
#
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  (k8s.io/kubernetes $KUBE_VERSION)
#   etcd                                                             (go.etcd.io/etcd/server/v3 $ETCD_VERSION)
#   kwok                                                             (sigs.k8s.io/kwok $KWOK_VERSION)
#
# plus kwok's stage files, the Prometheus Operator's CRDs and cert-manager's CRDs (all taken
# from their Go modules) under $HIGHPRESS_TOOLS_DIR/share/. Skipped when the stamp $HIGHPRESS_TOOLS_DIR/bin/.control-plane-version
# names these versions. Called by scripts/install-test-deps.sh; about 8 minutes on 2 cores the
# first time, downloads included.
#
# k8s.io/kubernetes and etcd's server module cannot be `go install`ed: their go.mod files replace
# sibling modules with local paths, and replace directives only apply in the main module. So each
# is built from a small wrapper module, written here into a scratch dir, that requires the module
# and (for Kubernetes) replaces every staging module `k8s.io/<name> v0.0.0` with its published tag.
set -euo pipefail

KUBE_VERSION=v1.36.3
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.8.0
PROMETHEUS_OPERATOR_VERSION=v0.85.0
CERT_MANAGER_VERSION=v1.19.1

HIGHPRESS_TOOLS_DIR=${HIGHPRESS_TOOLS_DIR:-$HOME/.cache/highpress-tools}
bin=$HIGHPRESS_TOOLS_DIR/bin
share=$HIGHPRESS_TOOLS_DIR/share
stamp_file=$bin/.control-plane-version
stamp="kubernetes=$KUBE_VERSION etcd=$ETCD_VERSION kwok=$KWOK_VERSION prometheus-operator=$PROMETHEUS_OPERATOR_VERSION"

command -v go >/dev/null 2>&1 || {
    echo "build-control-plane: go is needed to build the Kubernetes control plane" >&2
    exit 1
}

# module_dir MODULE@VERSION: the module's directory in the Go module cache (downloaded if needed).
module_dir() {
    go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}

# --- cert-manager's CRDs (Certificate, Issuer, ...), with their own stamp: no build, a 4 MB
# module download the first time.
cert_manager_crds=$HIGHPRESS_TOOLS_DIR/share/cert-manager-crds
if [ "$(cat "$cert_manager_crds/.version" 2>/dev/null)" != "$CERT_MANAGER_VERSION" ]; then
    cert_manager_dir=$(module_dir "github.com/cert-manager/cert-manager@$CERT_MANAGER_VERSION")
    rm -rf "$cert_manager_crds"
    mkdir -p "$cert_manager_crds"
    install -m 0644 "$cert_manager_dir"/deploy/crds/cert-manager.io_*.yaml "$cert_manager_crds/"
    echo "$CERT_MANAGER_VERSION" >"$cert_manager_crds/.version"
fi

if [ "$(cat "$stamp_file" 2>/dev/null)" = "$stamp" ]; then
    exit 0
fi

started=$(date +%s)
scratch=$(mktemp -d "${TMPDIR:-/tmp}/highpress-control-plane.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$bin" "$share"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

# --- Kubernetes ------------------------------------------------------------------------------
kube_minor=${KUBE_VERSION#v1.}
kube_minor=${kube_minor%%.*}
staging_version=v0.${KUBE_VERSION#v1.}
kube_dir=$(module_dir "k8s.io/kubernetes@$KUBE_VERSION")
mkdir -p "$scratch/kubernetes"
{
    echo "module highpress.test/kubernetes-build"
    echo
    echo "go 1.26.0"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
        echo "tool k8s.io/kubernetes/cmd/$cmd"
    done
    echo
    # Every `k8s.io/<name> => ./staging/src/k8s.io/<name>` of Kubernetes' go.mod, at its tag.
    sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/src/.*#replace \1 => \1 '"$staging_version"'#p' \
        "$kube_dir/go.mod"
} >"$scratch/kubernetes/go.mod"
# The version every component reports (and helm's kubeVersion checks read); without it they say
# v0.0.0-master.
kube_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    kube_ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$kube_minor"
    kube_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
(
    cd "$scratch/kubernetes"
    go mod tidy
    go build -trimpath -ldflags "$kube_ldflags" -o "$bin/" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
)
echo "build-control-plane: built Kubernetes $KUBE_VERSION ($(($(date +%s) - started)) s so far)"

# --- etcd: the server module's etcdmain, behind the same two-line main as etcd's own ---------
mkdir -p "$scratch/etcd"
cat >"$scratch/etcd/go.mod" <<EOF
module highpress.test/etcd-build

go 1.26.0

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
EOF
cat >"$scratch/etcd/main.go" <<'EOF'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
(
    cd "$scratch/etcd"
    go mod tidy
    go build -trimpath -ldflags "-s -w" -o "$bin/etcd" .
)
echo "build-control-plane: built etcd $ETCD_VERSION ($(($(date +%s) - started)) s so far)"

# --- kwok, and its stage files -----------------------------------------------------------------
GOBIN=$bin go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
kwok_dir=$(module_dir "sigs.k8s.io/kwok@$KWOK_VERSION")
rm -rf "$share/kwok-stages"
mkdir -p "$share/kwok-stages"
for stage in node/fast node/heartbeat-with-lease pod/fast; do
    for file in "$kwok_dir/kustomize/stage/$stage"/*.yaml; do
        case $(basename "$file") in kustomization.yaml) continue ;; esac
        install -m 0644 "$file" "$share/kwok-stages/${stage//\//-}-$(basename "$file")"
    done
done
echo "build-control-plane: built kwok $KWOK_VERSION ($(($(date +%s) - started)) s so far)"

# --- the Prometheus Operator's CRDs (ServiceMonitor, PrometheusRule, ...) ----------------------
prometheus_operator_dir=$(module_dir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")
rm -rf "$share/prometheus-operator-crds"
mkdir -p "$share/prometheus-operator-crds"
install -m 0644 "$prometheus_operator_dir"/example/prometheus-operator-crd/*.yaml "$share/prometheus-operator-crds/"

echo "$stamp" >"$stamp_file"
echo "build-control-plane: $stamp into $bin in $(($(date +%s) - started)) s"
