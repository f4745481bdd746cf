#!/usr/bin/env bash
# control-plane.sh: a real Kubernetes control plane on loopback, for the operator's end-to-end
# suite and for a person with kubectl.
#
#   scripts/control-plane.sh up DIR     start it; DIR/kubeconfig is an admin kubeconfig
#   scripts/control-plane.sh down DIR   stop everything `up DIR` started and delete DIR
#
# `up` starts, with certificates it generates into DIR/pki and free loopback ports:
#   etcd; kube-apiserver (RBAC, the default admission plugins, service-account tokens);
#   kube-controller-manager (every default controller: ReplicaSet, StatefulSet, garbage
#   collector, service accounts, PV binder, node lifecycle ...); kube-scheduler; and kwok,
#   which plays the kubelets of $HIGHPRESS_CLUSTER_NODES (default 3) fake Nodes: their pods
#   become Running and Ready, but no container runs. It also creates a default StorageClass
#   `standard` and a `fast-ssd` one, each with statically provisioned PersistentVolumes, so
#   PVCs bind. It returns once every Node is Ready, leaving the processes running; their pids
#   are in DIR/pids and their logs in DIR/logs/.
#
# When HIGHPRESS_CLUSTER_OWNER_PID is set, a watchdog runs `down DIR` as soon as that process
# exits, so a test that dies without cleaning up still leaves nothing running.
#
# The binaries come from scripts/build-control-plane.sh ($HIGHPRESS_TOOLS_DIR/bin).
set -euo pipefail

usage() {
    echo "usage: $0 up|down DIR" >&2
    exit 2
}
[ $# -eq 2 ] || usage
action=$1
dir=$2
tools=${HIGHPRESS_TOOLS_DIR:-$HOME/.cache/highpress-tools}
bin=$tools/bin
stages=$tools/share/kwok-stages

# stop_all DIR: TERM every recorded process, newest first; KILL what is left after 10 s.
stop_all() {
    local d=$1 pid _
    [ -f "$d/pids" ] || return 0
    local pids
    pids=$(tac "$d/pids")
    for pid in $pids; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for _ in $(seq 1 100); do
        local alive=0
        for pid in $pids; do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        [ "$alive" -eq 0 ] && break
        sleep 0.1
    done
    for pid in $pids; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -f "$d/pids"
}

if [ "$action" = down ]; then
    # The watchdog itself ends in `down`: it must not kill itself.
    if [ -f "$dir/watchdog.pid" ] && [ "$(cat "$dir/watchdog.pid")" != "$$" ]; then
        kill -TERM "$(cat "$dir/watchdog.pid")" 2>/dev/null || true
    fi
    stop_all "$dir"
    rm -rf "$dir"
    exit 0
fi
[ "$action" = up ] || usage

for tool in etcd kube-apiserver kube-controller-manager kube-scheduler kwok kubectl; do
    [ -x "$bin/$tool" ] || {
        echo "control-plane: $bin/$tool is missing; run scripts/install-test-deps.sh" >&2
        exit 1
    }
done
if [ -f "$dir/pids" ]; then
    echo "control-plane: $dir already holds a running control plane (run: $0 down $dir)" >&2
    exit 1
fi
mkdir -p "$dir/pki" "$dir/logs" "$dir/etcd"
dir=$(cd "$dir" && pwd)
pki=$dir/pki
export PATH="$bin:$PATH"

# A failed `up` leaves nothing running.
# shellcheck disable=SC2317  # invoked by the EXIT trap
on_exit() {
    local status=$?
    if [ "$status" -ne 0 ]; then
        echo "control-plane: up failed; logs in $dir/logs" >&2
        stop_all "$dir"
    fi
}
trap on_exit EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start NAME COMMAND...: run COMMAND in its own session, logging to DIR/logs/NAME.log.
start() {
    local name=$1
    shift
    setsid "$@" >"$dir/logs/$name.log" 2>&1 </dev/null &
    echo $! >>"$dir/pids"
}

# wait_for WHAT SECONDS COMMAND...: until COMMAND succeeds.
wait_for() {
    local what=$1 seconds=$2 _
    shift 2
    for _ in $(seq 1 $((seconds * 5))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "control-plane: $what not ready within ${seconds}s" >&2
    return 1
}

# --- certificates -------------------------------------------------------------------------------
# cert NAME SUBJECT [SAN]: a key and a certificate signed by the test CA.
cert() {
    local name=$1 subject=$2 san=${3:-}
    openssl ecparam -name prime256v1 -genkey -noout -out "$pki/$name.key" 2>/dev/null
    openssl req -new -key "$pki/$name.key" -subj "$subject" -out "$pki/$name.csr" 2>/dev/null
    local ext=$pki/$name.ext
    {
        echo "basicConstraints=CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        if [ -n "$san" ]; then
            echo "extendedKeyUsage=serverAuth"
            echo "subjectAltName=$san"
        else
            echo "extendedKeyUsage=clientAuth"
        fi
    } >"$ext"
    openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
        -CAcreateserial -days 30 -sha256 -extfile "$ext" -out "$pki/$name.crt" 2>/dev/null
    rm -f "$pki/$name.csr" "$ext"
}
openssl ecparam -name prime256v1 -genkey -noout -out "$pki/ca.key" 2>/dev/null
openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=highpress-test-ca" -days 30 -sha256 \
    -out "$pki/ca.crt" 2>/dev/null
cert apiserver "/CN=kube-apiserver" \
    "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
cert admin "/O=system:masters/CN=highpress-test-admin"
cert controller-manager "/CN=system:kube-controller-manager"
cert scheduler "/CN=system:kube-scheduler"
openssl genrsa -out "$pki/service-account.key" 2048 2>/dev/null
openssl rsa -in "$pki/service-account.key" -pubout -out "$pki/service-account.pub" 2>/dev/null

etcd_port=$(free_port)
etcd_peer_port=$(free_port)
api_port=$(free_port)
controller_manager_port=$(free_port)
scheduler_port=$(free_port)
kwok_port=$(free_port)
server=https://127.0.0.1:$api_port

# kubeconfig NAME: DIR/NAME.kubeconfig for the client certificate NAME (admin: DIR/kubeconfig).
kubeconfig() {
    local name=$1 file=$dir/$1.kubeconfig
    [ "$name" = admin ] && file=$dir/kubeconfig
    cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: highpress-test
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 "$pki/$name.crt")
    client-key-data: $(base64 -w0 "$pki/$name.key")
contexts:
- name: highpress-test
  context: {cluster: highpress-test, user: $name}
current-context: highpress-test
EOF
    chmod 600 "$file"
}
kubeconfig admin
kubeconfig controller-manager
kubeconfig scheduler

# --- etcd, kube-apiserver ---------------------------------------------------------------------
start etcd etcd --name default --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "default=http://127.0.0.1:$etcd_peer_port" \
    --listen-metrics-urls "" --unsafe-no-fsync --log-level warn
wait_for etcd 30 curl -sf "http://127.0.0.1:$etcd_port/health"

start kube-apiserver kube-apiserver \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/service-account.pub" \
    --service-account-signing-key-file "$pki/service-account.key" \
    --service-cluster-ip-range 10.96.0.0/16 \
    --allow-privileged=true --profiling=false
wait_for kube-apiserver 90 curl -sf --cacert "$pki/ca.crt" --cert "$pki/admin.crt" \
    --key "$pki/admin.key" "$server/readyz"

# --- kube-controller-manager, kube-scheduler --------------------------------------------------
start kube-controller-manager kube-controller-manager \
    --kubeconfig "$dir/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$dir/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$dir/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$controller_manager_port" \
    --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file "$pki/service-account.key" \
    --root-ca-file "$pki/ca.crt" --cluster-name highpress-test
start kube-scheduler kube-scheduler \
    --kubeconfig "$dir/scheduler.kubeconfig" \
    --authentication-kubeconfig "$dir/scheduler.kubeconfig" \
    --authorization-kubeconfig "$dir/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$scheduler_port" --leader-elect=false

# --- kwok and its fake Nodes --------------------------------------------------------------------
stage_args=()
for stage in "$stages"/*.yaml; do
    stage_args+=(--config "$stage")
done
start kwok kwok --kubeconfig "$dir/kubeconfig" --manage-all-nodes=true \
    --node-lease-duration-seconds 40 --server-address "127.0.0.1:$kwok_port" \
    --node-ip 127.0.0.1 --cidr 10.244.0.0/16 "${stage_args[@]}"

export KUBECONFIG=$dir/kubeconfig
nodes=${HIGHPRESS_CLUSTER_NODES:-3}
{
    for i in $(seq 0 $((nodes - 1))); do
        cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/os: linux
    kubernetes.io/hostname: kwok-node-$i
    topology.kubernetes.io/zone: zone-$((i % 3))
    type: kwok
status:
  allocatable: {cpu: "32", memory: 128Gi, pods: "110"}
  capacity: {cpu: "32", memory: 128Gi, pods: "110"}
EOF
    done
    # Storage: no provisioner runs here, so each class has statically provisioned volumes,
    # which the PV controller binds to claims at once (Immediate).
    for class in standard fast-ssd; do
        default=false
        [ "$class" = standard ] && default=true
        cat <<EOF
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: $class
  annotations: {storageclass.kubernetes.io/is-default-class: "$default"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: Immediate
reclaimPolicy: Retain
EOF
        for i in $(seq 0 15); do
            cat <<EOF
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: $class-$i
spec:
  storageClassName: $class
  capacity: {storage: 100Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: /var/lib/highpress-test/$class-$i}
EOF
        done
    done
} >"$dir/bootstrap.yaml"
wait_for "the default ServiceAccount" 60 kubectl -n default get serviceaccount default
kubectl apply -f "$dir/bootstrap.yaml" >/dev/null
kubectl wait --for=condition=Ready node --all --timeout=60s >/dev/null

cat >"$dir/env" <<EOF
KUBECONFIG=$dir/kubeconfig
KUBE_APISERVER=$server
ETCD_ENDPOINT=http://127.0.0.1:$etcd_port
EOF

if [ -n "${HIGHPRESS_CLUSTER_OWNER_PID:-}" ]; then
    owner=$HIGHPRESS_CLUSTER_OWNER_PID
    script=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
    # shellcheck disable=SC2016  # the script's positional parameters, expanded by the inner bash
    setsid bash -c 'while kill -0 "$1" 2>/dev/null && [ -d "$3" ]; do sleep 1; done; exec bash "$2" down "$3"' \
        watchdog "$owner" "$script" "$dir" >/dev/null 2>&1 </dev/null &
    echo $! >"$dir/watchdog.pid"
fi
echo "control-plane: up in $SECONDS s; export KUBECONFIG=$dir/kubeconfig"
