"""Run one command; print its wall seconds and the CPU seconds of that process alone.

    python3 bench/timed.py OUT.json -- CMD ARGS...

The process's own CPU (user + system, not its children's) is read from /proc/PID/stat once it has
exited but before it is reaped: a zombie keeps its final counters. That is how the bench tells
Kiln's own work from the git, uv, pip and compiler processes it starts. The exit code is passed on.
"""

import json
import os
import select
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # after "pid (comm)": state is fields[0]; utime, stime are fields 14, 15 of the full line
    return fields[0], (int(fields[11]) + int(fields[12])) / TICK


def main():
    out, sep, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
    assert sep == "--" and cmd, __doc__
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)
    # A pidfd turns readable when the process exits, before anyone reaps it: no polling.
    fd = os.pidfd_open(pid)
    select.select([fd], [], [])
    wall = time.monotonic() - started
    _, cpu = stat(pid)
    _, status = os.waitpid(pid, 0)
    with open(out, "w") as f:
        json.dump({"wall": wall, "self_cpu": cpu}, f)
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
