"""The benchmark's database: the dev stack's primary and hot standby, a second hot standby, and
HAProxy in front of both standbys standing in for the read-only Service; each server in a CPU group."""

from __future__ import annotations

import contextlib

from tests.dataplane.cpu_groups import CpuGroup, CpuGroups
from tests.dataplane.harness import HAProxy, PostgresServer, Service, free_ports
from tests.dataplane.installs import PgpoolInstall
from tests.dataplane.local_stack import LocalDevStack
from tests.dataplane.stack_files import DevStack

SERVERS = ("primary", "standby1", "standby2")


class BenchStack(LocalDevStack):
    """LocalDevStack with two hot standbys behind a round-robin front, as the dev stack runs them
    (postgresReplicas 3: a primary and two standbys, node 1 = the read-only Service)."""

    def __init__(self, stack: DevStack, groups: CpuGroups, install: PgpoolInstall):
        super().__init__(stack, install)
        superuser = self.stack.superuser
        self.standby2 = PostgresServer(self.workspace, "standby2", free_ports(1)[0], superuser,
                                       self.stack.passwords[superuser])
        self.groups = groups
        self.services: list[Service] = []
        """Services started by `start`, stopped by `close` before the database."""
        self.read_only: HAProxy | None = None

    @property
    def servers(self) -> dict[str, PostgresServer]:
        """The PostgreSQL servers by their name in SERVERS."""
        return dict(zip(SERVERS, (self.cluster.primary, self.cluster.standby, self.standby2)))

    def start_database(self, tls: bool = False) -> None:
        """Primary, standby, a second standby cloned from the primary, and the front to both standbys."""
        super().start_database(tls)
        self.services.append(self.standby2)
        self.cluster.clone_standby(self.standby2)
        for name, server in self.servers.items():
            self.groups.group(name).add_tree(server.process.pid)
        standbys = [self.cluster.standby.endpoint, self.standby2.endpoint]
        self.read_only = self.start(HAProxy(self.workspace, "read-only", standbys), "haproxy")

    def start(self, service: Service, group: str) -> Service:
        """Start `service` in CPU group `group`; `close` stops it."""
        self.services.append(service)
        service.start()
        self.groups.group(group).add_tree(service.process.pid)
        return service

    def group(self, name: str) -> CpuGroup:
        return self.groups.group(name)

    def wait_streaming(self) -> None:
        for standby in (self.cluster.standby, self.standby2):
            self.cluster.wait_streaming(timeout=300, standby=standby)

    def close(self) -> None:
        """Stop the services started here, then what LocalDevStack stops; each step runs even if
        an earlier one failed."""
        with contextlib.ExitStack() as cleanup:  # callbacks run last-in, first-out
            cleanup.callback(super().close)
            for service in self.services:
                cleanup.callback(service.stop)
