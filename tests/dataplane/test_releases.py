"""What differs between the Pgpool-II releases the stack renders for (policies/pgpool_policies/pgpool_versions.py),
on each series the data plane runs: every parameter the program writes is one the running release knows,
protocol 3.2 (PostgreSQL 18 clients that ask for it) is served from 4.7 on, and the replication check logs in as
the user the settings require (4.6 dropped the default)."""

from __future__ import annotations

import psycopg
import pytest

from policies.pgpool_policies.pgpool_versions import PROTOCOL_3_2
from tests.dataplane.harness import wait_until
from tests.dataplane.installs import PgpoolInstall
from tests.dataplane.local_stack import LocalDevStack, StackPgpool
from tests.dataplane.stack_files import CONF_LINE, DevStack


def test_pgpool_knows_every_parameter_the_program_writes(stack: DevStack, pgpool: StackPgpool) -> None:
    """Pgpool-II takes a parameter it does not know for an INFO line (not logged by default) and goes on without
    it: socket_dir on 4.4+, unix_socket_directories before; and 4.7 reads logdir as work_dir with a warning.
    The running release must show every parameter of the generated pgpool.conf, and warn about none."""
    names = [match["name"] for match in map(CONF_LINE.match, stack.config_files["pgpool.conf"].splitlines()) if match]
    superuser = stack.superuser
    unknown = []
    with pgpool.endpoint.connect(superuser, stack.passwords[superuser]) as conn:
        for name in names:
            try:
                conn.execute(f"PGPOOL SHOW {name}")
            except psycopg.Error as error:
                unknown.append(f"{name}: {error}".strip())
    assert unknown == []
    assert "logdir is changed to work_dir" not in pgpool.log_since_start()


def test_protocol_3_2_clients_are_served_from_4_7(stack: DevStack, install: PgpoolInstall,
                                                  pgpool: StackPgpool) -> None:
    """A client that asks for protocol 3.2 (libpq 18's max_protocol_version, psycopg's own libpq here); the
    backends, PostgreSQL 15, speak 3.0 and say so (NegotiateProtocolVersion), which 4.7 passes on."""
    assert psycopg.pq.version() >= 180000, "the client's libpq must know protocol 3.2"
    user = stack.app_user

    def login() -> psycopg.Connection:
        return pgpool.endpoint.connect(user, stack.passwords[user], max_protocol_version="3.2")

    if install.renders_for >= PROTOCOL_3_2:
        with login() as conn:
            assert conn.execute("SELECT current_user").fetchone() == (user,)
    else:
        with pytest.raises(psycopg.OperationalError):
            login().close()


def test_the_replication_check_logs_in_as_the_user_the_settings_require(stack: DevStack, local: LocalDevStack,
                                                                       pgpool_for) -> None:
    """From 4.6.0 sr_check_user has no default ('nobody' before): the settings require srCheckUser whenever
    srCheckPeriod > 0, and Pgpool-II's check then logs in to the primary as that user, with its password from
    pool_passwd (each check opens its connections anew, which the primary logs)."""
    primary = local.cluster.primary
    primary.query("ALTER SYSTEM SET log_connections = on")
    primary.query("SELECT pg_reload_conf()")
    try:
        start = len(primary.log.read_text(errors="replace"))
        pgpool_for(srCheckPeriod="1", srCheckUser=stack.monitor_user)
        authorized = f"connection authorized: user={stack.monitor_user} database=postgres"
        wait_until("the replication check logged in to the primary",
                   lambda: primary.log.read_text(errors="replace")[start:].count(authorized) >= 2, timeout=60)
    finally:
        primary.query("ALTER SYSTEM RESET log_connections")
        primary.query("SELECT pg_reload_conf()")
