#!/bin/sh
# Starts one Redis pod of a replicated managed Redis (spec.redis.managed.replicas > 1).
#
# The arguments are redis-server's own (--port or, with TLS, --tls-port, --dir, --appendonly,
# --requirepass, --masterauth). Before starting, the pod asks the sentinels which Redis is the primary, so a
# restarted old primary comes back as a replica of the one the sentinels promoted. When no
# sentinel knows a primary (the first start), pod 0 is the primary and every other pod a
# replica of pod 0.
#
# Environment (set by the operator on the container):
#   POD_NAME        this pod's name, <name>-redis-<ordinal>
#   SELF_HOST       this pod's hostname under the headless Service <name>-redis
#   PRIMARY_ADDR    host:port of pod 0, the primary when no sentinel knows one
#   SENTINEL_ADDRS  host:port of each sentinel, separated by spaces
#   MASTER_NAME     the name the sentinels monitor the primary under
#   REDISCLI_AUTH   the password, which the sentinels require too
#   TLS_DIR         with TLS (security.tls.redis), the mounted certificate: redis-cli trusts
#                   its ca.crt
set -eu

port=6379
previous=
for arg in "$@"; do
    if [ "$previous" = "--port" ] && [ "$arg" != 0 ]; then
        port=$arg
    elif [ "$previous" = "--tls-port" ]; then
        port=$arg
    fi
    previous=$arg
done
tls_flags=
if [ -n "${TLS_DIR:-}" ]; then
    tls_flags="--tls --cacert $TLS_DIR/ca.crt"
fi
self="$SELF_HOST:$port"

primary=
for sentinel in $SENTINEL_ADDRS; do
    # shellcheck disable=SC2086 # tls_flags is empty or two flags and a path
    reply=$(timeout 3 redis-cli $tls_flags --no-auth-warning --raw -h "${sentinel%:*}" -p "${sentinel##*:}" \
        SENTINEL get-master-addr-by-name "$MASTER_NAME" 2>/dev/null) || continue
    host=$(printf '%s\n' "$reply" | sed -n 1p)
    host_port=$(printf '%s\n' "$reply" | sed -n 2p)
    case $host_port in
        '' | *[!0-9]*) continue ;;
    esac
    if [ -n "$host" ]; then
        primary="$host:$host_port"
        echo "sentinel $sentinel names the primary $primary" >&2
        break
    fi
done

if [ -z "$primary" ]; then
    if [ "${POD_NAME##*-}" = 0 ]; then
        primary=$self
    else
        primary=$PRIMARY_ADDR
    fi
    echo "no sentinel knows a primary: $primary is the primary" >&2
fi

if [ "$primary" = "$self" ]; then
    echo "starting as the primary ($self)" >&2
    exec redis-server "$@" --replica-announce-ip "$SELF_HOST"
fi
echo "starting $self as a replica of $primary" >&2
exec redis-server "$@" --replica-announce-ip "$SELF_HOST" \
    --replicaof "${primary%:*}" "${primary##*:}"
