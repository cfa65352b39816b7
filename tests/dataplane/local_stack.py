"""The dev stack on this machine: its database, and Pgpool-II pods running the program's files."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from typing import Callable, Iterator

from components.pgpool_config import PgpoolPaths
from tests.dataplane.harness import Endpoint, PgpoolServer, PostgresCluster, Workspace, free_ports
from tests.dataplane.installs import PgpoolInstall, debian12
from tests.dataplane.pod import LocalPod
from tests.dataplane.stack_files import DevStack, LocalPorts, dev_stack, local_files, local_objects

KEEP_ENV = "DATAPLANE_KEEP"
"""Set to 1 to keep the work directory (data, logs, files) after the run, for debugging."""


def local_pgpool_paths(workspace: Workspace, *under: str) -> PgpoolPaths:
    """Pgpool-II's files in directory `under` of the workspace (its root by default), one
    subdirectory each for config, secrets, sockets, logs and the query cache's oid maps."""
    base = workspace.directory(*under)
    for part in ("config", "secrets", "run", "log", "query-cache"):
        workspace.directory(*under, part)
    return PgpoolPaths(config_dir=str(base / "config"), secrets_dir=str(base / "secrets"),
                       socket_dir=str(base / "run"), pid_file=str(base / "run" / "pgpool.pid"),
                       work_dir=str(base / "log"), query_cache_dir=str(base / "query-cache"))


class StackPgpool(PgpoolServer):
    """Pgpool-II started by the Deployment's command on the local copy of the program's files, in a
    LocalPod whose init step has run, as the pod's uid."""

    def __init__(self, local: "LocalDevStack", stack: DevStack, name: str, pod: LocalPod, ports: LocalPorts,
                 prefix: tuple[str, ...] = ()):
        self.stack = stack
        self.pod = pod
        self.files = pod.files()
        """Where pgpool reads each generated file, by name."""
        argv, popen = pod.popen("pgpool", stack.pgpool_command, stack.probe_env)
        argv = [*prefix, *argv]
        sslmode = "require" if stack.settings.pgpool.ssl else "disable"
        super().__init__(local.workspace, name, argv, Endpoint(ports.port, sslmode, ports.host), ports.pcp_port, popen)
        self.netns = pod.netns

    def probe(self, argv: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
        """A probe (or hook) of the pgpool container, run as the kubelet runs it in the container."""
        return self.pod.run("pgpool", argv, self.stack.probe_env)

    def command(self, argv: tuple[str, ...]) -> list[str]:
        """A command of the pgpool container (a probe) on this pod's paths, ports and image view, for a
        caller that runs it its own way (this machine's Pgpool-II only; probe() runs it as the pod)."""
        return self.pod.command("pgpool", argv)

    def environment(self, env: dict[str, str]) -> dict[str, str]:
        """The pgpool container's environment on this pod's paths, with the image's PATH."""
        return self.pod.environment("pgpool", env)

    def pcp(self, program: str, *args: str, host: str | None = None,
            pcppass: str = PgpoolPaths().pcppass) -> subprocess.CompletedProcess[str]:
        """A PCP client of this install, in the pod, with the generated .pcppass (or another file in the
        container); on PCP's unix socket unless `host` is given."""
        socket_dir = PgpoolPaths().socket_dir
        argv = [self.pod.install.program(program), "-h", host or self.pod.path("pgpool", socket_dir),
                "-p", str(self.pcp_port), "-U", self.stack.settings.pcp_user, "-w", *args]
        command, popen = self.pod.install.popen(argv, self.pod.identity)
        env = {"PCPPASSFILE": self.pod.path("pgpool", pcppass), "PATH": "/usr/bin:/bin"}
        return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, **popen)


class LocalDevStack:
    """A PostgreSQL primary and hot standby set up from the program's init.sql and user.conf, and
    any number of Pgpool-II pods in front of them, all in one work directory."""

    def __init__(self, stack: DevStack | None = None, install: PgpoolInstall | None = None,
                 database_pods: tuple[tuple[str, str], tuple[str, str]] | None = None):
        """`database_pods`: (address, network namespace) of the primary's and the standby's pods
        (tests/dataplane/pod_network.py); by default the database runs on 127.0.0.1."""
        self.stack = stack or dev_stack()
        self.install = install or debian12()
        self.workspace = Workspace()
        self.workspace.root.chmod(0o711)  # the pods' uid reaches its own directories in it
        superuser = self.stack.superuser
        self.cluster = PostgresCluster(self.workspace, superuser, self.stack.passwords[superuser], database_pods)
        self.pgpools: list[StackPgpool] = []
        scratch = self.install.scratch
        self.pods_dir = f"{scratch}/{self.workspace.root.name}" if scratch else str(self.workspace.root)
        self._pods = 0

    def start_database(self, tls: bool = False, certificate: tuple[str, str] | None = None,
                       tls_only: bool = False, libraries: tuple[str, ...] = ()) -> None:
        """Primary and standby; with `tls` they accept TLS with the stack's certificate (or `certificate`,
        PEM certificate and key), with `tls_only` nothing else, as KubeDB's with spec.tls; `libraries`
        preloaded (a test's instruments, not the program's settings)."""
        if tls and certificate is None:
            certificate = (self.stack.secret_files["tls.crt"], self.stack.secret_files["tls.key"])
        method = self.stack.settings.pgpool.password_encryption  # KubeDB's clientAuthMode follows it
        self.cluster.create(self.stack.user_conf, self.stack.init_sql, certificate if tls else None, method, tls_only,
                            libraries)

    def pod(self, stack: DevStack | None = None, replica_port: int | None = None,
            place: tuple[str, str] | None = None) -> tuple[LocalPod, LocalPorts]:
        """A new pod's place (nothing created yet) and the ports standing in for its container's: free
        ones on 127.0.0.1, or, with `place` (address, network namespace), the container's own."""
        stack = stack or self.stack
        self._pods += 1
        pgpool = stack.settings.pgpool
        port, pcp_port = (pgpool.port, pgpool.pcp_port) if place else free_ports(2)
        primary, standby = self.cluster.primary.endpoint, self.cluster.standby.endpoint
        ports = LocalPorts(port, pcp_port, primary.port, replica_port or standby.port,
                           place[0] if place else LocalPorts.host, primary.host, standby.host)
        pod = LocalPod(stack.pod, self.install, f"{self.pods_dir}/p{self._pods}",
                       {pgpool.port: port, pgpool.pcp_port: pcp_port}, place[1] if place else None)
        return pod, ports

    def pgpool(self, name: str = "pgpool", edit: Callable[[dict[str, str]], None] | None = None,
               stack: DevStack | None = None, replica_port: int | None = None,
               extra_objects: dict[str, dict[str, str]] | None = None,
               place: tuple[str, str] | None = None, prefix: tuple[str, ...] = ()) -> StackPgpool:
        """Start a Pgpool-II pod on the local copy of the files the program generated (for `stack`, by
        default this one's; another must share its secrets, see dev_stack): its volumes, its init step,
        then pgpool by the Deployment's command.

        `edit` changes the files after the copy was checked: the tests that break one on purpose,
        and the benchmark's hand-edited variants. `replica_port` puts node 1 (the read-only
        Service) on another port than the standby's: the benchmark's front to several standbys.
        `extra_objects` are the Secrets the pod mounts that others make (cert-manager's, for KubeDB), by name.
        `place` puts the pod at an address in a network namespace of its own (tests/dataplane/pod_network.py).
        `prefix` goes before the container's command, as the container's runtime would: a memory limit.
        """
        stack = stack or self.stack
        pod, ports = self.pod(stack, replica_port, place)
        files = local_files(stack, pod, ports)
        if edit:
            edit(files)
        pod.create({**local_objects(stack, files), **(extra_objects or {})})
        init = pod.run("prepare-secrets", stack.init_command)
        if init.returncode != 0:
            raise RuntimeError(f"{name}: the init step exited {init.returncode}: {init.stderr}")
        server = StackPgpool(self, stack, name, pod, ports, prefix)
        self.pgpools.append(server)
        server.start()
        return server

    def close(self) -> None:
        """Stop every Pgpool-II, then the database, then remove the work directory; each step
        runs even if an earlier one failed."""
        with contextlib.ExitStack() as cleanup:  # callbacks run last-in, first-out
            if os.environ.get(KEEP_ENV) != "1":
                cleanup.callback(self.workspace.remove)
                if self.install.scratch:
                    cleanup.callback(shutil.rmtree, self.install.host_path(self.pods_dir), True)
            cleanup.callback(self.cluster.close)
            for server in self.pgpools:
                cleanup.callback(server.stop)


@contextlib.contextmanager
def running_database(stack: DevStack | None = None, install: PgpoolInstall | None = None,
                     libraries: tuple[str, ...] = ()) -> Iterator[LocalDevStack]:
    """A LocalDevStack whose database is up for the block, and stopped (with its Pgpool-IIs) after."""
    local = LocalDevStack(stack, install)
    try:
        local.start_database(libraries=libraries)
        yield local
    finally:
        local.close()
