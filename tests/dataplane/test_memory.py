"""Pgpool-II's memory against what the settings ask of pgpoolMemoryLimit (components/settings.py,
pgpool_memory_mib): it grows with the children, so the limit must grow with numInitChildren or the container is
OOM-killed once every child has served clients. The stack's pods run with the query cache off, so their shared
memory is the shared relation cache's small store (components/query_cache.py); what the query cache adds is
measured by tests/dataplane/test_query_cache.py."""

from __future__ import annotations

from typing import Iterator

import pytest

from components.query_cache import MIB
from components.settings import pgpool_memory_mib
from tests.dataplane.installs import PgpoolInstall
from tests.dataplane.local_stack import LocalDevStack, running_database
from tests.dataplane.memory_group import memory_mib, serve_every_child
from tests.dataplane.stack_files import DevStack, dev_stack

CHILDREN = (8, 32, 64)
"""Few children, where what all share weighs most, the default, and twice it."""


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
            serve_every_child(sessions, lambda: pgpool.endpoint.connect(user, stack.passwords[user]),
                              lambda conn, _: conn.execute("SELECT count(*) FROM pg_class").fetchone())
        served = memory_mib(pgpool.pid)
        asked = pgpool_memory_mib(stack.settings.pgpool)
        store = stack.settings.pgpool.query_cache.shared_memory_bytes / MIB
        with capsys.disabled():
            print(f"\nmemory of {local.install} with {children} children: {idle:.1f} MiB idle, {served:.1f} MiB after "
                  f"every child served two users, {served - store:.1f} MiB besides the {store:.1f} MiB store in shared "
                  f"memory; the settings ask {asked:.0f} MiB")
        assert idle < served <= asked
    finally:
        pgpool.stop()
