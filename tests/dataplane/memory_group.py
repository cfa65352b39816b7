"""A memory limit for one pod's container, as the kubelet sets it: a cgroup v1 `memory` group whose
limit covers RAM and swap alike (Kubernetes runs without swap), so going over it OOM-kills.

The group's cgroup.procs belongs to the pod's uid, so the container's first process moves itself in
before it execs the container's command (`enter`), as a runtime starts a container inside its group:
everything the command allocates, shared memory included, is charged to the group from the start.
The group is named after the test run's pid and removed on close, its processes moved out first.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

MEMORY_ROOT = Path("/sys/fs/cgroup/memory")


class MemoryGroup:
    def __init__(self, name: str, limit_bytes: int, uid: int):
        marker = MEMORY_ROOT / "memory.memsw.limit_in_bytes"
        if not marker.exists() or not os.access(MEMORY_ROOT, os.W_OK):
            raise RuntimeError(f"{MEMORY_ROOT} is not a writable cgroup v1 memory hierarchy with swap accounting: "
                               "run as root on a host with cgroup v1 `memory` mounted")
        self.directory = MEMORY_ROOT / f"pgpool-k8s-test-{os.getpid()}-{name}"
        self.directory.mkdir()
        for limit in ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes"):  # RAM first, then RAM + swap
            (self.directory / limit).write_text(str(limit_bytes))
        for control in ("cgroup.procs", "tasks"):
            os.chown(self.directory / control, uid, -1)

    @property
    def enter(self) -> tuple[str, ...]:
        """A command prefix: `sh` adds itself to the group, then execs the rest of the command line."""
        return ("/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.directory / "cgroup.procs"))

    def stat(self) -> dict[str, int]:
        return {key: int(value) for key, value in
                (line.split() for line in (self.directory / "memory.stat").read_text().splitlines())}

    @property
    def oom_kills(self) -> int:
        control = dict(line.split() for line in (self.directory / "memory.oom_control").read_text().splitlines())
        return int(control.get("oom_kill", 0))

    def close(self) -> None:
        for pid in (self.directory / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                (MEMORY_ROOT / "cgroup.procs").write_text(pid)
        self.directory.rmdir()

    def __enter__(self) -> "MemoryGroup":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
