"""Rotating every password of the dev stack under login load, on real PostgreSQL and Pgpool-II.

The old and the new stack are both what the program generates, the new one with new passwords for
the application user, the monitor user and the superuser (KubeDB's, with dbPasswordPrevious set
as `scripts/init_stack.py --rotate dbPassword` leaves it). The password Job runs its own script
and roles.sql from the generated Job and Secret, the way the postgres image runs them (its sh,
psql and pg_isready; Debian's here); only PGHOST/PGPORT and the two mount paths are mapped.

The order is proved both ways: Pgpool-II first leaves the new pod unable to log in (its readiness
probe fails, so a rollout with maxUnavailable 0 never progresses); the Job first lets it log in
from its first start. Then, under load, the Deployment's rollout (maxSurge 1, maxUnavailable 0)
is replayed: logins through a round-robin "Service" with the old and the new password are
counted per phase and printed. Timings are printed, never asserted.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import psycopg
import pytest
from psycopg import sql

from components import password_rotation
from components.pgpool_config import pool_passwd_entry
from components.scram import saslprep, scram_salt, scram_sha_256_verifier
from components.settings import load_settings
from tests.dataplane.harness import Endpoint, wait_until
from tests.dataplane.installs import debian12
from tests.dataplane.local_stack import LocalDevStack, StackPgpool, running_database
from tests.dataplane.pod_network import entered
from tests.dataplane.stack_files import DevStack, awkward_secrets, dev_stack, read_dev_stack
from tests.program_run import run_program

LOAD_CLIENTS = 2
"""Login loops per password (old, new): each opens a new session per attempt, as an app without a pool."""
LOGINS_PER_PHASE = 20
"""Login attempts with each password between two steps of the rollout: the load each step meets."""


@dataclass(frozen=True)
class GeneratedJob:
    """The password Job of one program run: its script, environment and mounted files."""

    script: str
    env: dict[str, str]
    superuser_files: dict[str, str]
    rotation_files: dict[str, str]


def generated_job(stack: DevStack, run) -> GeneratedJob:
    [job] = run.of_type("batch/v1:Job")
    pod = job.props["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"][:2] == ["sh", "-c"]
    secrets = {s.props["metadata"]["name"]: s.props.get("stringData", {}) for s in run.of_type("core/v1:Secret")}
    volumes = {v["name"]: v["secret"] for v in pod["volumes"]}
    superuser = volumes["superuser"]
    return GeneratedJob(
        script=container["command"][2],
        env={e["name"]: e["value"] for e in container["env"]},
        superuser_files={item["path"]: secrets[superuser["secretName"]][item["key"]] for item in superuser["items"]},
        rotation_files=dict(secrets[volumes["roles"]["secretName"]]),
    )


def rotated_stack() -> tuple[DevStack, GeneratedJob]:
    """The dev stack with new passwords for the app, the monitor and the superuser (the old superuser
    password kept as dbPasswordPrevious), and its password Job."""
    config, secrets = awkward_secrets()
    config = {**config, "pgpoolImage": debian12().image}  # the release of the Pgpool-II this module runs
    rotated = dict(secrets)
    rotated["dbPasswordPrevious"] = secrets["dbPassword"]
    rotated["dbPassword"] = "new-" + secrets["dbPassword"][::-1]
    # Non-ASCII that SASLprep leaves as is (the settings refuse what it would change, see below).
    rotated["monitorPassword"] = "new é " + secrets["monitorPassword"][::-1]
    rotated["userPasswords"] = json.dumps({user: "neu ö " + password[::-1]
                                           for user, password in json.loads(secrets["userPasswords"]).items()})
    run = run_program(config, rotated, "dev")
    stack = read_dev_stack(run, load_settings(config, "dev"))
    return stack, generated_job(stack, run)


def run_job(local: LocalDevStack, job: GeneratedJob, name: str, netns: str | None = None,
            ca_files: dict[str, str] | None = None):
    """The Job's container: its script with the mount paths mapped, the primary as PGHOST; in the Job's
    pod's network namespace when given (tests/dataplane/pod_network.py); with `ca_files`, the database's CA
    Secret (cert-manager's, for KubeDB) mounted where the Job reads it."""
    superuser_dir = local.workspace.directory(name, "superuser")
    rotation_dir = local.workspace.directory(name, "rotation")
    for directory, files in ((superuser_dir, job.superuser_files), (rotation_dir, job.rotation_files)):
        for file, text in files.items():
            local.workspace.write(directory / file, text, mode=0o400)
    script = job.script.replace(password_rotation.SUPERUSER_DIR, str(superuser_dir)) \
        .replace(password_rotation.ROTATION_DIR, str(rotation_dir))
    assert script.count(str(superuser_dir)) == 2 and script.count(str(rotation_dir)) == 2, "a path was not mapped"
    primary = local.cluster.primary.endpoint
    env = {**job.env, "PGHOST": primary.host, "PGPORT": str(primary.port)}
    if ca_files is not None:
        ca_dir = local.workspace.directory(name, "postgres-ca")
        for file, text in ca_files.items():
            local.workspace.write(ca_dir / file, text, mode=0o444)
        env = {key: value.replace(password_rotation.CA_DIR, str(ca_dir)) for key, value in env.items()}
    started = time.monotonic()
    with entered(netns):
        result = local.workspace.run(["sh", "-c", script], env=env, check=False)
    return result, time.monotonic() - started


def logs_in(endpoint: Endpoint, user: str, password: str, dbname: str) -> bool:
    try:
        with endpoint.connect(user, password, dbname) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)
    except psycopg.OperationalError:
        return False


def probe(pgpool: StackPgpool) -> tuple[int, str]:
    """The Deployment's readiness probe against this instance, as its own stack defines it and its pod runs it."""
    result = pgpool.probe(pgpool.stack.readiness_command)
    return result.returncode, (result.stdout + result.stderr).strip()


@dataclass
class RoundRobinService:
    """The Pgpool-II Service: each new connection goes to the next ready endpoint."""

    endpoints: list[Endpoint] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    turn: int = 0

    def next(self) -> Endpoint:
        with self.lock:
            self.turn += 1
            return self.endpoints[self.turn % len(self.endpoints)]

    def set(self, *pgpools: StackPgpool) -> None:
        with self.lock:
            self.endpoints = [p.endpoint for p in pgpools]


class LoginLoad:
    """Threads logging in through the Service with the old and with the new password, each attempt
    recorded with its time, password generation and outcome."""

    def __init__(self, service: RoundRobinService, user: str, passwords: dict[str, str]):
        self.service, self.user, self.passwords = service, user, passwords
        self.attempts: list[tuple[float, str, bool]] = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._loop, args=(which,), daemon=True)
                        for which in passwords for _ in range(LOAD_CLIENTS)]

    def _loop(self, which: str) -> None:
        while not self.stopping.is_set():
            ok = logs_in(self.service.next(), self.user, self.passwords[which], self.user)
            self.attempts.append((time.monotonic(), which, ok))
            if not ok:
                time.sleep(0.02)

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def wait_for_logins(self, count: int = LOGINS_PER_PHASE) -> None:
        """Until each password has been tried `count` more times, whatever the answers."""
        start = len(self.attempts)

        def tried() -> bool:
            seen = Counter(which for _, which, _ in self.attempts[start:])
            return all(seen[which] >= count for which in self.passwords)

        wait_until("login attempts with every password", tried, timeout=120, interval=0.05)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(30)


def neither_window(attempts: list[tuple[float, str, bool]], start: float, end: float) -> float:
    """Longest stretch in [start, end] without any successful login, old or new password."""
    successes = sorted(t for t, _, ok in attempts if ok and start <= t <= end)
    edges = [start, *successes, end]
    return max(b - a for a, b in zip(edges, edges[1:]))


@pytest.fixture(scope="module")
def stack() -> DevStack:
    """Runs Debian 12's Pgpool-II only: one dev stack, not one per series (tests/dataplane/conftest.py's `stack`)."""
    return dev_stack(pgpoolImage=debian12().image)


@pytest.fixture(scope="module")
def rotation_stack(stack: DevStack):
    with running_database(stack) as local:
        yield local


def test_rotating_passwords_under_login_load(stack: DevStack, rotation_stack: LocalDevStack,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    local, old = rotation_stack, stack
    new, job = rotated_stack()
    users = {role: old.user(role) for role in ("superuser", "monitor", "app")}
    primary = local.cluster.primary.endpoint

    pgpool_old = [local.pgpool("pgpool-old-0"), local.pgpool("pgpool-old-1")]
    assert all(probe(p)[0] == 0 for p in pgpool_old)

    # Pgpool-II first (the wrong order): the new pod's probe logs in with the new monitor password,
    # which PostgreSQL does not know yet, so the pod never becomes ready and the rollout stalls.
    early = local.pgpool("pgpool-new-before-job", stack=new)
    early_probe = probe(early)
    early_app = logs_in(early.endpoint, users["app"], new.passwords[users["app"]], users["app"])
    early.stop()
    assert early_probe[0] != 0 and "backend authentication failed" in early_probe[1], early_probe
    assert not early_app

    service = RoundRobinService()
    service.set(*pgpool_old)
    load = LoginLoad(service, users["app"], {"old": old.passwords[users["app"]], "new": new.passwords[users["app"]]})
    marks = {"load start": time.monotonic()}
    load.start()
    try:
        load.wait_for_logins()
        marks["Job start"] = time.monotonic()
        result, job_seconds = run_job(local, job, "job-1")
        marks["Job done"] = time.monotonic()
        assert result.returncode == 0, result.stderr
        load.wait_for_logins()
        # The rollout: a new pod (surge), ready, then an old one goes; twice.
        pgpool_new = [local.pgpool("pgpool-new-0", stack=new)]
        new_probe = probe(pgpool_new[0])
        service.set(*pgpool_old, *pgpool_new)
        marks["new pod 1 ready"] = time.monotonic()
        load.wait_for_logins()
        service.set(pgpool_old[1], *pgpool_new)
        pgpool_old[0].stop()
        pgpool_new.append(local.pgpool("pgpool-new-1", stack=new))
        wait_until("new pod 2 ready", lambda: probe(pgpool_new[1])[0] == 0)
        service.set(pgpool_old[1], *pgpool_new)
        load.wait_for_logins()
        service.set(*pgpool_new)
        pgpool_old[1].stop()
        marks["rollout done"] = time.monotonic()
        load.wait_for_logins()
        marks["load end"] = time.monotonic()
    finally:
        load.stop()

    # PostgreSQL itself: old passwords refused, new ones accepted, for every role the Job set.
    direct = {role: (logs_in(primary, user, old.passwords[user], "postgres"),
                     logs_in(primary, user, new.passwords[user], "postgres")) for role, user in users.items()}
    local.cluster.primary.password = local.cluster.standby.password = new.passwords[users["superuser"]]
    again, _ = run_job(local, job, "job-2")  # idempotent: a second run changes nothing and succeeds

    phases = [("before the Job", "load start", "Job start"), ("Job running", "Job start", "Job done"),
              ("after the Job, old pods", "Job done", "new pod 1 ready"),
              ("rollout (old + new pods)", "new pod 1 ready", "rollout done"),
              ("after the rollout", "rollout done", "load end")]
    counts = Counter((phase, which, ok) for t, which, ok in load.attempts
                     for phase, start, end in phases if marks[start] <= t < marks[end])
    lines = ["", f"password rotation under load: {LOAD_CLIENTS} login loops each with the old and the new "
             f"password of {users['app']!r}, a new TLS session per attempt, through a round-robin Service",
             f"password Job: exit {result.returncode} in {job_seconds:.2f}s; "
             f"{result.stdout.strip().splitlines()[-1]}",
             f"{'phase':<28} {'lasted':>7} {'old ok':>7} {'old refused':>12} {'new ok':>7} {'new refused':>12} "
             f"{'neither works':>14}"]
    for phase, start, end in phases:
        window = neither_window(load.attempts, marks[start], marks[end])
        lines.append(f"{phase:<28} {marks[end] - marks[start]:>6.2f}s {counts[(phase, 'old', True)]:>7} "
                     f"{counts[(phase, 'old', False)]:>12} {counts[(phase, 'new', True)]:>7} "
                     f"{counts[(phase, 'new', False)]:>12} {window:>13.2f}s")
    lines.append("neither works: longest stretch of the phase without one successful login, old or new password")
    lines.append(f"Pgpool-II first: new pod's readiness probe exit {early_probe[0]} "
                 f"({early_probe[1].splitlines()[-1][:100]}); Job first: exit {new_probe[0]}")
    lines.append("PostgreSQL directly, (old accepted, new accepted) per role: "
                 + ", ".join(f"{role} {direct[role]}" for role in users))
    with capsys.disabled():
        print("\n".join(lines))

    # PostgreSQL still had the old superuser password: the Job logged in with dbPasswordPrevious.
    assert "rotation/previous-password" in result.stdout, result.stdout
    assert direct == {role: (False, True) for role in users}
    assert new_probe[0] == 0, new_probe
    assert again.returncode == 0, again.stderr
    assert "superuser/password" in again.stdout  # the superuser's Secret holds the current password now
    # Before the Job only the old password works; after the rollout only the new one, and always.
    assert counts[("before the Job", "old", False)] == counts[("before the Job", "new", True)] == 0
    assert counts[("after the rollout", "old", True)] == counts[("after the rollout", "new", False)] == 0
    assert counts[("after the rollout", "new", True)] > 0


def test_pgpool_ii_does_not_saslprep_so_such_passwords_cannot_log_in_through_it(
        stack: DevStack, rotation_stack: LocalDevStack) -> None:
    """Why the settings refuse SCRAM passwords SASLprep would change: libpq (client) and PostgreSQL
    prepare them, Pgpool-II hashes the raw password (src/auth/auth-scram.c), so the proofs differ."""
    local = rotation_stack
    passwords = {"probe_prepped": "nb\u00a0sp soft\u00adhyphen", "probe_plain": "café crème"}
    assert saslprep(passwords["probe_prepped"]) != passwords["probe_prepped"]
    assert saslprep(passwords["probe_plain"]) == passwords["probe_plain"]
    with local.cluster.primary.connect() as conn:
        for role, password in passwords.items():
            verifier = scram_sha_256_verifier(password, scram_salt(role, password, "probe"))
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role),
                                                                              sql.Literal(verifier)))
    pool_key = stack.secret_files[".pgpoolkey"].rstrip("\n")

    def add_probe_roles(files: dict[str, str]) -> None:
        files["pool_passwd"] += "".join(pool_passwd_entry(role, password, "scram-sha-256", pool_key) + "\n"
                                        for role, password in passwords.items())

    pgpool = local.pgpool("pgpool-saslprep", edit=add_probe_roles)
    primary = local.cluster.primary.endpoint
    for role, password in passwords.items():
        assert logs_in(primary, role, password, "postgres"), f"{role}: PostgreSQL refuses its own verifier"
    assert logs_in(pgpool.endpoint, "probe_plain", passwords["probe_plain"], "postgres")
    assert not logs_in(pgpool.endpoint, "probe_prepped", passwords["probe_prepped"], "postgres")
    assert 'username "probe_prepped" or password does not exist in backend' in pgpool.log_since_start()
