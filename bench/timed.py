"""Run one command; print its wall seconds and the CPU seconds of that process alone.

    python3 bench/timed.py OUT.json -- CMD ARGS...

The process's own CPU (all its threads, user + system, not its children's) is read once it has
exited but before it is reaped: a zombie keeps its final counters. That is how the bench tells
Kiln's own work from the git, uv, pip and compiler processes it starts. The exit code is passed on.

The figure comes from the process's CPU clock (clock_getcpuclockid), which the kernel keeps in
nanoseconds. /proc/PID/stat, the fallback, gives user and system time each rounded down to a
clock tick (10 ms): a 24 ms process read as 10 or 20 ms there.
"""

import ctypes
import json
import os
import select
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def cpu_clock(pid):
    """The process's CPU seconds from its CPU clock, or None when it cannot be read."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        clock, ts = ctypes.c_int(), Timespec()
        if libc.clock_getcpuclockid(pid, ctypes.byref(clock)) != 0:
            return None
        if libc.clock_gettime(clock, ctypes.byref(ts)) != 0:
            return None
        return ts.tv_sec + ts.tv_nsec / 1e9
    except (OSError, AttributeError):
        return None


def stat_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # after "pid (comm)": utime, stime are fields 14, 15 of the full line
    return (int(fields[11]) + int(fields[12])) / TICK


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
    cpu = cpu_clock(pid)
    if cpu is None:
        cpu = stat_ticks(pid)
    _, status = os.waitpid(pid, 0)
    with open(out, "w") as f:
        json.dump({"wall": wall, "self_cpu": cpu}, f)
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
