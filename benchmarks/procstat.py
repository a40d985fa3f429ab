"""Server resource figures from /proc: CPU seconds and peak resident memory of given PIDs.

Read from outside the servers, so every system is measured the same way whatever its
language. Linux only, like the rest of the suite.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of ``pid`` so far (0.0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return 0.0
    # The command name (field 2) may contain spaces: split after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / _CLOCK_TICKS


def total_cpu_seconds(pids: Iterable[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def _status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_bytes(pid: int) -> int:
    """VmHWM: the highest resident set size ``pid`` has had (0 if it is gone)."""
    return _status_kib(pid, "VmHWM") * 1024


def total_peak_rss_bytes(pids: Iterable[int]) -> int:
    return sum(peak_rss_bytes(pid) for pid in pids)
