#!/bin/sh
# Runs a Redis or a sentinel of a managed Redis with TLS (security.tls.redis) and keeps its
# certificate current: when the kubelet puts a renewed certificate into the mounted Secret,
#   reload   (Redis)     has Redis load it with CONFIG SET, without a restart;
#   restart  (sentinel)  stops the sentinel and starts it again from the config file it
#                        rewrote (Sentinel has no CONFIG command). Sentinels restart one at a
#                        time: each first waits TLS_RESTART_STAGGER_SECONDS (default 20) per
#                        ordinal of its pod.
# The process ends with the server's exit status, and a TERM or INT is passed on to it.
#
# Usage: tls-supervise.sh reload|restart COMMAND [ARG...]; the server's arguments are
# searched for --tls-port, the port CONFIG SET goes to.
#
# Environment (set by the operator on the container):
#   TLS_DIR              the mounted Secret: tls.crt, tls.key, ca.crt
#   TLS_CHECK_SECONDS    how often the files are compared (default 10)
#   POD_NAME             this pod's name, <name>-redis-sentinel-<ordinal> (restart)
#   REDISCLI_AUTH        the password, for CONFIG SET (reload)
set -u

mode=$1
shift
port=
previous=
for arg in "$@"; do
    if [ "$previous" = "--tls-port" ]; then
        port=$arg
    fi
    previous=$arg
done

files_sum() {
    cat "$TLS_DIR/tls.crt" "$TLS_DIR/tls.key" "$TLS_DIR/ca.crt" 2>/dev/null | cksum
}

child=
start() {
    "$@" &
    child=$!
}

stop() {
    kill -TERM "$child" 2>/dev/null
    wait "$child"
    exit $?
}
trap stop TERM INT

start "$@"
loaded=$(files_sum)
while :; do
    sleep "${TLS_CHECK_SECONDS:-10}" &
    wait $!
    if ! kill -0 "$child" 2>/dev/null; then
        wait "$child"
        exit $?
    fi
    now=$(files_sum)
    if [ "$now" = "$loaded" ]; then
        continue
    fi
    case $mode in
        reload)
            answer=$(timeout 5 redis-cli --no-auth-warning --tls --cacert "$TLS_DIR/ca.crt" \
                -h localhost -p "$port" CONFIG SET \
                tls-cert-file "$TLS_DIR/tls.crt" tls-key-file "$TLS_DIR/tls.key" \
                tls-ca-cert-file "$TLS_DIR/ca.crt" 2>&1)
            if [ "$answer" = OK ]; then
                echo "tls-supervise: loaded the renewed certificate" >&2
                loaded=$now
            else
                echo "tls-supervise: loading the renewed certificate failed: $answer" >&2
            fi
            ;;
        restart)
            ordinal=${POD_NAME##*-}
            case $ordinal in
                '' | *[!0-9]*) ordinal=0 ;;
            esac
            sleep $((ordinal * ${TLS_RESTART_STAGGER_SECONDS:-20})) &
            wait $!
            echo "tls-supervise: restarting for the renewed certificate" >&2
            kill -TERM "$child" 2>/dev/null
            wait "$child"
            loaded=$(files_sum)
            start "$@"
            ;;
    esac
done
