"""The KubeDBPostgres component and the backends Pgpool-II gets for every operator, under mocks."""

from __future__ import annotations

import json

import pytest

from tests.recorded_run import plain_strings
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


def test_init_script_creates_the_roles_with_escaped_passwords(stack_run):
    tricky = "it's a \"quoted\" \\ #secret; DROP ROLE x; --"
    run = stack_run(secrets={"userPasswords": json.dumps({"app": tricky})})
    spec = postgres(run)["spec"]
    init = secret(run, spec["init"]["script"]["secret"]["secretName"])
    assert list(plain_strings(init.inputs["stringData"])) == []
    sql = init.props["stringData"]["init.sql"]
    escaped = "'it''s a \"quoted\" \\ #secret; DROP ROLE x; --'"
    assert f'CREATE ROLE "app" LOGIN PASSWORD {escaped};' in sql.splitlines()
    monitor = run.secrets["monitorPassword"]
    assert f"CREATE ROLE \"monitor\" LOGIN PASSWORD '{monitor}';" in sql.splitlines()
    assert 'GRANT pg_monitor TO "monitor";' in sql.splitlines()
    assert 'CREATE ROLE "postgres"' not in sql  # KubeDB creates the superuser from authSecret
    # Every statement is on a line of its own: the quote did not end the literal early.
    assert all(line.startswith(("--", "CREATE ", "GRANT ")) for line in sql.splitlines())


# --- backends per operator ------------------------------------------------------------------

OPERATORS = {
    "kubedb": ({}, "pg.pgpool-dev.svc.cluster.local", "pg-standby.pgpool-dev.svc.cluster.local"),
    "zalando": ({}, "pg.pgpool-dev.svc.cluster.local", "pg-repl.pgpool-dev.svc.cluster.local"),
    "crunchy": ({}, "pg-primary.pgpool-dev.svc.cluster.local", "pg-replicas.pgpool-dev.svc.cluster.local"),
    "cloudnativepg": ({}, "pg-rw.pgpool-dev.svc.cluster.local", "pg-ro.pgpool-dev.svc.cluster.local"),
    "external": ({"externalPrimaryHost": "db-rw.example.internal", "externalReplicaHost": "db-ro.example.internal",
                  "externalCredentialsSecret": "db-admin"}, "db-rw.example.internal", "db-ro.example.internal"),
}


@pytest.mark.parametrize("operator", OPERATORS)
def test_backend_hosts_per_operator(stack_run, operator):
    extra, primary, replica = OPERATORS[operator]
    run = stack_run(operator=operator, **extra)
    conf = pgpool_conf(run)
    assert (conf["backend_hostname0"], conf["backend_hostname1"]) == (primary, replica)
    assert conf["backend_port0"] == conf["backend_port1"] == "5432"
    assert (run.outputs["primaryService"], run.outputs["replicaService"]) == (primary, replica)
    created = [r for r in run.resources if r.type in (POSTGRES, "pgpool-k8s:index:KubeDBPostgres")]
    assert bool(created) == (operator == "kubedb")


SUPERUSER_SECRETS = {
    "kubedb": ({}, "pg-auth", "username"),
    "zalando": ({}, "postgres.pg.credentials.postgresql.acid.zalan.do", "username"),
    "crunchy": ({}, "pg-pguser-postgres", "user"),
    "cloudnativepg": ({}, "pg-app", "username"),
    "external": (OPERATORS["external"][0], "db-admin", "username"),
}


@pytest.mark.parametrize("operator", SUPERUSER_SECRETS)
def test_env_mode_reads_the_superuser_from_the_operators_secret(stack_run, operator):
    extra, secret_name, user_key = SUPERUSER_SECRETS[operator]
    run = stack_run(operator=operator, pgpoolMode="env", **extra)
    env = env_of(run)
    assert env["POSTGRES_USERNAME"]["valueFrom"]["secretKeyRef"] == {"name": secret_name, "key": user_key}
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": secret_name, "key": "password"}
    # Only KubeDB's Secret is ours; the other operators own theirs.
    ours = {s.name for s in run.of_type("core/v1:Secret")}
    assert (secret_name in ours) == (operator == "kubedb")


def test_other_operators_superuser_password_comes_from_config_in_configmap_mode(stack_run):
    run = stack_run(operator="zalando")
    files = run.find("core/v1:Secret", "pgpool-files").props["stringData"]
    assert "postgres" in {line.split(":", 1)[0] for line in files["pool_passwd"].splitlines()}
