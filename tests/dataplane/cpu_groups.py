"""CPU budgets and CPU accounting for the benchmark's servers, with cgroup v1.

Each server (its process and every process it forks) goes into a group of its own in two
hierarchies: `cpu`, whose CFS quota caps it at a fixed number of CPUs as if it ran on a node of
that size, and `cpuacct`, which counts the CPU time it used. The groups of one run live under one
parent named after the run's pid; `CpuGroups.close()` moves any process left back to the root
group and removes them all, and a later run removes the empty parents of runs that died.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

CPU_ROOT = Path("/sys/fs/cgroup/cpu")
CPUACCT_ROOT = Path("/sys/fs/cgroup/cpuacct")
RUN_PREFIX = "pgpool-k8s-bench-"
PERIOD_US = 100_000
"""CFS period of a budget: the kernel's default, which is also what a Kubernetes CPU limit uses.
(Shorter periods throttle a server so often that each query costs it more CPU.)"""


class CgroupError(RuntimeError):
    pass


def check_cgroup_v1() -> None:
    """CgroupError saying what is missing unless both hierarchies are mounted and writable."""
    for root, controller in ((CPU_ROOT, "cpu"), (CPUACCT_ROOT, "cpuacct")):
        marker = root / f"{controller}.{'cfs_quota_us' if controller == 'cpu' else 'usage'}"
        if not marker.exists():
            raise CgroupError(f"{root} is not a cgroup v1 `{controller}` hierarchy (no {marker.name}): the "
                              f"benchmark needs cgroup v1 with `{controller}` mounted there on its own")
        if not os.access(root, os.W_OK):
            raise CgroupError(f"{root} is not writable: run the benchmark as root")


@dataclass(frozen=True)
class CpuSample:
    """A group's counters at one moment."""

    usage_ns: int
    """CPU time used since the group was made (cpuacct.usage)."""
    periods: int
    """CFS periods in which the group ran (cpu.stat nr_periods)."""
    throttled_periods: int
    """Periods in which it used its whole quota and was stopped (nr_throttled)."""

    def __sub__(self, other: "CpuSample") -> "CpuSample":
        return CpuSample(self.usage_ns - other.usage_ns, self.periods - other.periods,
                         self.throttled_periods - other.throttled_periods)


class CpuGroup:
    """One server's group in both hierarchies."""

    def __init__(self, cpu_dir: Path, cpuacct_dir: Path):
        self.name = cpu_dir.name
        self.dirs = (cpu_dir, cpuacct_dir)
        for directory in self.dirs:
            directory.mkdir()
        self.cpus: float | None = None
        (cpu_dir / "cpu.cfs_period_us").write_text(str(PERIOD_US))

    def limit(self, cpus: float | None) -> None:
        """Cap the group at `cpus` CPUs (None: no cap)."""
        quota = -1 if cpus is None else max(1000, round(cpus * PERIOD_US))  # the kernel's least quota is 1 ms
        (self.dirs[0] / "cpu.cfs_quota_us").write_text(str(quota))
        self.cpus = cpus

    def add_tree(self, pid: int) -> None:
        """Move process `pid` and all its descendants into the group.

        The root goes first, so what it forks from then on is born inside; its descendants are
        then moved until a pass finds none left outside.
        """
        self._move(pid)
        while True:
            outside = [p for p in descendants(pid) if p not in self.members()]
            if not outside:
                return
            for child in outside:
                self._move(child)

    def _move(self, pid: int) -> None:
        for directory in self.dirs:
            with contextlib.suppress(ProcessLookupError):  # exited meanwhile: nothing to move
                (directory / "cgroup.procs").write_text(str(pid))

    def members(self) -> set[int]:
        return {int(line) for line in (self.dirs[1] / "cgroup.procs").read_text().split()}

    def sample(self) -> CpuSample:
        stat = dict(line.split() for line in (self.dirs[0] / "cpu.stat").read_text().splitlines())
        usage = int((self.dirs[1] / "cpuacct.usage").read_text())
        return CpuSample(usage, int(stat["nr_periods"]), int(stat["nr_throttled"]))


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` in the process tree (children, their children, ...);
    zombies are left out, as no cgroup can take them."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        state, parent = stat.rsplit(")", 1)[1].split()[:2]  # the fields after "(comm)"
        if state != "Z":
            children.setdefault(int(parent), []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


class CpuGroups:
    """The groups of one benchmark run; use as a context manager, or call close() in a finally."""

    def __init__(self):
        check_cgroup_v1()
        remove_stale_runs()
        self.name = f"{RUN_PREFIX}{os.getpid()}"
        self.parents = (CPU_ROOT / self.name, CPUACCT_ROOT / self.name)
        self.groups: dict[str, CpuGroup] = {}
        for directory in self.parents:
            directory.mkdir()

    def __enter__(self) -> "CpuGroups":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def group(self, name: str) -> CpuGroup:
        if name not in self.groups:
            self.groups[name] = CpuGroup(self.parents[0] / name, self.parents[1] / name)
        return self.groups[name]

    def close(self) -> None:
        """Move what is still in the groups to the root groups, then remove them and the parents;
        every directory is tried even if one fails."""
        with contextlib.ExitStack() as cleanup:  # callbacks run last-in, first-out: parents last
            for directory in self.parents:
                cleanup.callback(directory.rmdir)
            for group in self.groups.values():
                for directory, root in zip(group.dirs, (CPU_ROOT, CPUACCT_ROOT)):
                    cleanup.callback(_remove, directory, root)


def _remove(directory: Path, root: Path) -> None:
    """Remove a group, first moving any process left in it to the root group."""
    for pid in (directory / "cgroup.procs").read_text().split():
        with contextlib.suppress(ProcessLookupError):
            (root / "cgroup.procs").write_text(pid)
    directory.rmdir()


def remove_stale_runs() -> None:
    """Remove the groups of earlier runs whose process is gone and that hold no process."""
    for root in (CPU_ROOT, CPUACCT_ROOT):
        for parent in root.glob(f"{RUN_PREFIX}*"):
            match = re.fullmatch(rf"{re.escape(RUN_PREFIX)}(\d+)", parent.name)
            if not match or Path(f"/proc/{match[1]}").exists():
                continue
            with contextlib.suppress(OSError):  # still holds a process: leave it to its owner
                for child in parent.iterdir():
                    if child.is_dir():
                        child.rmdir()
                parent.rmdir()
