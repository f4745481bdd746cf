#!/usr/bin/env bash
# jaeger.sh: the one place that knows how to run Jaeger v2 for highpress's trace tests
# (service/tests/support/jaeger.rs), and for a person who wants to look at highpress's traces
# on this machine: all-in-one on in-memory storage, an OTLP/gRPC receiver and the query API,
# every port on loopback. The binary is `cmd/jaeger` of the Go module $JAEGER_MODULE at
# $JAEGER_VERSION, which scripts/install-test-deps.sh builds into $HIGHPRESS_TOOLS_DIR/bin/jaeger
# (HIGHPRESS_TOOLS_DIR defaults to ~/.cache/highpress-tools).
#
# Usage:
#   scripts/jaeger.sh config DIR OTLP_GRPC_PORT QUERY_HTTP_PORT QUERY_GRPC_PORT
#       Writes DIR/config.yaml: the OTLP/gRPC receiver on 127.0.0.1:OTLP_GRPC_PORT, the query
#       API (HTTP: /api/services, /api/traces, /api/v3/...) on 127.0.0.1:QUERY_HTTP_PORT and its
#       gRPC twin on 127.0.0.1:QUERY_GRPC_PORT, spans in memory (up to 100000 traces, lost when
#       Jaeger stops), no self-telemetry server, logs at warn.
#   scripts/jaeger.sh run DIR
#       Jaeger with DIR/config.yaml, in the foreground, logging to stderr. It execs the binary,
#       so the caller's child is Jaeger itself: SIGKILL to that pid is a crash.
#   scripts/jaeger.sh up [OTLP_GRPC_PORT [QUERY_HTTP_PORT]]
#       config + run in a scratch dir, on 4317 and 16686 by default (query gRPC on 16685):
#       point highpress at http://127.0.0.1:4317 and ask http://127.0.0.1:16686/api/... (the
#       build has no web UI assets).
#   scripts/jaeger.sh bin
#       Prints the binary's path; exits 1, naming scripts/install-test-deps.sh, when it is not
#       there.
#
# Sourced, it defines JAEGER_MODULE, JAEGER_VERSION and the jaeger_* functions, and runs nothing
# (scripts/install-test-deps.sh sources it for the pinned version).

# The pinned Jaeger: the Go module's tag (the v2 binary of the v1.76.0 release).
# shellcheck disable=SC2034  # read by scripts/install-test-deps.sh, which sources this file
JAEGER_MODULE=github.com/jaegertracing/jaeger
JAEGER_VERSION=v1.76.0

# jaeger_bin: the installed binary, or a message naming the install script and status 1.
jaeger_bin() {
    local bin
    bin="${HIGHPRESS_TOOLS_DIR:-$HOME/.cache/highpress-tools}/bin/jaeger"
    if [ ! -x "$bin" ]; then
        echo "jaeger.sh: Jaeger $JAEGER_VERSION is not installed at $bin" \
            "(run scripts/install-test-deps.sh)" >&2
        return 1
    fi
    echo "$bin"
}

# jaeger_config DIR OTLP_GRPC_PORT QUERY_HTTP_PORT QUERY_GRPC_PORT: writes DIR/config.yaml.
jaeger_config() {
    local dir=${1:-} otlp=${2:-} http=${3:-} grpc=${4:-}
    if [ -z "$dir" ] || [ -z "$otlp" ] || [ -z "$http" ] || [ -z "$grpc" ]; then
        echo "usage: jaeger.sh config DIR OTLP_GRPC_PORT QUERY_HTTP_PORT QUERY_GRPC_PORT" >&2
        return 2
    fi
    mkdir -p "$dir"
    # Jaeger's own defaults bind every interface and more ports (OTLP/HTTP, Zipkin, Jaeger's
    # legacy receivers, remote sampling, health check, its metrics on 8888): this config names
    # only what the tests use, each on loopback. No batch processor: an export is answered once
    # its spans are stored, so a span the exporter got an answer for can be queried at once.
    cat >"$dir/config.yaml" <<EOF
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    metrics:
      level: none
    logs:
      level: warn

extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:$http
    grpc:
      endpoint: 127.0.0.1:$grpc

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:$otlp

exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
EOF
}

# jaeger_run DIR: execs Jaeger with DIR/config.yaml.
jaeger_run() {
    local dir=${1:-} bin
    if [ -z "$dir" ] || [ ! -f "$dir/config.yaml" ]; then
        echo "usage: jaeger.sh run DIR (after jaeger.sh config DIR ...)" >&2
        return 2
    fi
    bin=$(jaeger_bin) || return 1
    exec "$bin" --config "$dir/config.yaml"
}

jaeger_main() {
    local command=${1:-}
    shift || true
    case $command in
        config) jaeger_config "$@" ;;
        run) jaeger_run "$@" ;;
        up)
            local dir
            dir=$(mktemp -d "${TMPDIR:-/tmp}/highpress-jaeger.XXXXXX")
            jaeger_config "$dir" "${1:-4317}" "${2:-16686}" 16685
            echo "jaeger.sh: OTLP/gRPC on 127.0.0.1:${1:-4317}," \
                "query API on http://127.0.0.1:${2:-16686}/api/services (config in $dir)" >&2
            jaeger_run "$dir"
            ;;
        bin) jaeger_bin ;;
        *)
            echo "usage: jaeger.sh config|run|up|bin ... (see the header of scripts/jaeger.sh)" >&2
            return 2
            ;;
    esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    jaeger_main "$@"
fi
