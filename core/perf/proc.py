"""CPU time of a process and its descendants from /proc (Linux), for the idle-CPU measurement.

Each process counts its own time and that of its reaped children (utime + stime + cutime + cstime,
fields 14-17 of /proc/PID/stat), so a child that ends during the window is not lost.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

PROC = Path("/proc")
TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def parse_stat(text: str) -> tuple[int, int]:
    """(parent pid, CPU ticks of the process and its reaped children) from a /proc/PID/stat line.
    The command name (field 2) may hold spaces and parentheses: fields are read after the last ')'."""
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): ppid is field 4, utime..cstime are fields 14..17
    return int(fields[1]), sum(int(v) for v in fields[11:15])


def _stats(proc: Path) -> dict[int, tuple[int, int]]:
    out = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            out[int(entry.name)] = parse_stat((entry / "stat").read_text())
        except (OSError, ValueError, IndexError):  # ended meanwhile, or not a process entry
            continue
    return out


def tree_ticks(pid: int, stats: dict[int, tuple[int, int]]) -> int:
    """CPU ticks of `pid` and every live descendant, given {pid: (ppid, ticks)}."""
    children: dict[int, list[int]] = {}
    for p, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(p)
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        if p in stats:
            total += stats[p][1]
            todo.extend(children.get(p, ()))
    return total


def cpu_seconds(pid: int, proc: Path = PROC) -> float:
    """CPU seconds used so far by `pid` and its descendants."""
    return tree_ticks(pid, _stats(proc)) / TICKS_PER_S


def cpu_fraction(before_s: float, after_s: float, wall_s: float) -> float:
    """CPU used over a window as a fraction of one core."""
    return max(0.0, after_s - before_s) / wall_s if wall_s > 0 else 0.0


def idle_cpu(pid: int, seconds: float = 10.0, proc: Path = PROC, sleep: Callable[[float], None] = time.sleep) -> float:
    """Fraction of one core that `pid` and its descendants use over `seconds` of wall time."""
    t0, c0 = time.monotonic(), cpu_seconds(pid, proc)
    sleep(seconds)
    return cpu_fraction(c0, cpu_seconds(pid, proc), time.monotonic() - t0)
