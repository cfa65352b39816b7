"""The policy pack over whole stacks: this project's dev stack passes, the guide's example settings do not.

The dev stack's resources come from a mock run of the whole program (the `stack_run` fixture of
tests/conftest.py), with their registered inputs (Pulumi secret markers included), as the engine
hands them to the pack.
"""

from __future__ import annotations

from typing import Callable

import pytest

from policies.pgpool_policies import evaluate
from tests.program_run import production_config
from tests.recorded_run import RecordedRun

VARIANTS = {
    "dev": {},
    "env-mode": {"pgpoolMode": "env"},
    "production": production_config(),
    "production-env-mode": {**production_config(), "deletionPolicy": "Halt", "pgpoolMode": "env"},
    "production-backend-tls": {**production_config(), "postgresTlsIssuer": "pg-ca"},
    "every-namespace": {"prometheusDiscoveryNamespaces": '["*"]'},
    "query-cache": {"queryCache": "shmem", "queryCacheMaxStaleSeconds": "5"},
    "query-cache-env-mode": {"queryCache": "shmem", "queryCacheMaxStaleSeconds": "5", "pgpoolMode": "env"},
}


@pytest.mark.parametrize("overrides", VARIANTS.values(), ids=VARIANTS.keys())
def test_dev_stack_has_no_mandatory_violation(stack_run: Callable[..., RecordedRun], overrides: dict[str, str]) -> None:
    run = stack_run(**overrides)
    kinds = {r.type for r in run.resources}
    assert {"kubernetes:apps/v1:Deployment", "kubernetes:kubedb.com/v1:Postgres", "kubernetes:core/v1:Service",
            "kubernetes:batch/v1:Job"} <= kinds, "the run is not the whole stack"
    assert {"kubernetes:rbac.authorization.k8s.io/v1:Role", "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole"} & kinds
    found = evaluate([(r.type, r.name, r.inputs) for r in run.resources])
    assert [v for v in found if v.level == "mandatory"] == []


def test_dev_stack_breaks_when_its_settings_do(stack_run: Callable[..., RecordedRun]) -> None:
    """The same program as a production stack without TLS: the pack stops it (and advises TLS to PostgreSQL)."""
    run = stack_run(**production_config(), ssl="false")
    found = evaluate([(r.type, r.name, r.inputs) for r in run.resources])
    assert sorted((v.policy, v.level) for v in found) == [("kubedb-postgres-tls", "advisory"),
                                                          ("pgpool-ssl-in-production", "mandatory")]


# The guide's example manifests (pgpool2_on_k8s, as the guide and the talk show them), engine-shaped.
HOT_POSTGRES = ("kubernetes:kubedb.com/v1alpha1:Postgres", "hot-postgres", {
    "apiVersion": "kubedb.com/v1alpha1", "kind": "Postgres", "metadata": {"name": "hot-postgres"},
    "spec": {"version": "11.2", "replicas": 3, "standbyMode": "Hot",
             "databaseSecret": {"secretName": "hot-postgres-auth"}, "storageType": "Durable"}})


def _secret(name: str, key: str) -> dict:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": "hot-postgres-auth", "key": key}}}


def guide_env_deployment() -> tuple[str, str, dict]:
    """'Configure Pgpool-II using environment variables' with the talk's Service names and sizing, and the
    exporter sidecar of 'Pgpool-II with monitoring' (untagged images, as in the example manifests)."""
    params = {"BACKEND_HOSTNAME0": "hot-postgres", "BACKEND_PORT0": "5432", "BACKEND_WEIGHT0": "1",
              "BACKEND_HOSTNAME1": "hot-postgres-replicas", "BACKEND_PORT1": "5432", "BACKEND_WEIGHT1": "1",
              "NUM_INIT_CHILDREN": "100", "MAX_POOL": "2"}
    pgpool = {"name": "pgpool", "image": "pgpool/pgpool",
              "env": [_secret("POSTGRES_USERNAME", "POSTGRES_USER"), _secret("POSTGRES_PASSWORD", "POSTGRES_PASSWORD")]
              + [{"name": f"PGPOOL_PARAMS_{k}", "value": v} for k, v in params.items()]}
    exporter = {"name": "pgpool-stats", "image": "pgpool/pgpool2_exporter",
                "env": [{"name": "POSTGRES_USERNAME", "value": "postgres"},
                        {"name": "POSTGRES_PASSWORD", "value": "postgres"},  # typed in instead of secretKeyRef
                        {"name": "PGPOOL_SERVICE", "value": "localhost"}]}
    return "kubernetes:apps/v1:Deployment", "pgpool", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "pgpool"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "pgpool"}}, "template": {
            "metadata": {"labels": {"app": "pgpool"}}, "spec": {"containers": [pgpool, exporter]}}}}


GUIDE_CONFIGMAP = ("kubernetes:core/v1:ConfigMap", "pgpool-config", {
    "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "pgpool-config"},
    "data": {
        # 'Configure Pgpool-II using ConfigMap' (backend_weight1 = 1, max_pool = 4) and the talk's extra files.
        "pgpool.conf": "listen_addresses = '*'\nport = 9999\nbackend_hostname0 = 'hot-postgres'\n"
                       "backend_port0 = 5432\nbackend_weight0 = 1\nbackend_flag0 = 'ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER'\n"
                       "backend_hostname1 = 'hot-postgres-replicas'\nbackend_port1 = 5432\nbackend_weight1 = 1\n"
                       "backend_flag1 = 'DISALLOW_TO_FAILOVER'\nsr_check_period = 0\nhealth_check_period = 0\n"
                       "num_init_children = 32\nmax_pool = 4\nconnection_cache = on\nload_balance_mode = on\n"
                       "ssl = on\nenable_pool_hba = on\nfailover_on_backend_error = off\n",
        "pcp.conf": "postgres:e8a48653851e28c69d0506508fb27fc5\n",
        "pool_passwd": "postgres:md53175bce1d3201d16594cebf9d7eb3f9d\n",
        "pool_hba.conf": "local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all 0.0.0.0/0 md5\n",
    }})

STATS_SERVICE = ("kubernetes:core/v1:Service", "pgpool-stats", {
    "apiVersion": "v1", "kind": "Service", "metadata": {"name": "pgpool-stats", "annotations": {
        "prometheus.io/path": "/metrics", "prometheus.io/port": "9719", "prometheus.io/scrape": "true"}},
    "spec": {"selector": {"app": "pgpool"}, "ports": [{"port": 9719, "targetPort": 9719}]}})


def test_guide_example_settings_that_break_the_rules_are_caught() -> None:
    found = evaluate([HOT_POSTGRES, guide_env_deployment(), GUIDE_CONFIGMAP, STATS_SERVICE])
    caught = {(v.policy, v.message.split(":")[0]) for v in found}
    expected = {
        # env mode leaves backend_flag0 to the image: ALLOW_TO_FAILOVER; backend_flag1 to Pgpool-II: the same
        ("pgpool-backend-flags", 'Deployment "pgpool" container "pgpool"'),
        # backend_weight1 = 1 in both examples, hot-postgres has two standbys
        ("pgpool-backend-weight-matches-standbys", 'Deployment "pgpool" container "pgpool"'),
        # the exporter's password typed in
        ("no-plaintext-secret-env",
         'Deployment "pgpool" container "pgpool-stats" env POSTGRES_PASSWORD is a literal value (not shown)'),
        # the talk's ConfigMap carries pool_passwd and pcp.conf
        ("no-secrets-in-configmaps", 'ConfigMap "pgpool-config" key "pcp.conf" holds a password or key (value not shown)'),
        ("no-secrets-in-configmaps",
         'ConfigMap "pgpool-config" key "pool_passwd" holds a password or key (value not shown)'),
        # 100 children * 2 pooled connections against PostgreSQL's default 100 - 3
        ("pgpool-connections-fit-backends", 'Deployment "pgpool" container "pgpool"'),
        # neither example sets reserved_connections; env mode leaves pool_hba off
        ("pgpool-reserved-connections", 'Deployment "pgpool" container "pgpool"'),
        ("pgpool-reserved-connections", 'ConfigMap "pgpool-config" pgpool.conf'),
        ("pgpool-pool-hba", 'Deployment "pgpool" container "pgpool"'),
        # `image: pgpool/pgpool` and `pgpool/pgpool2_exporter`: no tag
        ("pinned-image-tags", 'Deployment "pgpool" container "pgpool"'),
        # ... so no release either: the pack cannot tell whether it has known vulnerabilities
        ("pgpool-supported-release", 'Deployment "pgpool" container "pgpool"'),
        ("pinned-image-tags", 'Deployment "pgpool" container "pgpool-stats"'),
        # no securityContext and no resources anywhere
        ("pgpool-pod-security-context", 'Deployment "pgpool" container "pgpool" (image pgpool/pgpool)'),
        ("pgpool-pod-security-context", 'Deployment "pgpool" container "pgpool-stats" (image pgpool/pgpool2_exporter)'),
        ("pgpool-pod-resources", 'Deployment "pgpool" container "pgpool"'),
        ("pgpool-pod-resources", 'Deployment "pgpool" container "pgpool-stats"'),
    }
    assert caught == expected
    flags = next(v.message for v in found if v.policy == "pgpool-backend-flags" and "FLAG0" in v.message)
    assert "the pgpool/pgpool image's default 'ALLOW_TO_FAILOVER' applies" in flags
    weight = next(v.message for v in found if v.policy == "pgpool-backend-weight-matches-standbys")
    assert 'PGPOOL_PARAMS_BACKEND_WEIGHT1="1", but Postgres "hot-postgres" runs 2 standby pod(s)' in weight
    sizing = next(v.message for v in found if v.policy == "pgpool-connections-fit-backends")
    assert "= 100 * 2 = 200 backend connections" in sizing and "100 - 3 = 97" in sizing
    assert all("postgres:md5" not in v.message and "e8a48653851e" not in v.message for v in found)
