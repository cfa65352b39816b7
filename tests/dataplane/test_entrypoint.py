"""Env mode as the image runs it: the image's own entrypoint.sh on the environment the program renders, then
Pgpool-II on the pgpool.conf, pool_passwd and pcp.conf the entrypoint writes (tests/dataplane/entrypoint.py).

Runs on the series whose install is the pgpool/pgpool image's root (4.6 and 4.7); Debian 12's 4.3 package has
no entrypoint.sh. The entrypoint starts from the image's pgpool.conf.sample and appends one line per
PGPOOL_PARAMS_* variable, and defaults what is unset to its own choices (BACKEND_FLAG0 ALLOW_TO_FAILOVER among
them), so the settings that keep Kubernetes in charge of failover are checked on what Pgpool-II runs with.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Iterator

import psycopg
import pytest

from components.settings import load_settings
from tests.dataplane.entrypoint import EntrypointPgpool
from tests.dataplane.installs import INSTALLS, PgpoolInstall
from tests.dataplane.local_stack import LocalDevStack, running_database
from tests.dataplane.stack_files import ROLES, DevStack, awkward_secrets, read_dev_stack
from tests.program_run import run_program

IMAGE_SERIES = ("4.6", "4.7")
KEPT_FROM_THE_STACK = {
    # What the entrypoint would otherwise default or leave to pgpool.conf.sample.
    "backend_flag0": "ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER",
    "backend_flag1": "DISALLOW_TO_FAILOVER",
    "failover_on_backend_error": "off",
    "health_check_period": "0",
    "failover_command": "",
    "use_watchdog": "off",
    "backend_clustering_mode": "streaming_replication",
}
CONF_VALUE = re.compile(r"^(?P<name>[a-z_0-9]+)\s*=\s*(?:'(?P<quoted>[^']*)'|(?P<bare>[^\s#]*))")
INJECTION = "x;touch${IFS}/tmp/pwned;#_USERNAME=y"
"""A value that, on an environment line whose name has no '_', makes the entrypoint's
`eval "echo \\$${ev_username}_USERNAME"` run `touch /tmp/pwned` (/tmp: the pod's writable tmp volume)."""


def env_mode_stack(image: str) -> DevStack:
    """The dev stack in env mode, with the awkward passwords less their space (the settings refuse whitespace
    in env mode: the entrypoint passes passwords on unquoted)."""
    config, secrets = awkward_secrets()
    config = {**config, "pgpoolMode": "env", "pgpoolImage": image}
    unspaced = {**secrets, **{key: secrets[key].replace(" ", "") for key in ("dbPassword", "monitorPassword",
                                                                            "pcpPassword")}}
    unspaced["userPasswords"] = json.dumps({user: password.replace(" ", "")
                                            for user, password in json.loads(secrets["userPasswords"]).items()})
    return read_dev_stack(run_program(config, unspaced, "dev"), load_settings(config, "dev"))


@pytest.fixture(scope="module", params=IMAGE_SERIES, ids=lambda name: f"pgpool-{name}")
def install(request: pytest.FixtureRequest) -> PgpoolInstall:
    return INSTALLS[request.param]()


@pytest.fixture(scope="module")
def stack(install: PgpoolInstall) -> DevStack:
    return env_mode_stack(install.image)


@pytest.fixture(scope="module")
def env_local(stack: DevStack, install: PgpoolInstall) -> Iterator[LocalDevStack]:
    with running_database(stack, install) as local:
        yield local


@pytest.fixture(scope="module")
def started(stack: DevStack, env_local: LocalDevStack) -> EntrypointPgpool:
    pgpool = EntrypointPgpool(env_local, stack, "pgpool-env")
    pgpool.start()
    return pgpool


def last_values(conf: str) -> dict[str, str]:
    """pgpool.conf's parameters as pgpool reads them: the last line of each wins, quotes removed."""
    return {match["name"]: match["quoted"] if match["quoted"] is not None else match["bare"]
            for match in map(CONF_VALUE.match, conf.splitlines()) if match}


def comparable(values: dict[str, str | None]) -> dict[str, object]:
    """Flags as sets: Pgpool-II shows them in an order of its own."""
    return {name: frozenset(value.split("|")) if name.startswith("backend_flag") and value else value
            for name, value in values.items()}


def running_value(conn: psycopg.Connection, name: str) -> str:
    """A parameter as the running Pgpool-II shows it (PGPOOL SHOW); a per-node one must be the same for all."""
    cursor = conn.execute(f"PGPOOL SHOW {name}")
    rows = cursor.fetchall()
    if len(cursor.description) == 3:  # item, value, description: the parameter and each node's
        values = {value for _, value, _ in rows}
        assert len(values) == 1, rows
        return values.pop()
    return rows[0][0]


def test_entrypoint_writes_what_keeps_failover_to_kubernetes(started: EntrypointPgpool) -> None:
    written = last_values((started.written / "pgpool.conf").read_text())
    assert comparable({name: written.get(name) for name in KEPT_FROM_THE_STACK}) == comparable(KEPT_FROM_THE_STACK)


def test_pgpool_runs_with_them(stack: DevStack, started: EntrypointPgpool) -> None:
    """What the running Pgpool-II reports, not only what the file says."""
    superuser = stack.superuser
    with started.endpoint.connect(superuser, stack.passwords[superuser]) as conn:
        shown = {name: running_value(conn, name) for name in KEPT_FROM_THE_STACK}
        nodes = conn.execute("SHOW POOL_NODES").fetchall()
    assert comparable(shown) == comparable(KEPT_FROM_THE_STACK)
    assert [row[0] for row in nodes] == ["0", "1"] and {row[3] for row in nodes} <= {"up", "waiting"}


@pytest.mark.parametrize("role", ROLES)
def test_every_user_logs_in_with_the_password_the_entrypoint_registered(role: str, stack: DevStack,
                                                                       started: EntrypointPgpool) -> None:
    user = stack.user(role)
    with started.endpoint.connect(user, stack.passwords[user], require_auth="scram-sha-256") as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("SELECT current_user").fetchone() == (user,)
    with pytest.raises(psycopg.OperationalError, match="authentication failed"):
        started.endpoint.connect(user, stack.passwords[user] + "x").close()


def test_the_probes_pass_in_the_container(stack: DevStack, started: EntrypointPgpool) -> None:
    ready = started.probe(stack.readiness_command)
    assert (ready.returncode, ready.stdout.strip()) == (0, "1"), ready.stderr
    alive = started.probe(stack.liveness_command)
    assert (alive.returncode, alive.stdout.strip()) == (0, "2"), alive.stderr


def test_no_secret_reaches_a_line_the_entrypoint_evaluates(stack: DevStack, env_local: LocalDevStack) -> None:
    """Every password Secret of the pod holds a value the entrypoint would run as a command if it sat in a
    variable whose name has no '_' (as the readiness probe's PGPASSWORD did): nothing runs."""
    secrets = {name: dict(data) for name, data in stack.objects.items()}
    for data in secrets.values():
        if "password" in data:
            data["password"] = INJECTION
    injected = dataclasses.replace(stack, objects=secrets)
    pgpool = EntrypointPgpool(env_local, injected, "pgpool-injected")
    pgpool.start()
    try:
        assert not (pgpool.volume("tmp") / "pwned").exists(), "the entrypoint ran a command from a Secret's value"
    finally:
        pgpool.stop()
