"""The KubeDBPostgres component and the backends Pgpool-II gets for every operator, under mocks."""

from __future__ import annotations

import json

import pytest

from components.password_rotation_config import password_verifier
from components.stack_secrets import Credential
from tests.recorded_run import plain_strings
from tests.test_password_rotation import roles_secret
from tests.test_pgpool_component import env_of, pgpool_conf

POSTGRES = "kubernetes:kubedb.com/v1:Postgres"


def postgres(run) -> dict:
    [found] = [r for r in run.resources if r.type == POSTGRES]
    return found.props


def secret(run, name):
    return run.find("core/v1:Secret", name)


# --- the Postgres object --------------------------------------------------------------------


def test_postgres_spec_follows_the_settings(dev_run):
    pg = postgres(dev_run)
    assert (pg["apiVersion"], pg["kind"]) == ("kubedb.com/v1", "Postgres")
    assert pg["metadata"] == {**pg["metadata"], "name": "pg", "namespace": "pgpool-dev"}
    spec = pg["spec"]
    assert spec["version"] == "16.4"
    assert spec["replicas"] == 3
    assert spec["standbyMode"] == "Hot"
    assert spec["streamingMode"] == "Asynchronous"
    assert spec["storageType"] == "Durable"
    assert spec["storage"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    assert spec["deletionPolicy"] == "WipeOut"  # Pulumi.dev.yaml
    assert "terminationPolicy" not in spec  # the v1alpha2 name


def test_postgres_spec_overrides(stack_run):
    spec = postgres(stack_run(postgresReplicas="5", postgresVersion="17.2", streamingMode="Synchronous",
                              storageClass="fast-ssd", storageSize="20Gi", deletionPolicy="DoNotTerminate"))["spec"]
    assert (spec["replicas"], spec["version"], spec["streamingMode"]) == (5, "17.2", "Synchronous")
    assert spec["storage"]["storageClassName"] == "fast-ssd"
    assert spec["storage"]["resources"]["requests"]["storage"] == "20Gi"
    assert spec["deletionPolicy"] == "DoNotTerminate"


def test_replicas_default_to_three(stack_run):
    spec = postgres(stack_run(postgresReplicas=None))["spec"]
    assert spec["replicas"] == 3


def test_auth_secret_holds_the_superuser(dev_run):
    spec = postgres(dev_run)["spec"]
    auth = secret(dev_run, spec["authSecret"]["name"])
    assert auth.props["type"] == "kubernetes.io/basic-auth"
    assert auth.props["stringData"] == {"username": "postgres", "password": dev_run.secrets["dbPassword"]}
    assert list(plain_strings(auth.inputs["stringData"])) == []


def test_monitoring_agent(dev_run, stack_run):
    builtin = postgres(dev_run)["spec"]["monitor"]
    assert builtin["agent"] == "prometheus.io/builtin"
    assert "serviceMonitor" not in builtin["prometheus"]
    operator = postgres(stack_run(prometheusOperator="true"))["spec"]["monitor"]
    assert operator["agent"] == "prometheus.io/operator"
    assert operator["prometheus"]["serviceMonitor"]["interval"]
    assert "monitor" not in postgres(stack_run(postgresMonitoring="false"))["spec"]


def test_config_secret_sets_the_connection_limits(dev_run, stack_run):
    spec = postgres(dev_run)["spec"]
    user_conf = secret(dev_run, spec["configSecret"]["name"]).props["stringData"]["user.conf"]
    assert "max_connections = 200\n" in user_conf
    assert "superuser_reserved_connections = 3\n" in user_conf
    run = stack_run(postgresMaxConnections="300", postgresSuperuserReservedConnections="5")
    user_conf = secret(run, postgres(run)["spec"]["configSecret"]["name"]).props["stringData"]["user.conf"]
    assert "max_connections = 300\n" in user_conf and "superuser_reserved_connections = 5\n" in user_conf


@pytest.mark.parametrize("method, auth_mode", [("scram-sha-256", "scram"), ("md5", "md5")])
def test_password_storage_matches_pool_passwd(stack_run, method, auth_mode):
    # md5 pool_passwd entries can only log in to roles stored (and checked) as md5.
    run = stack_run(passwordEncryption=method)
    spec = postgres(run)["spec"]
    assert spec["clientAuthMode"] == auth_mode
    user_conf = secret(run, spec["configSecret"]["name"]).props["stringData"]["user.conf"]
    assert f"password_encryption = '{method}'\n" in user_conf


def test_init_script_creates_the_roles_with_verifiers_and_logs_nothing(stack_run):
    """KubeDB's init.sql is the password Job's roles.sql: verifiers, never a password, and no statement
    logged, even one that fails (PostgreSQL logs a failed statement whole)."""
    tricky = "it's a \"quoted\" \\ #secret; DROP ROLE x; --"
    run = stack_run(secrets={"userPasswords": json.dumps({"app": tricky})})
    spec = postgres(run)["spec"]
    init = secret(run, spec["init"]["script"]["secret"]["secretName"])
    assert list(plain_strings(init.inputs["stringData"])) == []
    sql = init.props["stringData"]["init.sql"]
    lines = sql.splitlines()
    assert lines[1:4] == [r"\set ON_ERROR_STOP on", "SET log_statement = 'none';", "SET log_min_error_statement = 'panic';"]
    for user, password in (("app", tricky), ("monitor", run.secrets["monitorPassword"])):
        assert password not in sql
        verifier = password_verifier(Credential(user, password), "scram-sha-256", "pgpool-dev")
        assert f"ALTER ROLE \"{user}\" LOGIN PASSWORD '{verifier}';" in lines
    assert 'GRANT pg_monitor TO "monitor";' in lines
    assert '"postgres"' not in sql  # KubeDB creates the superuser from authSecret
    # The Job's script, but for the superuser's password, which KubeDB sets from its auth Secret.
    job = roles_secret(run).props["stringData"]["roles.sql"].splitlines()
    assert [line for line in job if not line.startswith('ALTER ROLE "postgres"')] == lines


# --- backends per operator ------------------------------------------------------------------

# What each operator's documentation says (README, "Database operators", cites the pages): the
# read-write and read-only Services and the superuser's Secret and keys, for a cluster named pg.
OPERATOR_FACTS = {
    # KubeDB: Services <name> and <name>-standby; authSecret with keys username and password
    # (docs/guides/postgres/rotate-authentication/rotateauth.md).
    "kubedb": ({}, "pg", "pg-standby", "pg-auth", "username"),
    # Zalando: <cluster> and <cluster>-repl (pkg/cluster/k8sres.go serviceName); secret_name_template
    # {username}.{cluster}.credentials.{tprkind}.{tprgroup} with username and password.
    "zalando": ({}, "pg", "pg-repl", "postgres.pg.credentials.postgresql.acid.zalan.do", "username"),
    # Crunchy PGO v5: <cluster>-primary and <cluster>-replicas; spec.users "- name: postgres" gives
    # <cluster>-pguser-postgres with keys user and password (tutorial/user-management.md).
    "crunchy": ({}, "pg-primary", "pg-replicas", "pg-pguser-postgres", "user"),
    # CloudNativePG: <cluster>-rw and <cluster>-ro; enableSuperuserAccess gives <cluster>-superuser,
    # basic-auth username and password (applications.md); <cluster>-app is the application owner's.
    "cloudnativepg": ({"users": '["orders"]'}, "pg-rw", "pg-ro", "pg-superuser", "username"),
    "external": ({"externalPrimaryHost": "db-rw.example.internal", "externalReplicaHost": "db-ro.example.internal",
                  "externalCredentialsSecret": "db-admin"}, "db-rw.example.internal", "db-ro.example.internal",
                 "db-admin", "username"),
}


def fqdn(service: str) -> str:
    return service if "." in service else f"{service}.pgpool-dev.svc.cluster.local"


def password_job(run) -> dict:
    [job] = run.of_type("batch/v1:Job")
    return job.props["spec"]["template"]["spec"]


@pytest.mark.parametrize("operator", OPERATOR_FACTS)
def test_backend_hosts_per_operator(stack_run, operator):
    extra, primary, replica, _, _ = OPERATOR_FACTS[operator]
    run = stack_run(operator=operator, **extra)
    conf = pgpool_conf(run)
    assert (conf["backend_hostname0"], conf["backend_hostname1"]) == (fqdn(primary), fqdn(replica))
    assert conf["backend_port0"] == conf["backend_port1"] == "5432"
    assert (run.outputs["primaryService"], run.outputs["replicaService"]) == (fqdn(primary), fqdn(replica))
    created = [r for r in run.resources if r.type in (POSTGRES, "pgpool-k8s:index:KubeDBPostgres")]
    assert bool(created) == (operator == "kubedb")


@pytest.mark.parametrize("operator", OPERATOR_FACTS)
def test_env_mode_reads_the_superuser_from_the_operators_secret(stack_run, operator):
    extra, _, _, secret_name, user_key = OPERATOR_FACTS[operator]
    run = stack_run(operator=operator, pgpoolMode="env", **extra)
    env = env_of(run)
    assert env["POSTGRES_USERNAME"]["valueFrom"]["secretKeyRef"] == {"name": secret_name, "key": user_key}
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": secret_name, "key": "password"}
    # Only KubeDB's Secret is ours; the other operators own theirs.
    ours = {s.props["metadata"]["name"] for s in run.of_type("core/v1:Secret")}
    assert (secret_name in ours) == (operator == "kubedb")


@pytest.mark.parametrize("operator", OPERATOR_FACTS)
def test_password_job_logs_in_to_the_primary_with_the_operators_superuser_secret(stack_run, operator):
    extra, primary, _, secret_name, user_key = OPERATOR_FACTS[operator]
    pod = password_job(stack_run(operator=operator, **extra))
    [superuser] = [v["secret"] for v in pod["volumes"] if v["name"] == "superuser"]
    assert superuser["secretName"] == secret_name
    assert {item["key"] for item in superuser["items"]} == {user_key, "password"}
    [container] = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert (env["PGHOST"], env["PGPORT"]) == (fqdn(primary), "5432")


def test_other_operators_superuser_password_comes_from_config_in_configmap_mode(stack_run):
    run = stack_run(operator="zalando")
    files = run.find("core/v1:Secret", "pgpool-files").props["stringData"]
    assert "postgres" in {line.split(":", 1)[0] for line in files["pool_passwd"].splitlines()}


# --- nothing replaces the database -----------------------------------------------------------------


def test_postgres_names_its_secrets_as_plain_strings_and_waits_for_them(dev_run):
    """A Secret replaced by a new password or setting must not take the Postgres with it: the engine
    replaces dependents only through property dependencies (calculateDependentReplacements)."""
    [registration] = [r for r in dev_run.registrations if r.type == POSTGRES]
    secret_urns = {r.urn for r in dev_run.registrations if r.type == "kubernetes:core/v1:Secret"
                   and r.name in ("pg-auth", "pg-config", "pg-init")}
    assert len(secret_urns) == 3
    assert secret_urns <= set(registration.dependencies)
    assert not secret_urns & {urn for urns in registration.property_dependencies.values() for urn in urns}
    spec = postgres(dev_run)["spec"]
    assert (spec["authSecret"]["name"], spec["configSecret"]["name"], spec["init"]["script"]["secret"]["secretName"]) \
        == ("pg-auth", "pg-config", "pg-init")
