"""The processes of a local cluster, recorded so that they are recognised again and nothing else is signalled.

A pid alone names whatever process holds that number now: after a crash or a reboot it may be any
process of any user. So each process is saved with its start time (clock ticks since boot, field 22 of
/proc/PID/stat) and the boot's id, and is signalled only through a pidfd opened while both still match.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True)
class Process:
    pid: int
    start_time: int
    boot_id: str


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (field 3 onwards), or None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rsplit(") ", 1)[1].split()


def identity(pid: int) -> Process | None:
    """The process that holds `pid` now, or None when none does."""
    fields = _stat(pid)
    if fields is None:
        return None
    return Process(pid, int(fields[19]), BOOT_ID.read_text().strip())


def is_running(process: Process) -> bool:
    """The very process that was recorded still runs (a zombie no longer does)."""
    fields = _stat(process.pid)
    return (fields is not None and fields[0] != "Z" and identity(process.pid) == process)


def spawn(command: list[str], log: Path, *, env: dict[str, str] | None = None,
          before_exec: Callable[[], None] | None = None) -> Process:
    """Starts `command` in a session of its own with its output appended to `log` (created 0600), under the
    usual umask 022: what it creates is for the programs that read it (a container's user reads its image's
    unpacked layers); the cluster's directory, 0700, keeps every other user out."""
    def prepare() -> None:
        os.umask(0o022)
        if before_exec:
            before_exec()

    descriptor = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        child = subprocess.Popen(command, stdout=descriptor, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True, env=env, preexec_fn=prepare)
    finally:
        os.close(descriptor)
    return identity(child.pid) or Process(child.pid, -1, "")


def _open(process: Process) -> int | None:
    """A pidfd of the recorded process, or None when it no longer runs (or never was this one)."""
    if not is_running(process):
        return None
    try:
        descriptor = os.pidfd_open(process.pid)
    except ProcessLookupError:
        return None
    if not is_running(process):  # the number was reused between the check and the open
        os.close(descriptor)
        return None
    return descriptor


def terminate(group: list[Process], grace: float = 10.0) -> None:
    """SIGTERM to each process of `group` that is still the recorded one, at once; SIGKILL to those still
    running after `grace` seconds."""
    descriptors = {process.pid: descriptor for process in group if (descriptor := _open(process)) is not None}
    try:
        for descriptor in descriptors.values():
            _signal(descriptor, signal.SIGTERM)
        deadline = time.monotonic() + grace
        waiting = set(descriptors.values())
        while waiting and time.monotonic() < deadline:
            waiting -= set(select.select(list(waiting), [], [], deadline - time.monotonic())[0])
        for descriptor in waiting:
            _signal(descriptor, signal.SIGKILL)
        if waiting:
            select.select(list(waiting), [], [], grace)
    finally:
        for descriptor in descriptors.values():
            os.close(descriptor)
    for pid in descriptors:
        _reap(pid)


def _signal(descriptor: int, number: int) -> None:
    try:
        signal.pidfd_send_signal(descriptor, number)
    except ProcessLookupError:
        pass


def _reap(pid: int) -> None:
    """Collects the exit status of a child of this process, so it leaves no zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
