#!/usr/bin/env bash
# kafka.sh: the one place that knows how to run Apache Kafka for highpress's events tests
# (service/tests/support/kafka.rs) and the benchmark's row E1 (bench/bench.sh): a one-node KRaft
# cluster, broker and controller in one JVM, listening on two loopback ports, with all its data
# in one directory. The broker and its runtime jars are the Maven artifacts that
# scripts/install-test-deps.sh copies into $HIGHPRESS_TOOLS_DIR/kafka-$KAFKA_VERSION/lib
# (HIGHPRESS_TOOLS_DIR defaults to ~/.cache/highpress-tools); `java` (17) runs them.
#
# Usage:
#   scripts/kafka.sh init DIR BROKER_PORT CONTROLLER_PORT
#       Writes DIR/server.properties (PLAINTEXT on 127.0.0.1:BROKER_PORT, the controller on
#       127.0.0.1:CONTROLLER_PORT, data in DIR/data) and formats DIR/data for a new cluster,
#       replacing any data there (kafka.tools.StorageTool format --standalone: a JVM run, a few
#       seconds).
#   scripts/kafka.sh run DIR
#       The broker of an init'ed DIR, in the foreground, logging to stderr. It execs java, so the
#       caller's child is the JVM itself: SIGKILL to that pid is a crash, SIGTERM a clean
#       shutdown. Running it again on the same DIR keeps every topic and message.
#   scripts/kafka.sh topics ARGS...
#       org.apache.kafka.tools.TopicCommand ARGS, e.g.
#       --bootstrap-server 127.0.0.1:PORT --create --topic T --partitions 3
#   scripts/kafka.sh lib
#       Prints the lib dir; exits 1, naming scripts/install-test-deps.sh, when it is not there.
#
# Sourced, it defines KAFKA_VERSION, KAFKA_SLF4J_VERSION, kafka_home and the kafka_* functions,
# and runs nothing (scripts/install-test-deps.sh sources it for the pinned versions).
#
# Environment: KAFKA_HEAP_OPTS (default -Xmx512m -Xms256m) and KAFKA_JVM_OPTS (default
# -XX:+UseSerialGC: one GC thread, which leaves the two cores of a CI machine to the tests).
# The settings suit one node: replication factor 1 for the internal topics, one partition for
# the offsets topic, no group rebalance delay, 3 partitions by default, no auto-created topics.

# The pinned broker, and the slf4j binding for the slf4j API version Kafka uses (1.7.36).
KAFKA_VERSION=4.4.0
# shellcheck disable=SC2034  # read by scripts/install-test-deps.sh, which sources this file
KAFKA_SLF4J_VERSION=1.7.36

# kafka_home: the install dir of the pinned version.
kafka_home() {
    echo "${HIGHPRESS_TOOLS_DIR:-$HOME/.cache/highpress-tools}/kafka-$KAFKA_VERSION"
}

# kafka_lib: the lib dir, or a message naming the install script and status 1.
kafka_lib() {
    local lib
    lib="$(kafka_home)/lib"
    if ! compgen -G "$lib/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null; then
        echo "kafka.sh: Apache Kafka $KAFKA_VERSION is not installed in $lib" \
            "(run scripts/install-test-deps.sh)" >&2
        return 1
    fi
    if ! command -v java >/dev/null 2>&1; then
        echo "kafka.sh: java (17) is not on PATH; Apache Kafka needs it" >&2
        return 1
    fi
    echo "$lib"
}

# kafka_java LEVEL CLASS ARGS...: execs java CLASS ARGS on the Kafka class path, logging at
# LEVEL (info, warn, ...) to stderr.
kafka_java() {
    local lib heap jvm level=$1
    shift
    lib=$(kafka_lib) || return 1
    read -ra heap <<<"${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}"
    read -ra jvm <<<"${KAFKA_JVM_OPTS:--XX:+UseSerialGC}"
    exec java "${heap[@]}" "${jvm[@]}" -Djava.awt.headless=true \
        -Dorg.slf4j.simpleLogger.defaultLogLevel="$level" \
        -Dorg.slf4j.simpleLogger.showDateTime=true \
        -Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS \
        -Dorg.slf4j.simpleLogger.log.org.apache.kafka.common.config.AbstractConfig=warn \
        -cp "$lib/*" "$@"
}

# kafka_init DIR BROKER_PORT CONTROLLER_PORT: server.properties, and DIR/data formatted afresh.
kafka_init() {
    local dir=${1:-} port=${2:-} controller_port=${3:-} cluster_id
    if [ -z "$dir" ] || [ -z "$port" ] || [ -z "$controller_port" ]; then
        echo "usage: kafka.sh init DIR BROKER_PORT CONTROLLER_PORT" >&2
        return 2
    fi
    kafka_lib >/dev/null || return 1
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    rm -rf "$dir/data"
    cat >"$dir/server.properties" <<EOF
# One-node KRaft cluster for highpress's tests (written by scripts/kafka.sh).
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
controller.quorum.bootstrap.servers=127.0.0.1:$controller_port
log.dirs=$dir/data
num.partitions=3
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
    # A cluster id is a Kafka Uuid: 16 random bytes, URL-safe base64 without padding (22
    # characters). One that starts with '-' would read as an option.
    cluster_id=-
    while [ "${cluster_id:0:1}" = - ]; do
        cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    done
    (kafka_java warn kafka.tools.StorageTool format -t "$cluster_id" \
        -c "$dir/server.properties" --standalone)
}

# kafka_run DIR: the broker of an init'ed DIR (execs java).
kafka_run() {
    local dir=${1:?usage: kafka.sh run DIR}
    [ -f "$dir/server.properties" ] || {
        echo "kafka.sh: no $dir/server.properties (kafka.sh init first)" >&2
        return 1
    }
    kafka_java info kafka.Kafka "$dir/server.properties"
}

# kafka_topics ARGS...: TopicCommand (execs java).
kafka_topics() {
    kafka_java warn org.apache.kafka.tools.TopicCommand "$@"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    command=${1:-}
    [ $# -eq 0 ] || shift
    case "$command" in
        init) kafka_init "$@" ;;
        run) kafka_run "$@" ;;
        topics) kafka_topics "$@" ;;
        lib) kafka_lib ;;
        *)
            echo "usage: scripts/kafka.sh init DIR BROKER_PORT CONTROLLER_PORT | run DIR |" \
                "topics ARGS... | lib" >&2
            exit 2
            ;;
    esac
fi
