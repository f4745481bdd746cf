#!/usr/bin/env bash
# no-leftovers.sh COMMAND...: runs COMMAND as a child of a process that is the "child subreaper"
# of everything COMMAND starts (prctl PR_SET_CHILD_SUBREAPER): a process whose parent exits is
# handed to it instead of to init. So once COMMAND has exited, every process still below it is
# one a test left running, whatever it did to its environment or its title (redis-server
# rewrites both): each is listed with its command line, killed, and the run fails, even when
# COMMAND passed.
#
# Used by `make test` around the test suites, so a leak such as a server kept in a static
# (never dropped), or a server whose start script was killed without it, fails CI instead of
# outliving the suite.
set -uo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: scripts/no-leftovers.sh COMMAND..." >&2
    exit 2
fi

# shellcheck disable=SC2016 # the program is Python, not shell
exec python3 -c '
import ctypes, os, signal, sys, time

PR_SET_CHILD_SUBREAPER = 36
if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
    sys.exit("no-leftovers: prctl(PR_SET_CHILD_SUBREAPER) failed")

command = sys.argv[1:]
child = os.fork()
if child == 0:
    os.execvp(command[0], command)

# Ctrl-C or a TERM from above goes to COMMAND, which stops its own processes.
for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, lambda number, _frame: os.kill(child, number))
status = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])

me = os.getpid()

def below():
    """Live processes whose parent is this one (orphans handed over), reaping the dead."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command name: state, then the parent pid.
        if int(fields[1]) == me and fields[0] != "Z":
            found.append(int(entry))
    return found

def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"

# A process tree may still be exiting when COMMAND returns: look again for a few seconds.
leftovers = below()
for _ in range(10):
    if not leftovers:
        break
    time.sleep(0.5)
    leftovers = below()

shown = " ".join(command)
killed = 0
while leftovers:
    if killed == 0:
        print(f"no-leftovers: processes started by `{shown}` still running after it exited:", file=sys.stderr)
    for pid in leftovers:
        print(f"  pid {pid}: {cmdline(pid)}", file=sys.stderr)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        killed += 1
    time.sleep(0.2)
    # The killed processes own children are handed over in turn.
    leftovers = below()
if killed:
    print("no-leftovers: killed them; a test must stop every process it starts", file=sys.stderr)
    sys.exit(1)
sys.exit(status)
' "$@"
