"""The cgroup of one local node: every process of the node (its runtime, kubelet, kube-proxy, the shims and
the containers they start) lives under it, in every cgroup v1 hierarchy, so that stopping the node
finds and ends each of them, whatever re-parented or detached itself, and leaves no cgroup behind.

The kubelet's cgroupRoot is this cgroup: the pods' cgroups (kubepods/...) are created below it, apart
from any other node's on the machine.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")


def hierarchies() -> list[Path]:
    """Mount points of the cgroup file systems (v1 hierarchies and the v2 one of a hybrid set-up)."""
    points = []
    for line in MOUNTINFO.read_text().splitlines():
        fields = line.split()
        fstype = fields[fields.index("-") + 1]
        if fstype in ("cgroup", "cgroup2"):
            points.append(Path(fields[4]))
    return points


def version1_available() -> bool:
    return any((point / "cgroup.procs").exists() and not (point / "cgroup.controllers").exists()
               for point in hierarchies())


class NodeCgroup:
    """/<name> in every hierarchy; the node's own processes in /<name>/node, the pods in /<name>/kubepods."""

    def __init__(self, name: str):
        self.name = name

    @property
    def path(self) -> str:
        return f"/{self.name}"

    def _dirs(self, below: str = "") -> list[Path]:
        return [point / self.name / below if below else point / self.name for point in hierarchies()
                if not (point / "cgroup.controllers").exists()]  # v1 only: runc places the pods there

    def create(self) -> None:
        for directory in self._dirs() + self._dirs("node"):
            directory.mkdir(exist_ok=True)
            for inherited in ("cpuset.cpus", "cpuset.mems"):  # an empty cpuset admits no process
                if (directory / inherited).exists() and not (directory / inherited).read_text().strip():
                    (directory / inherited).write_text((directory.parent / inherited).read_text())

    def join(self) -> None:
        """Moves the calling process into /<name>/node (run in a child before it executes its program)."""
        for directory in self._dirs("node"):
            (directory / "cgroup.procs").write_text(str(os.getpid()))

    def pids(self) -> set[int]:
        found: set[int] = set()
        for point in hierarchies():
            top = point / self.name
            if top.is_dir():
                for procs in top.rglob("cgroup.procs"):
                    found.update(int(pid) for pid in procs.read_text().split())
        return found

    def kill_all(self, timeout: float = 20.0) -> None:
        """SIGKILL to every process under the cgroup, frozen first so that none forks meanwhile."""
        freezer = [d for d in self._dirs() if (d / "freezer.state").exists()]
        for directory in freezer:
            (directory / "freezer.state").write_text("FROZEN")
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for directory in freezer:
            (directory / "freezer.state").write_text("THAWED")
        deadline = time.monotonic() + timeout
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.1)

    def remove(self) -> None:
        """Removes the cgroup's tree in every hierarchy, deepest first (a cgroup must be empty to go)."""
        for point in hierarchies():
            top = point / self.name
            if not top.is_dir():
                continue
            for directory in sorted((d for d in top.rglob("*") if d.is_dir()), key=lambda d: len(d.parts),
                                    reverse=True) + [top]:
                try:
                    directory.rmdir()
                except FileNotFoundError:
                    pass

    def exists(self) -> bool:
        return any((point / self.name).exists() for point in hierarchies())
