"""Real servers on 127.0.0.1 for the data-plane tests and the benchmark.

A PostgreSQL 15 primary with a streaming hot standby, Pgpool-II, PgBouncer, pgpool2_exporter,
postgres_exporter and Prometheus, each a foreground process in its own process group, run as an unprivileged
user (PostgreSQL refuses root), logging to a file in one work directory. `Service.stop()`
escalates to SIGKILL of the process group; the owners (local_stack.LocalDevStack, the fixtures)
stop every service in a finally block and remove the work directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import psycopg
from psycopg import sql

from tests.dataplane.installs import Identity
from tests.dataplane.pod_network import entered

PG_BIN = Path("/usr/lib/postgresql/15/bin")
LOCALHOST = "127.0.0.1"
RUN_USER = os.environ.get("DATAPLANE_RUN_USER", "postgres")
"""OS user the servers run as when the tests run as root."""
REPLICATION_USER = "replicator"

T = TypeVar("T")


def free_ports(count: int) -> list[int]:
    """Ports the kernel hands out for 127.0.0.1 right now (all held until the last is chosen)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((LOCALHOST, 0))
            ports.append(sock.getsockname()[1])
        return ports


def wait_until(what: str, check: Callable[[], T], timeout: float = 30.0, interval: float = 0.1) -> T:
    """Call `check` until it returns a true value without raising; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception as error:  # noqa: BLE001 - the last error is reported below
            last_error = error
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not ready after {timeout:.0f}s (last error: {last_error!r})")
        time.sleep(interval)


def accepts_connections(endpoint: Endpoint) -> bool:
    """Whether a TCP connection to `endpoint` succeeds (raises if not)."""
    with socket.create_connection((endpoint.host, endpoint.port), timeout=1):
        return True


@dataclass(frozen=True)
class Endpoint:
    """Where a client connects: host, port and the TLS mode to use."""

    port: int
    sslmode: str = "disable"
    host: str = LOCALHOST

    def connect(self, user: str, password: str, dbname: str = "postgres", **kwargs) -> psycopg.Connection:
        return psycopg.connect(
            host=self.host, port=self.port, user=user, password=password, dbname=dbname,
            sslmode=self.sslmode, connect_timeout=10, autocommit=True, **kwargs,
        )

    def libpq_env(self, user: str, password: str, dbname: str) -> dict[str, str]:
        """Environment for libpq tools (pgbench, psql): no password on a command line."""
        return {
            "PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": user, "PGPASSWORD": password,
            "PGDATABASE": dbname, "PGSSLMODE": self.sslmode, "PGCONNECT_TIMEOUT": "10",
            "PGGSSENCMODE": "disable",  # no Kerberos here: skip libpq's GSSAPI probe on every connect
        }


class Workspace:
    """A temporary directory owned by the run user; files in it are written with mode 0600."""

    def __init__(self, prefix: str = "pgpool-dataplane-"):
        self.account = pwd.getpwnam(RUN_USER) if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
        self.root = Path(tempfile.mkdtemp(prefix=prefix))
        self._own(self.root)

    def _own(self, path: Path) -> None:
        if os.geteuid() == 0:
            os.chown(path, self.account.pw_uid, self.account.pw_gid)

    def directory(self, *parts: str) -> Path:
        path = self.root.joinpath(*parts)
        for part in reversed([path, *path.parents]):
            if part.is_relative_to(self.root) and not part.exists():
                part.mkdir(mode=0o700)
                self._own(part)
        return path

    def write(self, relative: str | Path, content: str | bytes, mode: int = 0o600) -> Path:
        """Write a file under the root (`relative` may also be an absolute path inside it)."""
        path = self.root / relative
        self.directory(*path.parent.relative_to(self.root).parts)
        data = content.encode() if isinstance(content, str) else content
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(path, mode)
        self._own(path)
        return path

    def run(self, argv: list[str], env: dict[str, str] | None = None, timeout: float = 120,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command to completion as the run user; stdout and stderr are captured."""
        result = subprocess.run(
            argv, env=self.environment(env), cwd=self.root, capture_output=True, text=True,
            timeout=timeout, **self.identity(),
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def environment(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {"PATH": f"{PG_BIN}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(self.root), "LANG": "C.UTF-8"}
        env.update(extra or {})
        return env

    def identity(self) -> dict:
        """subprocess arguments that run a child as the run user (nothing when not root)."""
        if os.geteuid() != 0:
            return {}
        return {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _exited(pid: int) -> bool:
    """Whether our child `pid` has exited, without reaping it."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


class Service:
    """A foreground server process in its own process group, logging to `log`."""

    stop_signal = signal.SIGTERM

    def __init__(self, workspace: Workspace, name: str, argv: list[str], env: dict[str, str] | None = None,
                 popen: dict | None = None):
        self.workspace = workspace
        self.name = name
        self.argv = argv
        self.env = env
        self.popen = popen
        """subprocess arguments (env, user) that replace the workspace's: a pod's processes (tests/dataplane/pod.py)."""
        self.log = workspace.directory("log") / f"{name}.log"
        self.log_offset = 0
        self.process: subprocess.Popen | None = None
        self.netns: str | None = None
        """The network namespace of the pod it runs in (tests/dataplane/pod_network.py); None: this machine's."""

    def start(self) -> None:
        self.log_offset = self.log.stat().st_size if self.log.exists() else 0
        popen = self.popen if self.popen is not None else {"env": self.workspace.environment(self.env),
                                                            **self.workspace.identity()}
        with open(self.log, "ab") as log, entered(self.netns):
            self.process = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.workspace.root,
                start_new_session=True, **popen,
            )

    @property
    def running(self) -> bool:
        return self.process is not None and not _exited(self.process.pid)

    def stop(self, sig: signal.Signals | None = None, timeout: float = 20.0) -> bool:
        """Signal the process, wait, then SIGKILL its whole process group (children included), as the
        kubelet ends a container; True if it had exited before the SIGKILL.

        The process is reaped only after the group kill: until then its pid, and so the group
        id, cannot be handed to another process.
        """
        if self.process is None:
            return True
        process, self.process = self.process, None
        if not _exited(process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, sig or self.stop_signal)
            deadline = time.monotonic() + timeout
            while not _exited(process.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        exited = _exited(process.pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return exited

    def log_since_start(self) -> str:
        with open(self.log, "rb") as log:
            log.seek(self.log_offset)
            return log.read().decode(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def fail(self, message: str) -> RuntimeError:
        return RuntimeError(f"{self.name}: {message}\n--- {self.log} (tail) ---\n{self.log_tail()}")

    def wait_ready(self, what: str, check: Callable[[], object], timeout: float = 30.0) -> None:
        """Until `check` passes; a process that exits fails at once (wait_until would retry its error)."""
        def exited_or_ready():
            return not self.running or check()

        try:
            wait_until(f"{self.name} {what}", exited_or_ready, timeout)
        except TimeoutError as error:
            raise self.fail(str(error)) from None
        if not self.running:
            raise self.fail("exited during start-up")


# --- PostgreSQL ---------------------------------------------------------------------------


class PostgresServer(Service):
    """One PostgreSQL 15 server, run as `postgres -D datadir` in the foreground, listening on `host`."""

    stop_signal = signal.SIGINT  # fast shutdown

    def __init__(self, workspace: Workspace, name: str, port: int, superuser: str, password: str,
                 host: str = LOCALHOST):
        self.datadir = workspace.root / name
        self.socket_dir = workspace.directory("run", name)
        self.endpoint = Endpoint(port, host=host)
        self.superuser = superuser
        self.password = password
        argv = [str(PG_BIN / "postgres"), "-D", str(self.datadir), "-c", f"port={port}",
                "-c", f"listen_addresses={host}", "-c", f"unix_socket_directories={self.socket_dir}"]
        super().__init__(workspace, name, argv)

    def start(self) -> None:
        super().start()
        self.wait_ready("accepting connections", lambda: self.connect().close() is None, timeout=60)

    def stop(self, sig: signal.Signals | None = None, timeout: float = 30.0) -> None:
        """Fast shutdown (or `sig`); if that hangs, immediate shutdown, then SIGKILL.

        Server processes call setsid(), so the postmaster's group holds only the postmaster;
        they exit by themselves when it dies.
        """
        if sig is None and self.running:
            os.kill(self.process.pid, signal.SIGINT)
            deadline = time.monotonic() + timeout
            while self.running and time.monotonic() < deadline:
                time.sleep(0.05)
            sig = signal.SIGQUIT
        super().stop(sig, timeout=10)

    def connect(self, dbname: str = "postgres") -> psycopg.Connection:
        return self.endpoint.connect(self.superuser, self.password, dbname)

    def query(self, statement: str | sql.Composable, params: tuple = (), dbname: str = "postgres") -> list[tuple]:
        with self.connect(dbname) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []


class PostgresCluster:
    """A primary and one streaming hot standby made from it with pg_basebackup, scram-sha-256 only."""

    def __init__(self, workspace: Workspace, superuser: str, password: str,
                 pods: tuple[tuple[str, str], tuple[str, str]] | None = None):
        """`pods`: (address, network namespace) of the primary's and the standby's pods, each then on
        PostgreSQL's port 5432; by default both on 127.0.0.1, on free ports."""
        self.workspace = workspace
        self.superuser = superuser
        places = [(address, 5432, netns) for address, netns in pods] if pods else [
            (LOCALHOST, port, None) for port in free_ports(2)]
        self.primary, self.standby = (PostgresServer(workspace, name, port, superuser, password, address)
                                      for name, (address, port, _) in zip(("primary", "standby"), places))
        self.primary.netns, self.standby.netns = (netns for _, _, netns in places)
        self.clients = f"{LOCALHOST}/32" if not pods else "samenet"
        self.replication_password = f"repl-{os.urandom(8).hex()}"

    def create(self, settings_conf: str, init_sql: str, tls: tuple[str, str] | None = None,
               auth_method: str = "scram-sha-256", tls_only: bool = False, libraries: tuple[str, ...] = ()) -> None:
        """initdb, start the primary with `settings_conf` appended to postgresql.conf, run `init_sql`
        as the superuser, then clone and start the standby. `tls` (certificate, key) turns ssl on, and
        `tls_only` makes pg_hba.conf accept TCP clients only over TLS (hostssl), as KubeDB's does when
        its Postgres has spec.tls; `auth_method` is pg_hba.conf's method, as KubeDB's clientAuthMode sets it;
        `libraries` are preloaded on both servers (pg_stat_statements: what each server really executed)."""
        pwfile = self.workspace.write("initdb.pw", self.primary.password + "\n")
        try:
            self.workspace.run([
                str(PG_BIN / "initdb"), "-D", str(self.primary.datadir), "-U", self.superuser,
                f"--pwfile={pwfile}", "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-instructions",
                "--no-sync",  # durability against OS crashes is not under test; server crashes are
            ])
        finally:
            pwfile.unlink()
        with open(self.primary.datadir / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# data-plane test cluster: streaming to one hot standby (listen_addresses: on the command line)\n"
                "wal_level = replica\n"
                "wal_keep_size = '256MB'\n"
                "hot_standby = on\n"
                "logging_collector = off\n"
                "log_line_prefix = '%m [%p] %u@%d '\n"
                + ("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n" if tls else "")
                + (f"shared_preload_libraries = '{','.join(libraries)}'\n" if libraries else "")
                + "# the program's settings (KubeDB user.conf)\n"
                + settings_conf
            )
        if tls:
            for name, pem in zip(("server.crt", "server.key"), tls):
                self.workspace.write(self.primary.datadir / name, pem)
        host = "hostssl" if tls_only else "host"
        if tls_only:  # the harness's own sessions (the superuser's, the standby's checks) need TLS too
            for server in (self.primary, self.standby):
                server.endpoint = Endpoint(server.endpoint.port, "require", server.endpoint.host)
        (self.primary.datadir / "pg_hba.conf").write_text(
            f"{host} all all {self.clients} {auth_method}\n"
            f"{host} replication {REPLICATION_USER} {self.clients} {auth_method}\n"
        )
        self.primary.start()
        with self.primary.connect() as conn:
            # Stored again under settings_conf's password_encryption, as KubeDB sets it after initdb.
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(self.superuser), sql.Literal(self.primary.password)))
        script = self.workspace.write("init.sql", init_sql)
        try:
            self.workspace.run(
                ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(script)],
                env=self.primary.endpoint.libpq_env(self.superuser, self.primary.password, "postgres"),
            )
        finally:
            script.unlink()
        with self.primary.connect() as conn:
            conn.execute(sql.SQL("CREATE ROLE {} WITH LOGIN REPLICATION PASSWORD {}").format(
                sql.Identifier(REPLICATION_USER), sql.Literal(self.replication_password)))
        self.clone_standby(self.standby)

    def clone_standby(self, standby: PostgresServer) -> None:
        """Make `standby` a streaming hot standby of the running primary (pg_basebackup), start it
        and wait until it has caught up. The caller stops it."""
        self.workspace.run(
            [str(PG_BIN / "pg_basebackup"), "-h", self.primary.endpoint.host, "-p", str(self.primary.endpoint.port),
             "-U", REPLICATION_USER, "-D", str(standby.datadir), "-R", "-X", "stream", "-c", "fast", "-w",
             "--no-sync"],
            env={"PGPASSWORD": self.replication_password},
        )
        standby.start()
        self.wait_streaming(standby=standby)

    def wait_streaming(self, timeout: float = 60, standby: PostgresServer | None = None) -> None:
        """Until the standby (or `standby`) streams from the primary and has replayed the primary's current WAL."""
        target = self.primary.query("SELECT pg_current_wal_lsn()")[0][0]
        standby = standby or self.standby

        def caught_up():
            rows = standby.query(
                "SELECT status = 'streaming' AND pg_last_wal_replay_lsn() >= %s::pg_lsn FROM pg_stat_wal_receiver",
                (target,))
            return rows and rows[0][0]

        wait_until("standby streaming from the primary", caught_up, timeout)

    def close(self) -> None:
        with contextlib.ExitStack() as cleanup:  # the standby, then the primary, even if one fails
            cleanup.callback(self.primary.stop)
            cleanup.callback(self.standby.stop)


# --- Pgpool-II, PgBouncer, exporter, Prometheus ---------------------------------------------


class PgpoolServer(Service):
    """Pgpool-II run in the foreground by `argv` (pgpool -n ...)."""

    stop_signal = signal.SIGINT  # fast shutdown

    def __init__(self, workspace: Workspace, name: str, argv: list[str], endpoint: Endpoint, pcp_port: int,
                 popen: dict | None = None):
        self.endpoint = endpoint
        self.pcp_port = pcp_port
        super().__init__(workspace, name, argv, popen=popen)

    def start(self) -> None:
        super().start()
        self.wait_ready("started", self._started)

    def _started(self) -> bool:
        if "successfully started" not in self.log_since_start():
            return False
        with socket.create_connection((self.endpoint.host, self.endpoint.port), timeout=1):
            return True

    @property
    def pid(self) -> int:
        return self.process.pid


class PgBouncer(Service):
    """PgBouncer in transaction mode in front of one server, scram-sha-256 with SCRAM secrets.

    With `tls` (certificate, key) clients must use TLS and so must PgBouncer to the server.
    Each instance of a run needs its own `name` (its directory and log)."""

    def __init__(self, workspace: Workspace, server: Endpoint, scram_secrets: dict[str, str], pool_size: int,
                 tls: tuple[str, str] | None = None, name: str = "pgbouncer"):
        self.endpoint = Endpoint(free_ports(1)[0], "require" if tls else "disable")
        directory = workspace.directory(name)
        users = "".join(f'"{user}" "{secret}"\n' for user, secret in scram_secrets.items())
        workspace.write(f"{name}/userlist.txt", users)
        tls_lines = ""
        if tls:
            cert = workspace.write(f"{name}/tls.crt", tls[0])
            key = workspace.write(f"{name}/tls.key", tls[1])
            tls_lines = (f"client_tls_sslmode = require\nclient_tls_cert_file = {cert}\nclient_tls_key_file = {key}\n"
                         "server_tls_sslmode = require\n")
        workspace.write(f"{name}/pgbouncer.ini", (
            "[databases]\n"
            f"* = host={server.host} port={server.port}\n"
            "[pgbouncer]\n"
            f"listen_addr = {LOCALHOST}\n"
            f"listen_port = {self.endpoint.port}\n"
            f"unix_socket_dir = {directory}\n"
            "auth_type = scram-sha-256\n"
            f"auth_file = {directory}/userlist.txt\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {pool_size}\n"
            "max_client_conn = 1000\n"
            "ignore_startup_parameters = extra_float_digits\n"
            + tls_lines
        ))
        super().__init__(workspace, name, ["/usr/sbin/pgbouncer", str(directory / "pgbouncer.ini")])

    def start(self) -> None:
        super().start()
        self.wait_ready("listening", lambda: accepts_connections(self.endpoint))


class HAProxy(Service):
    """Debian's HAProxy as a round-robin TCP front standing in for a Service: it spreads connections,
    never queries, over its servers in turn, as kube-proxy does, with no retries and no health checks,
    as kube-proxy has none (a connection sent to a pod that refuses it fails). `servers` are there from
    the start; `slots` are named, disabled places whose address and state change at runtime through the
    admin socket, as pods come and go."""

    def __init__(self, workspace: Workspace, name: str, servers: list[Endpoint] = (), slots: list[str] = ()):
        self.endpoint = Endpoint(free_ports(1)[0])
        self.proxy = name
        self.socket = workspace.directory(name) / "admin.sock"
        lines = [
            "global", f"    stats socket {self.socket} mode 600 level admin", "    maxconn 4096", "    nbthread 1",
            "defaults", "    mode tcp", "    retries 0", "    timeout connect 5s", "    timeout client 1h",
            "    timeout server 1h",
            f"listen {name}", f"    bind {LOCALHOST}:{self.endpoint.port}", "    balance roundrobin",
            *(f"    server server{index} {s.host}:{s.port}" for index, s in enumerate(servers)),
            *(f"    server {slot} {LOCALHOST}:1 disabled" for slot in slots),
        ]
        config = workspace.write(f"{name}/haproxy.cfg", "\n".join(lines) + "\n")
        super().__init__(workspace, name, ["/usr/sbin/haproxy", "-db", "-f", str(config)])

    def start(self) -> None:
        super().start()
        self.wait_ready("listening", lambda: accepts_connections(self.endpoint))

    def admin(self, command: str, success: str = "") -> None:
        """A runtime API command; RuntimeError unless HAProxy answers `success` (or nothing)."""
        with socket.socket(socket.AF_UNIX) as admin:
            admin.connect(str(self.socket))
            admin.sendall(command.encode() + b"\n")
            answer = b"".join(iter(lambda: admin.recv(4096), b"")).decode().strip()
        if answer and not (success and success in answer):
            raise RuntimeError(f"haproxy: {command}: {answer}")

    def add(self, slot: str, port: int) -> None:
        """The slot's endpoint is ready: new connections may go to it."""
        self.admin(f"set server {self.proxy}/{slot} addr {LOCALHOST} port {port}", success="changed")
        self.admin(f"set server {self.proxy}/{slot} state ready")

    def remove(self, slot: str) -> None:
        """Out of the endpoints: no new connections; established ones go on, as with kube-proxy."""
        self.admin(f"set server {self.proxy}/{slot} state maint")


class Memcached(Service):
    """Debian's memcached on a free port of 127.0.0.1, TCP only."""

    def __init__(self, workspace: Workspace, name: str = "memcached", megabytes: int = 16):
        self.endpoint = Endpoint(free_ports(1)[0])
        super().__init__(workspace, name, ["/usr/bin/memcached", "-l", LOCALHOST, "-p", str(self.endpoint.port),
                                           "-U", "0", "-m", str(megabytes)])

    def start(self) -> None:
        super().start()
        self.wait_ready("listening", lambda: accepts_connections(self.endpoint))


class MetricsExporter(Service):
    """A Prometheus exporter `binary` serving /metrics on a free port of 127.0.0.1, or at `address`:`port`."""

    def __init__(self, workspace: Workspace, name: str, binary: str | Path, env: dict[str, str] | None = None,
                 popen: dict | None = None, address: str = LOCALHOST, port: int | None = None):
        self.address, self.port = address, port or free_ports(1)[0]
        super().__init__(workspace, name, self.command(binary), env, popen)

    def command(self, binary: str | Path) -> list[str]:
        return [str(binary), f"--web.listen-address={self.listen_address}"]

    @property
    def listen_address(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.listen_address}/metrics"

    def start(self, wait: bool = True) -> None:
        """Start it and, unless `wait` is false, wait until it serves /metrics."""
        super().start()
        if wait:
            self.wait_ready("serving /metrics", self.metrics)

    def metrics(self) -> str:
        with urllib.request.urlopen(self.url, timeout=10) as response:
            return response.read().decode()


@dataclass(frozen=True)
class ExporterImage:
    """The pgpool/pgpool2_exporter image as its Dockerfile builds it (scripts/tools.sh puts the Dockerfile of
    the source it built beside the binary): ENV defaults, where COPY puts the binary, and CMD."""

    env: dict[str, str]
    binary: str
    command: list[str]

    @classmethod
    def read(cls, dockerfile: Path) -> "ExporterImage":
        env, binary, command = {}, None, None
        for line in dockerfile.read_text().splitlines():
            keyword, _, rest = line.strip().partition(" ")
            if keyword == "ENV":  # the legacy "ENV NAME value" form, the only one the file uses
                name, value = rest.strip().split(None, 1)
                env[name] = value
            elif keyword == "COPY":
                binary = rest.split()[-1]
            elif keyword == "CMD":
                command = json.loads(rest)
        if binary is None or command is None:
            raise ValueError(f"{dockerfile}: no COPY or no CMD line")
        return cls(env, binary, command)


class Exporter(MetricsExporter):
    """pgpool2_exporter run by the image's own command line (`sh -c` making DATA_SOURCE_USER/PASS/URI from
    the container's environment), on the image's ENV defaults overridden by `container_env`, as the
    container's user. Two things are mapped onto this machine: the binary's path in the image, and its port
    (a free one on 127.0.0.1, given as --web.listen-address at the end of the command line)."""

    def __init__(self, workspace: Workspace, binary: Path, container_env: dict[str, str], user: Identity,
                 name: str = "pgpool2_exporter", address: str = LOCALHOST, port: int | None = None):
        self.image = ExporterImage.read(binary.parent / "Dockerfile")
        # A copy the container's user can run (the tool cache may be in root's home).
        directory = workspace.directory(name)
        directory.chmod(0o711)
        local_binary = workspace.write(directory / "pgpool2_exporter", binary.read_bytes(), mode=0o755)
        popen = {"env": {**self.image.env, **container_env, "PATH": "/usr/bin:/bin"}}
        if os.geteuid() == 0:
            popen.update(user=user.uid, group=user.gid, extra_groups=[])
        super().__init__(workspace, name, local_binary, popen=popen, address=address, port=port)

    def command(self, binary: str | Path) -> list[str]:
        shell, option, script = self.image.command
        if not script.endswith(self.image.binary):
            raise ValueError(f"the image's command line does not end with {self.image.binary}: {script!r}")
        local = f"{shlex.quote(str(binary))} --web.listen-address={self.listen_address}"
        return [shell, option, script[:-len(self.image.binary)] + local]


POSTGRES_EXPORTER = Path("/usr/bin/prometheus-postgres-exporter")
"""Debian's postgres_exporter (bookworm: 0.11.1)."""


class PostgresExporter(MetricsExporter):
    """Debian's postgres_exporter watching one server as `user`."""

    def __init__(self, workspace: Workspace, name: str, server: Endpoint, user: str, password: str,
                 address: str = LOCALHOST, port: int | None = None):
        dsn = {"host": server.host, "port": str(server.port), "user": user, "dbname": "postgres",
               "sslmode": server.sslmode}
        # The exporter cuts DATA_SOURCE_NAME at every comma and space (and logs it whole when that
        # fails), so the password goes where its driver, lib/pq, also reads it: PGPASSWORD.
        env = {"DATA_SOURCE_NAME": " ".join(f"{key}={value}" for key, value in dsn.items()), "PGPASSWORD": password}
        super().__init__(workspace, name, POSTGRES_EXPORTER, env, address=address, port=port)


class Prometheus(Service):
    """Debian's Prometheus with a static scrape target and the given rule files."""

    def __init__(self, workspace: Workspace, config: str, address: str = LOCALHOST, port: int | None = None):
        self.address, self.port = address, port or free_ports(1)[0]
        # Its own directory: a time series database left by an earlier Prometheus would answer its first queries.
        home = Path("prometheus", str(self.port))
        shutil.rmtree(workspace.root / home, ignore_errors=True)
        config_path = workspace.write(home / "prometheus.yml", config)
        data = workspace.directory(*home.parts, "data")
        super().__init__(workspace, "prometheus", [
            "/usr/bin/prometheus", f"--config.file={config_path}", f"--storage.tsdb.path={data}",
            f"--web.listen-address={address}:{self.port}",
        ])

    def start(self) -> None:
        super().start()
        self.wait_ready("ready", lambda: self.get("/-/ready"))

    def get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://{self.address}:{self.port}{path}", timeout=10) as response:
            return response.read().decode()

    def api(self, path: str, **params: str) -> dict | list:
        """The `data` of an HTTP API answer (/api/v1/<path>?<params>)."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        body = json.loads(self.get(f"/api/v1/{path}{query}"))
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus /api/v1/{path}{query}: {body}")
        return body["data"]


@contextlib.contextmanager
def stopping(*services: Service) -> Iterator[None]:
    """Stop the given services on the way out, whatever happens inside."""
    try:
        yield
    finally:
        for service in reversed(services):
            service.stop()
