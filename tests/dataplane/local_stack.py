"""The dev stack on this machine: its database, and Pgpool-II instances running the program's files."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Callable, Iterator

from components.pgpool_config import PgpoolPaths
from tests.dataplane.harness import Endpoint, PgpoolServer, PostgresCluster, Workspace, free_ports
from tests.dataplane.stack_files import DevStack, LocalLayout, dev_stack, local_command, local_files

KEEP_ENV = "DATAPLANE_KEEP"
"""Set to 1 to keep the work directory (data, logs, files) after the run, for debugging."""


def local_pgpool_paths(workspace: Workspace, *under: str) -> PgpoolPaths:
    """Pgpool-II's files in directory `under` of the workspace (its root by default), one
    subdirectory each for config, secrets, sockets and logs."""
    base = workspace.directory(*under)
    for part in ("config", "secrets", "run", "log"):
        workspace.directory(*under, part)
    return PgpoolPaths(config_dir=str(base / "config"), secrets_dir=str(base / "secrets"),
                       socket_dir=str(base / "run"), pid_file=str(base / "run" / "pgpool.pid"),
                       logdir=str(base / "log"))


class StackPgpool(PgpoolServer):
    """Pgpool-II started by the program's command line on the local copy of the program's files."""

    def __init__(self, local: "LocalDevStack", stack: DevStack, name: str, layout: LocalLayout,
                 files: dict[str, Path]):
        self.stack = stack
        self.layout = layout
        self.files = files
        self.container_ports = {"port": stack.settings.pgpool.port, "pcp_port": stack.settings.pgpool.pcp_port}
        argv = local_command(stack.pgpool_command, layout, self.container_ports)
        sslmode = "require" if stack.settings.pgpool.ssl else "disable"
        super().__init__(local.workspace, name, argv, Endpoint(layout.port, sslmode), layout.pcp_port)

    def command(self, argv: tuple[str, ...]) -> list[str]:
        """A Deployment command (a probe) mapped to this instance's paths and ports."""
        return local_command(argv, self.layout, self.container_ports)

    def environment(self, env: dict[str, str]) -> dict[str, str]:
        """A container's environment with container paths mapped to this instance's."""
        paths = self.layout.path_map()
        return {name: paths.get(value, value) for name, value in env.items()}


class LocalDevStack:
    """A PostgreSQL primary and hot standby set up from the program's init.sql and user.conf,
    and any number of Pgpool-II instances in front of them, all in one work directory."""

    def __init__(self, stack: DevStack | None = None):
        self.stack = stack or dev_stack()
        self.workspace = Workspace()
        superuser = self.stack.superuser
        self.cluster = PostgresCluster(self.workspace, superuser, self.stack.passwords[superuser])
        self.pgpools: list[StackPgpool] = []

    def start_database(self, tls: bool = False) -> None:
        """Primary and standby; with `tls` they accept TLS with the stack's certificate."""
        certificate = (self.stack.secret_files["tls.crt"], self.stack.secret_files["tls.key"]) if tls else None
        method = self.stack.settings.pgpool.password_encryption  # KubeDB's clientAuthMode follows it
        self.cluster.create(self.stack.user_conf, self.stack.init_sql, certificate, method)

    def layout(self, name: str, replica_port: int | None = None) -> LocalLayout:
        port, pcp_port = free_ports(2)
        return LocalLayout(local_pgpool_paths(self.workspace, name), port, pcp_port,
                           self.cluster.primary.endpoint.port, replica_port or self.cluster.standby.endpoint.port)

    def pgpool(self, name: str = "pgpool", edit: Callable[[dict[str, str]], None] | None = None,
               stack: DevStack | None = None, replica_port: int | None = None) -> StackPgpool:
        """Start Pgpool-II on the local copy of the files the program generated (for `stack`, by
        default this one's; another must share its secrets, see dev_stack).

        `edit` changes the files after the copy was checked: the tests that break one on purpose,
        and the benchmark's hand-edited variants. `replica_port` puts node 1 (the read-only
        Service) on another port than the standby's: the benchmark's front to several standbys.
        """
        stack = stack or self.stack
        layout = self.layout(name, replica_port)
        files = local_files(stack, layout)
        if edit:
            edit(files)
        targets = layout.file_paths()
        written = {file: self.workspace.write(targets[file], text) for file, text in files.items()}
        server = StackPgpool(self, stack, name, layout, written)
        self.pgpools.append(server)
        server.start()
        return server

    def close(self) -> None:
        """Stop every Pgpool-II, then the database, then remove the work directory; each step
        runs even if an earlier one failed."""
        with contextlib.ExitStack() as cleanup:  # callbacks run last-in, first-out
            if os.environ.get(KEEP_ENV) != "1":
                cleanup.callback(self.workspace.remove)
            cleanup.callback(self.cluster.close)
            for server in self.pgpools:
                cleanup.callback(server.stop)


@contextlib.contextmanager
def running_database(stack: DevStack | None = None) -> Iterator[LocalDevStack]:
    """A LocalDevStack whose database is up for the block, and stopped (with its Pgpool-IIs) after."""
    local = LocalDevStack(stack)
    try:
        local.start_database()
        yield local
    finally:
        local.close()
