"""The password Job: its verifiers against libpq's own, its SQL and script, and its place in the stack.

Whether PostgreSQL and Pgpool-II accept what it sets, under load, is tests/dataplane/test_password_rotation.py.
"""

from __future__ import annotations

import base64
import json
import re

import pytest
from psycopg import pq

from components.password_rotation_config import render_roles_sql, rotation_script
from components.scram import md5_verifier, saslprep, scram_salt, scram_sha_256_verifier
from components.stack_secrets import Credential
from tests.recorded_run import plain_strings

JOB = "kubernetes:batch/v1:Job"
OPS_REQUEST = "kubernetes:ops.kubedb.com/v1alpha1:PostgresOpsRequest"
PASSWORDS = ["pencil", "q'u\"o\\te sp#ce:", "pässwörd", "no\u00a0break\u2003spaces", "soft\u00adhyphen",
             "ﬁ ligature Ⅻ", "\u0627\u0644\u0639\u0631\u0628\u064a\u0629", "mixed \u0627 bidi", "\u0007bell"]
"""ASCII; awkward ASCII; non-ASCII that SASLprep maps, drops, normalises; right-to-left; prohibited mixes."""


@pytest.fixture(scope="module")
def libpq() -> pq.PGconn:
    """A libpq handle; PQencryptPasswordConn needs no server once the algorithm is named."""
    return pq.PGconn.connect_start(b"host=/nonexistent")


@pytest.mark.parametrize("password", PASSWORDS)
def test_scram_verifier_equals_libpqs_for_the_same_salt(libpq: pq.PGconn, password: str) -> None:
    """libpq's PQencryptPasswordConn (what psql's \\password sends) runs PostgreSQL's own SASLprep and
    SCRAM code; with its random salt fed back, ours must be the same string."""
    theirs = libpq.encrypt_password(password.encode(), b"app", b"scram-sha-256").decode()
    iterations, salt = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([^$]+)\$.*", theirs).groups()
    assert scram_sha_256_verifier(password, base64.b64decode(salt), int(iterations)) == theirs


@pytest.mark.parametrize("password", PASSWORDS)
def test_md5_verifier_equals_libpqs(libpq: pq.PGconn, password: str) -> None:
    assert md5_verifier("app", password) == libpq.encrypt_password(password.encode(), b"app", b"md5").decode()


def test_saslprep_maps_spaces_drops_soft_hyphens_and_keeps_what_it_must_not_change() -> None:
    assert saslprep("no\u00a0break") == "no break"
    assert saslprep("soft\u00adhyphen") == "softhyphen"
    assert saslprep("ﬁ") == "fi"
    assert saslprep("\u0007bell") == "\u0007bell"  # ASCII: as is
    assert saslprep("mixed \u0627 bidi") == "mixed \u0627 bidi"  # fails the bidi rule: raw password


def test_salt_is_fixed_per_role_namespace_and_password() -> None:
    salt = scram_salt("app", "secret", "pgpool-dev")
    assert len(salt) == 16 and salt == scram_salt("app", "secret", "pgpool-dev")
    assert len({salt, scram_salt("monitor", "secret", "pgpool-dev"), scram_salt("app", "secret", "prod"),
                scram_salt("app", "secret2", "pgpool-dev")}) == 4


USERS = (Credential("monitor", "m'on"), Credential("app", "a\"pp"), Credential("reporting", "r\\ep"))


def test_roles_sql_creates_missing_roles_and_sets_verifiers_never_passwords() -> None:
    sql = render_roles_sql(USERS, "monitor", "scram-sha-256", "pgpool-dev")
    lines = sql.splitlines()
    for user in USERS:
        assert user.password not in sql
        assert (f"SELECT format('CREATE ROLE %I LOGIN', '{user.name}') WHERE NOT EXISTS "
                f"(SELECT FROM pg_catalog.pg_roles WHERE rolname = '{user.name}')\\gexec") in lines
        [alter] = [line for line in lines if line.startswith(f'ALTER ROLE "{user.name}" ')]
        assert re.fullmatch(rf"ALTER ROLE \"{user.name}\" LOGIN PASSWORD 'SCRAM-SHA-256\$4096:[^']+';", alter)
    assert 'GRANT pg_monitor TO "monitor";' in lines
    commit = lines.index("COMMIT;")
    databases = [i for i, line in enumerate(lines) if "CREATE DATABASE" in line]
    assert len(databases) == 2 and min(databases) > commit  # not in a transaction, and none for monitor
    assert lines.index("BEGIN;") < min(i for i, line in enumerate(lines) if line.startswith("ALTER ROLE"))
    assert "SET log_statement = 'none';" in lines
    assert "postgres" not in sql.replace("pg_catalog", "")  # no superuser unless asked for


def test_roles_sql_md5_and_the_superuser_when_the_stack_owns_it() -> None:
    sql = render_roles_sql(USERS, "monitor", "md5", "pgpool-dev", Credential("postgres", "s3cret"))
    assert f"ALTER ROLE \"postgres\" PASSWORD '{md5_verifier('postgres', 's3cret')}';" in sql.splitlines()
    app = md5_verifier("app", USERS[1].password)
    assert f"ALTER ROLE \"app\" LOGIN PASSWORD '{app}';" in sql.splitlines()
    assert "s3cret" not in sql


def test_script_holds_no_secret_and_reads_passwords_only_into_psqls_environment() -> None:
    script = rotation_script("/su", "/rot")
    assert "PGPASSWORD=\"$(cat \"$password_file\")\" psql" in script
    assert "for password_file in /su/password /rot/previous-password; do" in script
    assert "-f /rot/roles.sql" in script
    assert re.search(r"psql[^\n]*(-W|password=)", script) is None


# --- the Job in the stack ---------------------------------------------------------------------------


def job(run):
    [found] = [r for r in run.resources if r.type == JOB]
    return found


def roles_secret(run):
    [volume] = [v for v in job(run).props["spec"]["template"]["spec"]["volumes"] if v["name"] == "roles"]
    [secret] = [s for s in run.of_type("core/v1:Secret")
                if s.props["metadata"]["name"] == volume["secret"]["secretName"]]
    return secret


def test_job_pod_is_restricted_and_holds_no_password(dev_run):
    pod = job(dev_run).props["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [container] = pod["containers"]
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]} and context["runAsNonRoot"] is True
    assert set(container["resources"]["requests"]) == set(container["resources"]["limits"]) == {"cpu", "memory"}
    assert re.fullmatch(r"postgres:[0-9][^:]*", container["image"])
    secrets = [v for v in dev_run.secrets.values()] + list(json.loads(dev_run.secrets["userPasswords"]).values())
    shown = json.dumps([container["command"], container["env"], job(dev_run).props["metadata"]])
    assert not [s for s in secrets if s in shown]
    assert all("value" in e and "valueFrom" not in e for e in container["env"])  # nothing secret in env
    for volume in pod["volumes"]:
        assert set(volume) == {"name", "secret"}


def test_roles_secret_values_are_pulumi_secrets(dev_run):
    secret = roles_secret(dev_run)
    assert list(plain_strings(secret.inputs["stringData"])) == []
    sql = secret.props["stringData"]["roles.sql"]
    assert dev_run.secrets["monitorPassword"] not in sql and dev_run.secrets["dbPassword"] not in sql
    assert 'ALTER ROLE "postgres" PASSWORD' in sql  # KubeDB: the stack owns the superuser
    assert "previous-password" not in secret.props["stringData"]
    assert dev_run.of_type("ops.kubedb.com/v1alpha1:PostgresOpsRequest") == []
    # Referenced through its output, so the Job waits for it.
    job_registration = dev_run.registration(job(dev_run))
    assert dev_run.registration(secret).urn in job_registration.property_dependencies["spec"]


def test_a_changed_password_makes_a_new_job_and_an_unchanged_one_does_not(dev_run, stack_run):
    """The roles Secret changes in place under its name; the checksum of its data in the Job's pod
    template is what makes a changed password a new Job (a Job's template cannot change)."""
    def annotation(run) -> str:
        return job(run).props["spec"]["template"]["metadata"]["annotations"]["checksum/roles"]

    users = json.loads(dev_run.secrets["userPasswords"])
    rotated = stack_run(secrets={**dev_run.secrets, "userPasswords": json.dumps({**users, "app": "rotated-Pa55word"})})
    assert job(rotated).auto_named and roles_secret(rotated).props["metadata"]["name"] == "pgpool-passwords"
    assert annotation(rotated) != annotation(dev_run)
    assert annotation(stack_run(secrets=dict(dev_run.secrets))) == annotation(dev_run)


def test_job_runs_after_the_database_and_before_pgpool(dev_run):
    """depends_on on a component waits for all of its resources: the Pgpool-II component is registered, and
    its children after it, only once the Job's registration returned, i.e. the Job completed (the
    provider awaits Jobs); the Job itself waits for the Postgres and its Secrets."""
    registrations = {(r.type, r.name): r for r in dev_run.registrations}
    job_urn = dev_run.registration(job(dev_run)).urn
    assert job_urn in registrations[("pgpool-k8s:index:Pgpool", "pgpool")].dependencies
    postgres = registrations[("kubernetes:kubedb.com/v1:Postgres", "pg")]
    assert postgres.urn in registrations[("pgpool-k8s:index:PasswordRotation", "pgpool-passwords")].dependencies


def test_other_operators_superuser_is_theirs_not_the_jobs(stack_run):
    run = stack_run(operator="cloudnativepg", users='["orders"]')
    sql = roles_secret(run).props["stringData"]["roles.sql"]
    assert 'ALTER ROLE "postgres"' not in sql and 'ALTER ROLE "orders" LOGIN PASSWORD' in sql


def test_kubedb_superuser_rotation_logs_in_with_the_previous_password_then_restarts_kubedbs_pods(stack_run):
    run = stack_run(secrets={"dbPasswordPrevious": "the-old-one"})
    secret = roles_secret(run)
    assert secret.props["stringData"]["previous-password"] == "the-old-one"
    [restart] = [r for r in run.resources if r.type == OPS_REQUEST]
    assert restart.props["spec"] == {"type": "Restart", "databaseRef": {"name": "pg"}, "apply": "Always"}
    assert restart.props["metadata"]["name"] == f"{job(run).props['metadata']['name']}-restart"
    assert run.registration(job(run)).urn in run.registration(restart).dependencies
