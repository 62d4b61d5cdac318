"""CPU time and memory of a process tree, read from ``/proc``.

CPU is utime+stime of ``/proc/<pid>/stat``, which covers every thread of a process (the
SQLite driver's threads included). A tree is the process and all its descendants, found
again at every reading, so workers, writers and helpers are all counted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after the last ')'.
    return text[text.rindex(")") + 2 :].split()


def tree(root: int) -> list[int]:
    """``root`` and every live descendant."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, queue = [], [root]
    while queue:
        pid = queue.pop()
        found.append(pid)
        queue.extend(children.get(pid, ()))
    return found


def cpu_seconds(pid: int) -> float:
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # Fields 14 and 15 of stat (utime, stime), counted from the state field as index 0.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * PAGE_KB / 1024


@dataclass(frozen=True)
class TreeSample:
    cpu_s: dict[int, float]
    rss_mb: dict[int, float]

    @property
    def total_cpu_s(self) -> float:
        return sum(self.cpu_s.values())


def sample(root: int) -> TreeSample:
    pids = tree(root)
    return TreeSample({pid: cpu_seconds(pid) for pid in pids}, {pid: rss_mb(pid) for pid in pids})


def cpu_used(before: TreeSample, after: TreeSample) -> float:
    """CPU seconds the tree spent between two samples (a process born between counts whole)."""
    return sum(cpu - before.cpu_s.get(pid, 0.0) for pid, cpu in after.cpu_s.items())


def workers_rss(sample: TreeSample, root: int) -> list[float]:
    """RSS of the processes that serve: the root alone, or its children when it has some."""
    served = [pid for pid in sample.rss_mb if pid != root] or [root]
    return [sample.rss_mb[pid] for pid in served]


def machine_busy_s() -> float:
    """CPU seconds all processes have spent (all cores), from ``/proc/stat``.

    Interrupt time is left out: loopback traffic is processed there, and it belongs to
    no process, so it would read as someone else's load at high request rates.
    """
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system = (int(v) for v in fields[:3])
    return (user + nice + system) / CLOCK_TICKS


def tree_cpu_s(root: int) -> float:
    return sum(cpu_seconds(pid) for pid in tree(root))


def other_load(own_root: int, seconds: float = 1.0) -> float:
    """Cores kept busy by processes outside ``own_root``'s tree, over ``seconds``."""
    import time

    machine, own = machine_busy_s(), tree_cpu_s(own_root)
    time.sleep(seconds)
    return max((machine_busy_s() - machine) - (tree_cpu_s(own_root) - own), 0.0) / seconds


def pss_mb(pid: int) -> float:
    """Proportional set size: shared pages split among the processes that map them."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
