"""Pgpool-II's memory against what the settings ask of pgpoolMemoryLimit (components/settings.py,
pgpool_memory_mib): it grows with the children, so the limit must grow with numInitChildren or the container is
OOM-killed once every child has served clients."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest

from components.settings import pgpool_memory_mib
from tests.dataplane.cpu_groups import descendants
from tests.dataplane.harness import wait_until
from tests.dataplane.installs import PgpoolInstall
from tests.dataplane.local_stack import LocalDevStack, StackPgpool, running_database
from tests.dataplane.stack_files import DevStack, dev_stack

CHILDREN = (32, 64)


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


def serve_every_child(pgpool: StackPgpool, user: str, password: str, sessions: int) -> None:
    """`sessions` sessions of `user` open at once (so each holds a child of its own), each running a query."""
    everyone_in = threading.Barrier(sessions)

    def session() -> None:
        conn = wait_until(f"{user} logged in", lambda: pgpool.endpoint.connect(user, password))
        with conn:
            conn.execute("SELECT count(*) FROM pg_class").fetchone()
            everyone_in.wait(timeout=120)

    with ThreadPoolExecutor(sessions) as pool:
        for future in [pool.submit(session) for _ in range(sessions)]:
            future.result()


def sized(install: PgpoolInstall, children: int) -> DevStack:
    return dev_stack(pgpoolImage=install.image, numInitChildren=str(children), pgpoolReplicas="1",
                     postgresMaxConnections=str(2 * max(CHILDREN) + 20))


@pytest.fixture(scope="module")
def memory_database(install: PgpoolInstall) -> Iterator[LocalDevStack]:
    """A database of its own, with room for the largest pool's connections to each server."""
    with running_database(sized(install, max(CHILDREN)), install) as local:
        yield local


@pytest.mark.parametrize("children", CHILDREN)
def test_memory_after_every_child_served_fits_the_limit_the_settings_ask(
        children: int, memory_database: LocalDevStack, capsys: pytest.CaptureFixture[str]) -> None:
    local = memory_database
    stack = sized(local.install, children)
    pgpool = local.pgpool(f"pgpool-memory-{children}", stack=stack)
    try:
        idle = memory_mib(pgpool.pid)
        # Every child but the reserved one and one spare, as two users: max_pool 2 keeps both pairs cached.
        for user in (stack.app_user, stack.monitor_user):
            sessions = children - stack.settings.pgpool.reserved_connections - 1
            serve_every_child(pgpool, user, stack.passwords[user], sessions)
        served = memory_mib(pgpool.pid)
        with capsys.disabled():
            print(f"\nmemory of {local.install} with {children} children: {idle:.1f} MiB idle, {served:.1f} MiB after "
                  f"every child served two users; the settings ask {pgpool_memory_mib(children):.0f} MiB")
        assert idle < served <= pgpool_memory_mib(children)
    finally:
        pgpool.stop()
