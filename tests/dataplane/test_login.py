"""Every configured user logs in through Pgpool-II with scram-sha-256 over TLS; nothing else gets in."""

from __future__ import annotations

import psycopg
import pytest

from tests.dataplane.harness import Endpoint
from tests.dataplane.installs import PgpoolInstall
from tests.dataplane.local_stack import LocalDevStack, StackPgpool, running_database
from tests.dataplane.stack_files import ROLES, DevStack, dev_stack


def test_every_pool_passwd_user_has_a_password_secret(stack: DevStack) -> None:
    users = {line.split(":", 1)[0] for line in stack.secret_files["pool_passwd"].splitlines()}
    assert users == set(stack.passwords) == {stack.user(role) for role in ROLES}


@pytest.mark.parametrize("role", ROLES)
def test_user_logs_in_with_scram_over_tls(role: str, stack: DevStack, pgpool: StackPgpool) -> None:
    user = stack.user(role)
    assert stack.settings.pgpool.ssl and pgpool.endpoint.sslmode == "require"
    # require_auth: libpq itself refuses the login unless Pgpool-II asks for SCRAM-SHA-256.
    with pgpool.endpoint.connect(user, stack.passwords[user], require_auth="scram-sha-256") as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("SELECT current_user").fetchone() == (user,)
        # pgpool logged in to the backend with the password it decrypted from the AES entry
        assert conn.execute("SELECT rolname FROM pg_roles WHERE rolname = current_user").fetchone() == (user,)


@pytest.mark.parametrize("role", ROLES)
def test_wrong_password_is_refused(role: str, stack: DevStack, pgpool: StackPgpool) -> None:
    user = stack.user(role)
    with pytest.raises(psycopg.OperationalError, match="authentication failed"):
        pgpool.endpoint.connect(user, stack.passwords[user] + "x").close()


def test_login_without_tls_is_refused(stack: DevStack, pgpool: StackPgpool) -> None:
    plain = Endpoint(pgpool.endpoint.port, sslmode="disable")
    user = stack.app_user
    with pytest.raises(psycopg.OperationalError, match="no pool_hba.conf entry"):
        plain.connect(user, stack.passwords[user]).close()


def test_readiness_and_liveness_probes_pass(stack: DevStack, pgpool: StackPgpool) -> None:
    """The Deployment's probes as the kubelet runs them in the container (the pod's uid, the image's
    PATH and paths): psql as the monitor user over TCP with TLS and its password, pcp_node_count on
    PCP's unix socket with the generated pcppass."""
    ready = pgpool.probe(stack.readiness_command)
    assert (ready.returncode, ready.stdout.strip()) == (0, "1"), ready.stderr
    alive = pgpool.probe(stack.liveness_command)
    assert (alive.returncode, alive.stdout.strip()) == (0, "2"), alive.stderr


def test_a_probe_that_relies_on_path_fails_as_in_the_image(stack: DevStack, pgpool: StackPgpool) -> None:
    # The image keeps Pgpool-II's programs off PATH: a bare name is not found, the probe fails.
    bare = pgpool.probe(("pcp_node_count", *stack.liveness_command[1:]))
    assert bare.returncode == 127 and "No such file or directory" in bare.stderr


def test_with_ssl_off_users_log_in_with_scram_without_tls(stack: DevStack, pgpool_for) -> None:
    pgpool = pgpool_for(ssl="false")
    assert pgpool.endpoint.sslmode == "disable" and "tls.crt" not in pgpool.files
    for user, password in pgpool.stack.passwords.items():
        with pgpool.endpoint.connect(user, password, require_auth="scram-sha-256") as conn:
            assert not conn.pgconn.ssl_in_use
            assert conn.execute("SELECT current_user").fetchone() == (user,)


def test_with_md5_password_encryption_users_log_in(install: PgpoolInstall) -> None:
    """md5 end to end: the database the program configures for md5 (user.conf, clientAuthMode)
    and Pgpool-II's md5 pool_passwd entries."""
    with running_database(dev_stack(passwordEncryption="md5", pgpoolImage=install.image), install) as md5:
        pgpool = md5.pgpool()
        pool_passwd = pgpool.files["pool_passwd"].read_text().splitlines()
        assert pool_passwd and all(line.split(":", 1)[1].startswith("md5") for line in pool_passwd)
        for user, password in md5.stack.passwords.items():
            with pgpool.endpoint.connect(user, password) as conn:
                assert conn.execute("SELECT current_user").fetchone() == (user,)
        with pytest.raises(psycopg.OperationalError, match="authentication failed"):
            pgpool.endpoint.connect(md5.stack.superuser, "wrong").close()