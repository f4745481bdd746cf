#!/bin/sh
# Starts one sentinel of a replicated managed Redis (spec.redis.managed.replicas > 1).
#
# Sentinel rewrites its config file as it learns (the primary, replicas, other sentinels,
# failovers), so the file is generated here, in an emptyDir, from the operator's settings;
# the arguments are redis-server's own (--port). A container restarted in the same pod keeps
# the file it had. The primary it starts monitoring is, in order: the one another sentinel
# names; the Redis that reports itself primary with the most replicas; pod 0.
#
# Environment (set by the operator on the container):
#   SENTINEL_CONFIG      path of the config file (in the emptyDir)
#   SELF_HOST            this sentinel's hostname under the headless Service
#                        <name>-redis-sentinel, announced to the others and to clients
#   SENTINEL_ADDRS       host:port of each sentinel, separated by spaces
#   REDIS_ADDRS          host:port of each Redis pod, separated by spaces
#   PRIMARY_ADDR         host:port of Redis pod 0
#   MASTER_NAME          the name the primary is monitored under
#   QUORUM, DOWN_AFTER_MS, FAILOVER_TIMEOUT_MS
#   REDIS_PASSWORD       the Redis password: the sentinels' own and the one they use for Redis
#   REDIS_OTHER_PASSWORD during a password rotation, a second password the sentinels accept
#   REDISCLI_AUTH        the same as REDIS_PASSWORD, for redis-cli
#   TLS_DIR              with TLS (security.tls.redis), the mounted certificate: redis-cli
#                        trusts its ca.crt
#   OBSERVER_USER, OBSERVER_RULES
#                        the read-only user the operator asks about the primary and the
#                        replicas, and its ACL rules (no password, topology reads only)
set -eu

if [ -s "$SENTINEL_CONFIG" ]; then
    echo "keeping $SENTINEL_CONFIG from this pod's previous start" >&2
    exec redis-server "$SENTINEL_CONFIG" --sentinel "$@"
fi

tls_flags=
if [ -n "${TLS_DIR:-}" ]; then
    tls_flags="--tls --cacert $TLS_DIR/ca.crt"
fi

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
    most=-1
    for redis in $REDIS_ADDRS; do
        # An unreachable Redis gives an empty answer, so no role.
        # shellcheck disable=SC2086 # tls_flags is empty or two flags and a path
        info=$(timeout 3 redis-cli $tls_flags --no-auth-warning -h "${redis%:*}" -p "${redis##*:}" \
            INFO replication 2>/dev/null | tr -d '\r')
        role=$(printf '%s\n' "$info" | sed -n 's/^role://p')
        replicas=$(printf '%s\n' "$info" | sed -n 's/^connected_slaves://p')
        case $replicas in
            '' | *[!0-9]*) replicas=0 ;;
        esac
        if [ "$role" = master ] && [ "$replicas" -gt "$most" ]; then
            primary=$redis
            most=$replicas
        fi
    done
    if [ -n "$primary" ]; then
        echo "no sentinel knows a primary; $primary reports itself primary" >&2
    fi
fi

if [ -z "$primary" ]; then
    primary=$PRIMARY_ADDR
    echo "no sentinel or Redis knows a primary: monitoring pod 0, $primary" >&2
fi

if [ -n "${REDIS_OTHER_PASSWORD:-}" ]; then
    # A rotation: clients may present either password.
    own_auth="user default on >$REDIS_PASSWORD >$REDIS_OTHER_PASSWORD ~* &* +@all"
else
    own_auth="requirepass $REDIS_PASSWORD"
fi
config_dir=$(dirname "$SENTINEL_CONFIG")
umask 077
cat >"$SENTINEL_CONFIG" <<EOF
dir $config_dir
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $SELF_HOST
$own_auth
user $OBSERVER_USER $OBSERVER_RULES
sentinel monitor $MASTER_NAME ${primary%:*} ${primary##*:} $QUORUM
sentinel auth-pass $MASTER_NAME $REDIS_PASSWORD
sentinel down-after-milliseconds $MASTER_NAME $DOWN_AFTER_MS
sentinel failover-timeout $MASTER_NAME $FAILOVER_TIMEOUT_MS
sentinel parallel-syncs $MASTER_NAME 1
EOF
exec redis-server "$SENTINEL_CONFIG" --sentinel "$@"
