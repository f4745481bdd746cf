#!/usr/bin/env bash
# install-test-deps.sh: install the system tools highpress's tests, load test
# and peer benchmark use, with apt-get, idempotently.
#
#   redis-server, redis-benchmark, redis-cli  (packages redis-server, redis-tools)
#   hey, wrk, webdis                          (load test and peer benchmark)
#   yamllint, shellcheck                      (lint of YAML and scripts)
#   promtool                                  (package prometheus: `promtool check metrics`)
#   kubernetes-validate (pip)                 (official Kubernetes schemas for rendered manifests)
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

# command -> Debian package that provides it.
declare -A PACKAGE_OF=(
    [redis-server]=redis-server
    [redis-benchmark]=redis-tools
    [redis-cli]=redis-tools
    [hey]=hey
    [wrk]=wrk
    [webdis]=webdis
    [shellcheck]=shellcheck
    [yamllint]=yamllint
    [promtool]=prometheus
)
COMMANDS=(redis-server redis-benchmark redis-cli hey wrk webdis shellcheck yamllint promtool)

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
