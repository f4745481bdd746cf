#!/usr/bin/env bash
# no-leftovers.sh COMMAND...: runs COMMAND with a run marker, LEFTOVER_CHECK_RUN=<id>, in its
# environment. (The name must not start with HIGHPRESS_: the service reads those variables as
# configuration and refuses unknown ones.) Every process the command starts inherits the marker
# (the test support never clears the environment of a server it starts), so once COMMAND has
# exited, any process that still carries it is one a test left running: each is listed with
# its command line, killed, and the run fails, even when COMMAND passed.
#
# Used by `make test` around the test suites, so a leak such as a server kept in a static
# (never dropped) fails CI instead of outliving the suite.
set -uo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: scripts/no-leftovers.sh COMMAND..." >&2
    exit 2
fi

marker="LEFTOVER_CHECK_RUN=$$-$(date +%s%N)"
LEFTOVER_CHECK_RUN=${marker#LEFTOVER_CHECK_RUN=} "$@"
status=$?

# The pids of the processes that carry the marker. The marker was given to COMMAND alone, so
# neither this shell nor the grep that reads the environments carries it.
leftovers() {
    grep -lzxF "$marker" /proc/[0-9]*/environ 2>/dev/null | sed -E 's#^/proc/([0-9]+)/environ$#\1#'
}

# A process's last children may still be exiting when COMMAND returns: look again briefly.
found=()
for _ in 1 2 3 4 5; do
    mapfile -t found < <(leftovers)
    [ "${#found[@]}" -eq 0 ] && break
    sleep 1
done

if [ "${#found[@]}" -gt 0 ]; then
    echo "no-leftovers: ${#found[@]} process(es) started by \`$*\` still running after it exited:" >&2
    for pid in "${found[@]}"; do
        echo "  pid $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" >&2
    done
    kill -KILL "${found[@]}" 2>/dev/null || true
    echo "no-leftovers: killed them; a test must stop every process it starts" >&2
    exit 1
fi
exit "$status"
