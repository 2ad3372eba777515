"""Who used the CPU during a measurement, read from /proc: process trees, this process and the
whole machine (both benches: the load generator's windows, the indicators bench's pulls)."""

from __future__ import annotations

import os
import time


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores; /proc/stat)."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(roots: list[int]) -> float:
    """CPU seconds used so far by processes and all their descendants (/proc/<pid>/stat)."""
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(name)] = int(fields[1])
        # utime + stime, plus cutime + cstime: what its ended (reaped) children used.
        used[int(name)] = sum(int(f) for f in fields[11:15]) / tick
    tree, frontier = set(roots), list(roots)
    while frontier:
        parent = frontier.pop()
        kids = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(kids)
        frontier.extend(kids)
    return sum(used.get(pid, 0.0) for pid in tree)


def cpu_snapshot(watch: dict[str, list[int]], own: str) -> dict[str, float]:
    """CPU seconds so far of each watched group, of this process (under the name `own`) and
    of the whole machine (under "machine")."""
    snapshot = {name: tree_cpu_seconds(pids) for name, pids in watch.items()}
    snapshot[own] = time.process_time()
    snapshot["machine"] = machine_busy_seconds()
    return snapshot


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds used between two snapshots, per group, plus "other": what processes
    outside the snapshot (neither watched nor this one) used on the machine meanwhile."""
    used = {name: after[name] - before[name] for name in after}
    ours = sum(seconds for name, seconds in used.items() if name != "machine")
    used["other"] = max(0.0, used["machine"] - ours)
    return used
