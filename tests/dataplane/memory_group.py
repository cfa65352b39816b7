"""A memory limit for one pod's container, as the kubelet sets it: a cgroup v1 `memory` group whose
limit covers RAM and swap alike (Kubernetes runs without swap), so going over it OOM-kills.

The group's cgroup.procs belongs to the pod's uid, so the container's first process moves itself in
before it execs the container's command (`enter`), as a runtime starts a container inside its group:
everything the command allocates, shared memory included, is charged to the group from the start.
The group is named after the test run's pid and removed on close, its processes moved out first.
memory_mib measures what the settings' memory rule is calibrated on: the proportional set size, once
serve_every_child has had every child serve a session.
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import psycopg

from tests.dataplane.cpu_groups import descendants
from tests.dataplane.harness import wait_until

MEMORY_ROOT = Path("/sys/fs/cgroup/memory")


def memory_mib(pid: int) -> float:
    """The proportional set size of a process and its children (shared pages counted once across them)."""
    total_kib = 0
    for process in (pid, *descendants(pid)):
        try:
            rollup = Path(f"/proc/{process}/smaps_rollup").read_text()
        except FileNotFoundError:  # a child that exited meanwhile
            continue
        total_kib += sum(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:"))
    return total_kib / 1024


def serve_every_child(sessions: int, connect: Callable[[], psycopg.Connection],
                      work: Callable[[psycopg.Connection, int], object]) -> None:
    """`sessions` sessions open at once (so each holds a child of its own), each logged in by `connect` and doing
    `work(connection, its index)`."""
    everyone_in = threading.Barrier(sessions)

    def session(index: int) -> None:
        with wait_until("logged in", connect) as conn:
            work(conn, index)
            everyone_in.wait(timeout=120)

    with ThreadPoolExecutor(sessions) as pool:
        for future in [pool.submit(session, index) for index in range(sessions)]:
            future.result()


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
