"""The security findings of issue 23 on real PostgreSQL 15 and Pgpool-II.

- Reserved role names: PostgreSQL refuses every name the settings layer reserves, so a stack user of
  such a name would make KubeDB's init.sql and the password Job fail on every run.
- init.sql, as KubeDB runs it at the database's first start, carries verifiers, never a password, and
  turns statement logging off: a statement that fails is logged whole by the server otherwise.
- The password Job, when PostgreSQL refuses its superuser password, says how to store the one it
  still has encrypted.
- TLS from Pgpool-II to PostgreSQL: a database that accepts TCP clients only over TLS (KubeDB's
  pg_hba.conf with spec.tls) and presents a certificate of the stack's issuer. Pgpool-II, from the
  files the program generates with postgresTlsIssuer, verifies that certificate against the issuer's
  CA (KubeDB's <clusterName>-client-cert Secret, here made by the test as cert-manager would), and
  logins, load balancing and the probes work over it; so does the password Job, which verifies it too;
  a database certificate of another CA is refused by both.
"""

from __future__ import annotations

import contextlib
import datetime
import json
from typing import Iterator

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from components.settings import RESERVED_ROLE_PREFIX, RESERVED_ROLES, SettingsError, load_settings
from tests.dataplane.installs import PgpoolInstall
from tests.dataplane.local_stack import LocalDevStack
from tests.dataplane.stack_files import DevStack, awkward_secrets, dev_stack
from tests.dataplane.test_password_rotation import generated_job, run_job
from tests.dataplane.test_routing import SAMPLES, TOLERANCE, WHICH_BACKEND, ports, standby_share
from tests.program_run import dev_stack_inputs, run_program

ISSUER = "pg-ca"


# --- reserved role names -------------------------------------------------------------------------------------


RESERVED_EXAMPLES = (f"{RESERVED_ROLE_PREFIX}app", "pg_monitor", *sorted(RESERVED_ROLES))


@pytest.mark.parametrize("name", RESERVED_EXAMPLES)
def test_every_reserved_role_name_is_refused_by_postgresql_and_by_the_settings(name: str, local: LocalDevStack):
    with pytest.raises(psycopg.errors.ReservedName):
        local.cluster.primary.query(f'CREATE ROLE "{name}" LOGIN')
    config = dev_stack_inputs()[0]
    for key, value in (("users", json.dumps(["app", name])), ("monitorUser", name)):
        with pytest.raises(SettingsError) as refused:
            load_settings({**config, key: value}, "dev")
        assert f"pgpool-k8s:{key} = {name!r}: PostgreSQL reserves role names" in str(refused.value), refused.value


def test_a_name_near_a_reserved_one_is_a_role_like_any_other(local: LocalDevStack):
    local.cluster.primary.query('CREATE ROLE "pgapp" LOGIN')
    load_settings({**dev_stack_inputs()[0], "users": json.dumps(["pgapp"])}, "dev")


# --- init.sql and the server log -------------------------------------------------------------------------------


def test_init_sql_holds_no_password_even_where_the_server_logs_a_failed_statement(stack: DevStack,
                                                                                  local: LocalDevStack):
    """KubeDB runs init.sql once, with psql -v ON_ERROR_STOP=1 -f, and PostgreSQL logs a statement that fails
    whole (log_min_error_statement = error). Here every statement fails (a read-only session)."""
    # As written in SQL too: a quote in a password is doubled in a literal.
    written = {user: (password, password.replace("'", "''")) for user, password in stack.passwords.items()}
    for user, forms in written.items():
        assert not any(form in stack.init_sql for form in forms), f"init.sql holds the password of {user} in clear"
    primary = local.cluster.primary
    offset = primary.log.stat().st_size
    script = local.workspace.write("init-again.sql", stack.init_sql)
    env = {**primary.endpoint.libpq_env(stack.superuser, primary.password, "postgres"),
           "PGOPTIONS": "-c default_transaction_read_only=on"}
    result = local.workspace.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(script)], env=env,
                                 check=False)
    assert result.returncode != 0 and "read-only transaction" in result.stderr, result.stderr
    with open(primary.log, "rb") as log:
        log.seek(offset)
        logged = log.read().decode(errors="replace")
    assert "read-only transaction" in logged, logged
    for user, forms in written.items():
        assert not any(form in logged for form in forms), f"the server log holds the password of {user}"
    assert "SCRAM-SHA-256$" not in logged, "the server log holds a verifier (which an attacker can brute-force)"
    # The roles init.sql created (with verifiers) log in with their passwords.
    for user in (stack.monitor_user, stack.app_user):
        with primary.endpoint.connect(user, stack.passwords[user]) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (user,)


def test_the_job_says_how_to_store_the_previous_superuser_password_encrypted(stack: DevStack, local: LocalDevStack):
    config, secrets = dev_stack_inputs()
    run = run_program(config, {**secrets, "dbPassword": "not-what-postgresql-has"}, "dev")
    result, _ = run_job(local, generated_job(stack, run), "job-wrong-superuser")
    assert result.returncode == 1
    assert "`pulumi config set --secret dbPasswordPrevious` (value on stdin)" in result.stderr, result.stderr


# --- TLS from Pgpool-II to PostgreSQL ------------------------------------------------------------------------


def certificate_authority(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def server_certificate(ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate]) -> tuple[str, str]:
    """What cert-manager issues KubeDB's server from the stack's issuer: PEM certificate and key."""
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pg")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("pg"), x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode())


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def tls_database(install: PgpoolInstall) -> Iterator[tuple[LocalDevStack, dict]]:
    """The dev stack with postgresTlsIssuer on a database that takes TLS only, with a certificate of
    the issuer's CA; and the Secret cert-manager would make for KubeDB's client (the CA Pgpool-II trusts)."""
    stack = dev_stack(postgresTlsIssuer=ISSUER, pgpoolImage=install.image)  # the files of the install's release
    authority = certificate_authority("pgpool-k8s test issuer")
    client_secret = {f"{stack.settings.database.cluster_name}-client-cert": {"ca.crt": pem(authority[1])}}
    local = LocalDevStack(stack, install)
    try:
        local.start_database(tls=True, certificate=server_certificate(authority), tls_only=True)
        yield local, client_secret
    finally:
        local.close()


def test_without_tls_the_database_refuses_every_client(tls_database) -> None:
    local, _ = tls_database
    plain = local.cluster.primary.endpoint.__class__(local.cluster.primary.endpoint.port, "disable")
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        plain.connect(local.stack.superuser, local.stack.passwords[local.stack.superuser]).close()


def test_pgpool_logs_in_balances_and_probes_over_verified_tls(tls_database) -> None:
    local, client_secret = tls_database
    stack = local.stack
    pgpool = local.pgpool("pgpool-backend-tls", extra_objects=client_secret)
    assert "ssl_ca_cert = " in pgpool.files["pgpool.conf"].read_text()
    with contextlib.ExitStack() as sessions:
        for user, password in stack.passwords.items():
            conn = sessions.enter_context(pgpool.endpoint.connect(user, password, require_auth="scram-sha-256"))
            assert conn.execute("SELECT current_user").fetchone() == (user,)
        # While the sessions are open, Pgpool-II's connections to the primary and the standby are encrypted.
        for server in (local.cluster.primary, local.cluster.standby):
            rows = server.query("SELECT a.usename, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) "
                                "WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()")
            assert {user for user, _ in rows} == set(stack.passwords), (server.name, rows)
            assert all(ssl for _, ssl in rows), (server.name, rows)
            print(f"{server.name}: {len(rows)} connections from Pgpool-II, all over TLS")
    # Reads spread by the weights, over TLS to both backends.
    user = stack.app_user
    served = []
    for _ in range(SAMPLES):
        with pgpool.endpoint.connect(user, stack.passwords[user], dbname=user) as conn:
            served.append(conn.execute(WHICH_BACKEND).fetchone()[0])
    share = served.count(ports(local)[1]) / len(served)
    print(f"over TLS to the backends, the standby served {share:.3f} of {SAMPLES} sessions' reads "
          f"(configured {standby_share(stack):.3f})")
    assert share == pytest.approx(standby_share(stack), abs=TOLERANCE)
    ready = pgpool.probe(stack.readiness_command)
    assert (ready.returncode, ready.stdout.strip()) == (0, "1"), ready.stderr
    alive = pgpool.probe(stack.liveness_command)
    assert (alive.returncode, alive.stdout.strip()) == (0, "2"), alive.stderr


def test_pgpool_refuses_a_database_certificate_of_another_ca(tls_database) -> None:
    local, client_secret = tls_database
    other = {name: {"ca.crt": pem(certificate_authority("another CA")[1])} for name in client_secret}
    pgpool = local.pgpool("pgpool-other-ca", extra_objects=other)
    user = local.stack.app_user
    with pytest.raises(psycopg.OperationalError):
        pgpool.endpoint.connect(user, local.stack.passwords[user], dbname=user).close()
    assert "certificate verify failed" in pgpool.log_since_start(), pgpool.log_tail()


@pytest.mark.parametrize("same_ca", [True, False], ids=["issuer-ca", "another-ca"])
def test_the_password_job_verifies_the_database_certificate(tls_database, same_ca: bool) -> None:
    local, client_secret = tls_database
    config, secrets = awkward_secrets()
    job = generated_job(local.stack, run_program({**config, "postgresTlsIssuer": ISSUER}, secrets, "dev"))
    assert (job.env["PGSSLMODE"], job.env["PGSSLROOTCERT"]) == ("verify-ca", "/etc/pgpool-k8s/postgres-ca/ca.crt")
    ca = next(iter(client_secret.values())) if same_ca else {"ca.crt": pem(certificate_authority("another CA")[1])}
    result, _ = run_job(local, job, f"job-tls-{same_ca}", ca_files=ca)
    if same_ca:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0 and "certificate verify failed" in result.stderr, result.stderr
