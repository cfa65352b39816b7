"""Policy pack: every policy passes a compliant stack and catches a broken one with the expected message.

Resources are written as the engine sends them to the analyzer: `kubernetes:<group>/<version>:<Kind>`
types, camelCase properties; `evaluate` passes them through a protobuf Struct and pulumi-policy's own
deserialize/unknown-checking proxy before each policy's validate runs. The hand-written stack below
is a fork of this project's, in both configuration forms (a ConfigMap's pgpool.conf through the
image's entrypoint, and PGPOOL_PARAMS_* env).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable

import jsonschema
import pytest
from pulumi_policy import EnforcementLevel
from pulumi_policy.deserialize import SPECIAL_SECRET_SIG as SECRET_VALUE
from pulumi_policy.deserialize import SPECIAL_SIG_KEY as SECRET_SIG
from pulumi_policy.proxy import (
    UNKNOWN_ARRAY_VALUE,
    UNKNOWN_NUMBER_VALUE,
    UNKNOWN_OBJECT_VALUE,
    UNKNOWN_STRING_VALUE,
)

from policies.pgpool_policies import POLICIES, evaluate, remediate
from policies.pgpool_policies.pgpool_conf import parse_pgpool_conf

Resource = tuple[str, str, dict]
NAMESPACE = "db"
POD_LABELS = {"app.kubernetes.io/name": "pgpool", "app.kubernetes.io/instance": "pgpool"}
PRIMARY, REPLICA = "pg.db.svc.cluster.local", "pg-standby.db.svc.cluster.local"

CONF = {
    "listen_addresses": "'*'",
    "port": "9999",
    "backend_clustering_mode": "'streaming_replication'",
    "backend_hostname0": f"'{PRIMARY}'",
    "backend_port0": "5432",
    "backend_weight0": "1",
    "backend_flag0": "'ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER'",
    "backend_hostname1": f"'{REPLICA}'",
    "backend_port1": "5432",
    "backend_weight1": "2",
    "backend_flag1": "'DISALLOW_TO_FAILOVER'",
    "num_init_children": "32",
    "max_pool": "2",
    "reserved_connections": "1",
    "connection_cache": "on",
    "load_balance_mode": "on",
    "failover_on_backend_error": "off",
    "sr_check_period": "0",
    "health_check_period": "0",
    "enable_pool_hba": "on",
    "ssl": "on",
}
HBA = "local all all trust\nhost all all 127.0.0.1/32 trust\nhostssl all all 0.0.0.0/0 scram-sha-256\n"
ENV_PARAMS = {
    "BACKEND_HOSTNAME0": PRIMARY,
    "BACKEND_PORT0": "5432",
    "BACKEND_WEIGHT0": "1",
    "BACKEND_FLAG0": "ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER",
    "BACKEND_HOSTNAME1": REPLICA,
    "BACKEND_PORT1": "5432",
    "BACKEND_WEIGHT1": "2",
    "BACKEND_FLAG1": "DISALLOW_TO_FAILOVER",
    "NUM_INIT_CHILDREN": "32",
    "MAX_POOL": "2",
    "RESERVED_CONNECTIONS": "1",
    "ENABLE_POOL_HBA": "on",
    "SSL": "on",
}


def pgpool_conf(**changes: str | None) -> str:
    """The compliant pgpool.conf with some settings changed (None removes one)."""
    settings = {**CONF, **changes}
    return "# pgpool.conf of the fork\n" + "".join(f"{k} = {v}\n" for k, v in settings.items() if v is not None)


def secret_env(name: str, secret: str, key: str) -> dict:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def restricted(uid: int | None = None) -> dict:
    context = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
               "capabilities": {"drop": ["ALL"]}}
    return {**context, "runAsUser": uid} if uid is not None else context


def sized(cpu: str = "100m", memory: str = "128Mi") -> dict:
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": "1", "memory": memory}}


def pgpool_deployment(mode: str) -> Resource:
    env = [secret_env("POSTGRES_USERNAME", "pg-auth", "username"),
           secret_env("POSTGRES_PASSWORD", "pg-auth", "password"),
           secret_env("PGPOOL_PCP_USER", "pgpool-pcp", "username"),
           secret_env("PGPOOL_PCP_PASSWORD", "pgpool-pcp", "password")]
    mounts = [{"name": "tls", "mountPath": "/config/tls", "readOnly": True}]
    volumes = [{"name": "tls", "secret": {"secretName": "pgpool-tls", "defaultMode": 0o600}}]
    if mode == "env":
        env = [{"name": f"PGPOOL_PARAMS_{k}", "value": v} for k, v in ENV_PARAMS.items()] + env
    else:
        mounts.insert(0, {"name": "config", "mountPath": "/config/pgpool.conf", "subPath": "pgpool.conf"})
        volumes.insert(0, {"name": "config", "configMap": {"name": "pgpool-config"}})
    pgpool = {"name": "pgpool", "image": "pgpool/pgpool:4.7.2", "env": env, "volumeMounts": mounts,
              "ports": [{"name": "postgres", "containerPort": 9999}],
              "securityContext": restricted(), "resources": sized()}
    exporter = {"name": "exporter", "image": "pgpool/pgpool2_exporter:1.2.2",
                "env": [secret_env("POSTGRES_USERNAME", "pgpool-monitor", "username"),
                        secret_env("POSTGRES_PASSWORD", "pgpool-monitor", "password"),
                        {"name": "PGPOOL_SERVICE", "value": "localhost"},
                        {"name": "PGPOOL_SERVICE_PORT", "value": "9999"}],
                "ports": [{"name": "metrics", "containerPort": 9719}],
                "securityContext": restricted(65534), "resources": sized("25m", "32Mi")}
    props = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "pgpool", "namespace": NAMESPACE, "labels": dict(POD_LABELS)},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": dict(POD_LABELS)},
            "template": {
                "metadata": {"labels": dict(POD_LABELS), "annotations": {"checksum/config": "0f3a"}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 70, "fsGroup": 70,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [pgpool, exporter],
                    "volumes": volumes,
                },
            },
        },
    }
    return "kubernetes:apps/v1:Deployment", "pgpool", props


def k8s(resource_type: str, name: str, **props: Any) -> Resource:
    kind = resource_type.rsplit(":", 1)[1]
    metadata = {"name": name, "namespace": NAMESPACE, **props.pop("metadata", {})}
    return resource_type, name, {"kind": kind, "metadata": metadata, **props}


def stack(mode: str = "configmap") -> list[Resource]:
    """A compliant stack: KubeDB Postgres, Pgpool-II with exporter and Services, Prometheus' RBAC."""
    resources = [
        k8s("kubernetes:kubedb.com/v1:Postgres", "pg", spec={
            "version": "16.4", "replicas": 3, "standbyMode": "Hot", "authSecret": {"name": "pg-auth"},
            "configSecret": {"name": "pg-config"}, "deletionPolicy": "DoNotTerminate",
            "tls": {"issuerRef": {"apiGroup": "cert-manager.io", "kind": "Issuer", "name": "pg-ca"}}}),
        k8s("kubernetes:core/v1:Secret", "pg-config",
            stringData={"user.conf": "max_connections = 200\nsuperuser_reserved_connections = 3\n"}),
        k8s("kubernetes:core/v1:Secret", "pg-auth", type="kubernetes.io/basic-auth",
            stringData={"username": "postgres", "password": "s3cret-db"}),
        k8s("kubernetes:core/v1:Secret", "pgpool-tls", type="kubernetes.io/tls",
            stringData={"tls.crt": "-----BEGIN CERTIFICATE-----\n", "tls.key": "-----BEGIN PRIVATE KEY-----\n"}),
        pgpool_deployment(mode),
        k8s("kubernetes:core/v1:Service", "pgpool", spec={
            "type": "ClusterIP", "selector": dict(POD_LABELS), "ports": [{"port": 9999, "targetPort": "postgres"}]}),
        k8s("kubernetes:core/v1:Service", "pgpool-metrics",
            metadata={"annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9719",
                                      "prometheus.io/path": "/metrics"}},
            spec={"selector": dict(POD_LABELS), "ports": [{"name": "metrics", "port": 9719, "targetPort": "metrics"}]}),
        *prometheus_server(),
        *network_policies(),
    ]
    if mode == "configmap":
        resources.append(k8s("kubernetes:core/v1:ConfigMap", "pgpool-config",
                             data={"pgpool.conf": pgpool_conf(), "pool_hba.conf": HBA}))
    return resources


PROMETHEUS_YML = """
scrape_configs:
- job_name: kubernetes-service-endpoints
  kubernetes_sd_configs:
  - role: endpointslice
    namespaces:
      names: [db]
"""


EVERY_NAMESPACE_YML = PROMETHEUS_YML.split("    namespaces:")[0]


def network_policy(name: str, pods: dict, *rules: tuple[dict, int | None]) -> Resource:
    """An Ingress NetworkPolicy over `pods` (matchLabels), each rule admitting one peer on one port (None: all)."""
    ingress = [{"from": [peer], **({"ports": [{"port": port, "protocol": "TCP"}]} if port else {})}
               for peer, port in rules]
    return k8s("kubernetes:networking.k8s.io/v1:NetworkPolicy", name, spec={
        "podSelector": {"matchLabels": pods}, "policyTypes": ["Ingress"], "ingress": ingress})


def network_policies() -> list[Resource]:
    """Pgpool-II, the database's pods and Prometheus, each admitting only the pods that talk to it."""
    prometheus = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
    database = {"app.kubernetes.io/name": "postgreses.kubedb.com", "app.kubernetes.io/instance": "pg"}
    return [
        network_policy("pgpool", dict(POD_LABELS), ({"podSelector": {}}, 9999), (prometheus, 9719)),
        network_policy("pg", database, ({"podSelector": {"matchLabels": dict(POD_LABELS)}}, 5432),
                       ({"podSelector": {"matchLabels": database}}, None), (prometheus, 56790)),
        network_policy("prometheus", {"app.kubernetes.io/name": "prometheus"}, ({"podSelector": {}}, 9090)),
    ]


def prometheus_server() -> list[Resource]:
    """Prometheus discovering in its own namespace, with a Role and RoleBinding there."""
    return [
        k8s("kubernetes:core/v1:ServiceAccount", "prometheus"),
        k8s("kubernetes:rbac.authorization.k8s.io/v1:Role", "prometheus",
            metadata={"labels": {"app.kubernetes.io/name": "prometheus"}},
            rules=[{"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
                   {"apiGroups": [""], "resources": ["services", "pods"], "verbs": ["get", "list", "watch"]}]),
        k8s("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding", "prometheus",
            roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "prometheus"},
            subjects=[{"kind": "ServiceAccount", "name": "prometheus", "namespace": NAMESPACE}]),
        k8s("kubernetes:core/v1:ConfigMap", "prometheus-config-5a1b", data={"prometheus.yml": PROMETHEUS_YML}),
        k8s("kubernetes:apps/v1:Deployment", "prometheus", spec={"template": {
            "metadata": {"labels": {"app.kubernetes.io/name": "prometheus"}}, "spec": {
            "serviceAccountName": "prometheus",
            "containers": [{"name": "prometheus", "image": "quay.io/prometheus/prometheus:v3.5.0"}],
            "volumes": [{"name": "config", "configMap": {"name": "prometheus-config-5a1b"}}]}}}),
    ]


def cluster_wide_grant(r: list[Resource]) -> None:
    """The grant an all-namespace Prometheus needs, for the ServiceAccount of the stack's Prometheus."""
    r.append(k8s("kubernetes:rbac.authorization.k8s.io/v1:ClusterRole", "db-prometheus",
                 metadata={"namespace": None, "labels": {"app.kubernetes.io/name": "prometheus"}},
                 rules=[{"apiGroups": [""], "resources": ["services", "endpoints", "pods"],
                         "verbs": ["get", "list", "watch"]}, {"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]))
    r.append(k8s("kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding", "db-prometheus",
                 metadata={"namespace": None},
                 roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "db-prometheus"},
                 subjects=[{"kind": "ServiceAccount", "name": "prometheus", "namespace": NAMESPACE}]))


def props_of(resources: list[Resource], kind: str, name: str) -> dict:
    return next(p for t, n, p in resources if t.endswith(":" + kind) and p["metadata"]["name"] == name)


def container(resources: list[Resource], name: str) -> dict:
    pod = props_of(resources, "Deployment", "pgpool")["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] if c["name"] == name)


def set_conf(resources: list[Resource], **changes: str | None) -> None:
    props_of(resources, "ConfigMap", "pgpool-config")["data"]["pgpool.conf"] = pgpool_conf(**changes)


def set_env(resources: list[Resource], **values: str | None) -> None:
    """Set (or remove, with None) PGPOOL_PARAMS_<NAME> env vars of the pgpool container."""
    pgpool = container(resources, "pgpool")
    for key, value in values.items():
        name = f"PGPOOL_PARAMS_{key}"
        pgpool["env"] = [e for e in pgpool["env"] if e["name"] != name]
        if value is not None:
            pgpool["env"].append({"name": name, "value": value})


DIGEST = "@sha256:" + "5" * 64
"""Stands for the digest a user verified (pinned-image-digests-in-production)."""


def pin_digests(resources: list[Resource]) -> None:
    """Every container image of every workload pinned by digest, as production stacks pin them."""
    for _, _, props in resources:
        template = props.get("spec", {}).get("template", {})
        for item in template.get("spec", {}).get("containers", []):
            item["image"] += DIGEST


def messages(resources: list[Resource], policy: str, **kwargs: Any) -> list[str]:
    return [v.message for v in evaluate(resources, **kwargs) if v.policy == policy]


# --- compliant input passes every policy -------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["configmap", "env"])
def test_compliant_stack_passes_every_policy(mode: str) -> None:
    assert evaluate(stack(mode)) == []


def test_compliant_stack_passes_in_production_and_with_a_direct_pgpool_command() -> None:
    """Production (labels on the Deployment), and pgpool started by `command` with -f from a ConfigMap mount."""
    resources = stack()
    props_of(resources, "Deployment", "pgpool")["metadata"]["labels"]["environment"] = "production"
    pin_digests(resources)
    pgpool = container(resources, "pgpool")
    pgpool["command"] = ["/opt/pgpool-II/bin/pgpool", "-n", "-f", "/etc/pgpool/pgpool.conf"]
    pgpool["volumeMounts"][0] = {"name": "config", "mountPath": "/etc/pgpool"}
    assert evaluate(resources) == []


# --- one or more violating inputs per policy ----------------------------------------------------------------

Mutation = Callable[[list[Resource]], None]
CASES: list[tuple[str, str, Mutation, list[str]]] = []


def case(policy: str, mode: str, *expected: str) -> Callable[[Mutation], Mutation]:
    def register(mutate: Mutation) -> Mutation:
        CASES.append((policy, mode, mutate, list(expected)))
        return mutate
    return register


@case("pgpool-conf-syntax", "configmap", 'ConfigMap "pgpool-config" pgpool.conf line 23:',
      "`socket_dir = /var/run/pgpool` does not parse", "syntax error in configuration file")
def unquoted_path(r):
    props_of(r, "ConfigMap", "pgpool-config")["data"]["pgpool.conf"] += "socket_dir = /var/run/pgpool\n"


@case("pgpool-conf-syntax", "env", 'Deployment "pgpool" container "pgpool": env PGPOOL_PARAMS_LOG_LINE_PREFIX',
      "splits at the last '='")
def env_with_equals(r):
    set_env(r, LOG_LINE_PREFIX="app=%a ")


@case("pgpool-two-backends", "configmap", "3 backends are configured", "backend_hostname2 = 'pg-pods.db'",
      "exactly two", "remove backend_*2")
def third_backend(r):
    set_conf(r, backend_hostname2="'pg-pods.db'")


@case("pgpool-two-backends", "env", "PGPOOL_PARAMS_BACKEND_HOSTNAME1 is not set", "backend node 1 = the replica",
      'set env PGPOOL_PARAMS_BACKEND_HOSTNAME1="<replica Service host>"')
def no_replica_backend(r):
    set_env(r, BACKEND_HOSTNAME1=None)


@case("pgpool-backend-flags", "env",
      "PGPOOL_PARAMS_BACKEND_FLAG0 is not set, so the pgpool/pgpool image's default 'ALLOW_TO_FAILOVER' applies",
      "applies: that value lacks ALWAYS_PRIMARY, DISALLOW_TO_FAILOVER and allows failover",
      'set env PGPOOL_PARAMS_BACKEND_FLAG0="ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER"')
def image_default_flag(r):
    set_env(r, BACKEND_FLAG0=None)


@case("pgpool-backend-flags", "configmap", "backend_flag1 = 'ALWAYS_PRIMARY' (line 12)",
      "lacks DISALLOW_TO_FAILOVER and marks the replica Service as primary",
      "set backend_flag1 = 'DISALLOW_TO_FAILOVER' in pgpool.conf")
def replica_as_primary(r):
    set_conf(r, backend_flag1="'ALWAYS_PRIMARY'")


@case("pgpool-backend-flags", "configmap", "backend_flag1 is not set, so Pgpool-II's default 'ALLOW_TO_FAILOVER'")
def missing_flag1(r):
    set_conf(r, backend_flag1=None)


@case("pgpool-failover-on-backend-error-off", "configmap",
      "failover_on_backend_error is not set, so Pgpool-II's default 'on' applies, but it must be off",
      "set failover_on_backend_error = off in pgpool.conf")
def default_failover_on_error(r):
    set_conf(r, failover_on_backend_error=None)


@case("pgpool-failover-on-backend-error-off", "env", 'PGPOOL_PARAMS_FAILOVER_ON_BACKEND_ERROR="true"')
def failover_on_error_env(r):
    set_env(r, FAILOVER_ON_BACKEND_ERROR="true")


@case("pgpool-load-balance-mode-on", "configmap", "load_balance_mode = 'off' (line 17), but it must be on",
      "set load_balance_mode = on in pgpool.conf")
def load_balance_off(r):
    set_conf(r, load_balance_mode="off")


@case("pgpool-load-balance-mode-on", "env", 'PGPOOL_PARAMS_LOAD_BALANCE_MODE="enabled"', "must be on")
def load_balance_misspelt(r):
    set_env(r, LOAD_BALANCE_MODE="enabled")


@case("pgpool-connection-cache-on", "env", 'PGPOOL_PARAMS_CONNECTION_CACHE="off", but it must be on',
      'set env PGPOOL_PARAMS_CONNECTION_CACHE="on"')
def connection_cache_off(r):
    set_env(r, CONNECTION_CACHE="off")


@case("pgpool-listen-all-addresses", "configmap", "listen_addresses is not set, so Pgpool-II's default 'localhost'",
      "set listen_addresses = '*' in pgpool.conf")
def listen_localhost(r):
    set_conf(r, listen_addresses=None)


@case("pgpool-no-health-check-watchdog-failover", "configmap", "health_check_period = '10' (line 20)",
      "use_watchdog = 'on'", "failover_command = '/opt/failover.sh %d'", "set health_check_period = 0",
      "set failover_command = '' in pgpool.conf")
def failover_machinery(r):
    set_conf(r, health_check_period="10", use_watchdog="on", failover_command="'/opt/failover.sh %d'")


@case("pgpool-no-health-check-watchdog-failover", "env", 'PGPOOL_PARAMS_HEALTH_CHECK_PERIOD1="5"')
def per_node_health_check(r):
    set_env(r, HEALTH_CHECK_PERIOD1="5")


@case("pgpool-backend-weight-matches-standbys", "configmap", "backend_weight1 = '1' (line 11)",
      'Postgres "pg" runs 2 standby pod(s) behind the replica Service (spec.replicas = 3)',
      "set backend_weight1 = 2 in pgpool.conf")
def weight_one_with_two_standbys(r):
    set_conf(r, backend_weight1="1")


@case("pgpool-backend-weight-matches-standbys", "env",
      "PGPOOL_PARAMS_BACKEND_WEIGHT1 is not set, so Pgpool-II's default '1' applies", 'runs 4 standby pod(s)')
def weight_default_with_four_standbys(r):
    set_env(r, BACKEND_WEIGHT1=None)
    props_of(r, "Postgres", "pg")["spec"]["replicas"] = 5


@case("kubedb-postgres-hot-standby", "configmap",
      'Postgres "pg": spec.standbyMode is not set, so KubeDB\'s default Warm applies', "set spec.standbyMode: Hot")
def warm_standbys(r):
    del props_of(r, "Postgres", "pg")["spec"]["standbyMode"]


@case("pgpool-sr-check-password", "configmap", "sr_check_period is not set, so Pgpool-II's default '10' applies",
      "sr_check_user 'nobody'", "no pool_passwd entry exists for 'nobody'", "set sr_check_period = 0")
def default_sr_check(r):
    set_conf(r, sr_check_period=None)


@case("pgpool-sr-check-password", "env", 'PGPOOL_PARAMS_SR_CHECK_PERIOD="10"', "sr_check_user 'monitor'")
def sr_check_user_without_password(r):
    set_env(r, SR_CHECK_PERIOD="10", SR_CHECK_USER="monitor")


@case("pgpool-connections-fit-backends", "configmap",
      "num_init_children * max_pool * replicas = 64 * 4 * 2 Pgpool-II pods (Deployment \"pgpool\" replicas) = 512",
      'Postgres "pg" accepts max_connections - superuser_reserved_connections = 200 - 3 = 197',
      'from Secret "pg-config" user.conf', "lower num_init_children or max_pool")
def pool_too_big(r):
    set_conf(r, num_init_children="64", max_pool="4")


@case("pgpool-connections-fit-backends", "env", "= 32 * 4 * 2 Pgpool-II pods", "= 256", "200 - 3 = 197")
def default_max_pool(r):
    set_env(r, MAX_POOL=None)


@case("pgpool-query-cache-bounded-staleness", "configmap",
      "the query cache is on and memqcache_expire is not set, so Pgpool-II's default '0' applies",
      'Deployment "pgpool" runs 2 pods, and each removes cached results only for writes through itself',
      "a standby that has not yet replayed a write", "set memqcache_expire = '<seconds a read may be stale>'")
def cache_without_expiry(r):
    set_conf(r, memory_cache_enabled="on")


@case("pgpool-query-cache-bounded-staleness", "env", 'PGPOOL_PARAMS_MEMQCACHE_AUTO_CACHE_INVALIDATION="off"',
      "not even the pod a write runs through removes", 'set env PGPOOL_PARAMS_MEMQCACHE_AUTO_CACHE_INVALIDATION="on"')
def cache_without_invalidation(r):
    set_env(r, MEMORY_CACHE_ENABLED="on", MEMQCACHE_EXPIRE="10", MEMQCACHE_AUTO_CACHE_INVALIDATION="off")


@case("pgpool-query-cache-shared-memory", "configmap", "memqcache_method = 'memcached'",
      "without memcached (Dockerfile.pgpool configures --with-openssl only)",
      "'memcached support is not enabled'", "a write through another pod leaves them in memcached",
      "set memqcache_method = 'shmem' in pgpool.conf")
def cache_in_memcached(r):
    set_conf(r, memory_cache_enabled="on", memqcache_expire="10", memqcache_method="'memcached'")


@case("pgpool-reserved-connections", "configmap", "reserved_connections is not set, so Pgpool-II's default '0'",
      "set reserved_connections = 1 in pgpool.conf")
def no_reserved_connections(r):
    set_conf(r, reserved_connections=None)


@case("no-secrets-in-configmaps", "configmap", 'ConfigMap "pgpool-config" key "pgpool.conf" line 23: '
      "sr_check_password is set in plain text (value not shown)", "move it into a Secret")
def password_in_pgpool_conf(r):
    props_of(r, "ConfigMap", "pgpool-config")["data"]["pgpool.conf"] += "sr_check_password = 'hunter2'\n"


@case("no-secrets-in-configmaps", "configmap", 'key "pool_passwd" holds a password or key (value not shown)',
      'key "pcp.conf" holds a password or key', 'key "tls.key" holds a password or key')
def secret_files_in_configmap(r):
    data = props_of(r, "ConfigMap", "pgpool-config")["data"]
    data.update({"pool_passwd": "app:AESgufDqr9wivkwAzkBFkrwtw==", "pcp.conf": "pcp:e8a48653851e28c69d0506508fb27fc5",
                 "tls.key": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"})


@case("no-plaintext-secret-env", "configmap",
      'Deployment "pgpool" container "exporter" env POSTGRES_PASSWORD is a literal value (not shown)',
      "use valueFrom.secretKeyRef")
def literal_password(r):
    env = container(r, "exporter")["env"]
    env[1] = {"name": "POSTGRES_PASSWORD", "value": "hunter2"}


@case("no-plaintext-secret-env", "env", "env PGPOOL_PCP_PASSWORD reads a password or key from configMapKeyRef",
      'env DATA_SOURCE_NAME embeds a password in a literal connection string')
def password_from_configmap(r):
    env = container(r, "pgpool")["env"]
    env[-1] = {"name": "PGPOOL_PCP_PASSWORD", "valueFrom": {"configMapKeyRef": {"name": "pcp", "key": "password"}}}
    container(r, "exporter")["env"].append(
        {"name": "DATA_SOURCE_NAME", "value": "postgresql://monitor:hunter2@localhost:9999/postgres"})


@case("pgpool-user-env-pairs", "env", "env MY_APP_USERNAME has an underscore in its prefix 'MY_APP'",
      "looks for MY_USERNAME/MY_PASSWORD", "e.g. MYAPP_USERNAME", "env REPORTS_USERNAME has no REPORTS_PASSWORD")
def broken_user_pairs(r):
    container(r, "pgpool")["env"] += [secret_env("MY_APP_USERNAME", "app", "username"),
                                      secret_env("MY_APP_PASSWORD", "app", "password"),
                                      secret_env("REPORTS_USERNAME", "reports", "username")]


@case("pgpool-pool-hba", "configmap", "enable_pool_hba = 'off' (line 21)", "set enable_pool_hba = on in pgpool.conf",
      'ConfigMap "pgpool-config" pool_hba.conf line 4: `host all all 10.0.0.0 255.0.0.0 trust`',
      "lets clients from 10.0.0.0 in without a password")
def hba_trust(r):
    set_conf(r, enable_pool_hba="off")
    props_of(r, "ConfigMap", "pgpool-config")["data"]["pool_hba.conf"] += "host all all 10.0.0.0 255.0.0.0 trust\n"


@case("pgpool-pool-hba", "env", "PGPOOL_PARAMS_ENABLE_POOL_HBA is not set, so Pgpool-II's default 'off' applies")
def hba_default_off(r):
    set_env(r, ENABLE_POOL_HBA=None)


@case("pgpool-ssl-in-production", "configmap",
      "ssl = 'off' (line 22) in a production stack (environment=production)", "set ssl = on in pgpool.conf")
def production_without_ssl(r):
    set_conf(r, ssl="off")
    container(r, "pgpool")["volumeMounts"].pop()  # no certificate at /config/tls, which would turn ssl on
    props_of(r, "Postgres", "pg")["metadata"]["labels"] = {"environment": "production"}
    pin_digests(r)


@case("pgpool-supported-release", "configmap", "(image pgpool/pgpool:4.5.4): Pgpool-II 4.5.4 has known "
      "vulnerabilities: CVE-2025-46801 (client authentication bypass (log in as any user)), fixed in 4.5.7",
      "Use 4.5.7 or later of the 4.5 series")
def vulnerable_release(r):
    container(r, "pgpool")["image"] = "pgpool/pgpool:4.5.4"


@case("pgpool-supported-release", "env", "names no Pgpool-II release (a tag such as 4.7.2) and the pod template has "
      "no app.kubernetes.io/version label")
def release_unknown(r):
    container(r, "pgpool")["image"] = "registry.example/pgpool/pgpool" + DIGEST


@case("pgpool-dns-retry-in-production", "configmap", "(image pgpool/pgpool:4.6.1" + DIGEST + "): Pgpool-II 4.6.1 "
      "gives up on a backend at the first failed DNS lookup", "Use 4.6.3 or later in production")
def production_before_dns_retry(r):
    container(r, "pgpool")["image"] = "pgpool/pgpool:4.6.1"
    props_of(r, "Deployment", "pgpool")["metadata"]["labels"]["environment"] = "production"
    pin_digests(r)


@case("pinned-image-digests-in-production", "env", 'container "exporter": image pgpool/pgpool2_exporter:1.2.2 is '
      "pinned by tag alone in a production stack", "pin the digest you verified")
def production_pinned_by_tag(r):
    props_of(r, "Deployment", "pgpool")["metadata"]["labels"]["environment"] = "production"
    pin_digests(r)
    container(r, "exporter")["image"] = "pgpool/pgpool2_exporter:1.2.2"


@case("pgpool-pod-security-context", "configmap",
      'container "exporter" (image pgpool/pgpool2_exporter:1.2.2): allowPrivilegeEscalation is not false',
      'container "exporter" (image pgpool/pgpool2_exporter:1.2.2): capabilities do not drop ALL',
      'container "pgpool" (image pgpool/pgpool:4.7.2): seccompProfile type is not set')
def loose_security_context(r):
    container(r, "exporter")["securityContext"] = {"runAsNonRoot": True, "runAsUser": 65534}
    del props_of(r, "Deployment", "pgpool")["spec"]["template"]["spec"]["securityContext"]["seccompProfile"]


@case("pgpool-pod-security-context", "env", 'init container "copy" (image busybox:1.36): runAsUser is 0',
      "privileged is true", "capabilities add NET_ADMIN")
def root_init_container(r):
    pod = props_of(r, "Deployment", "pgpool")["spec"]["template"]["spec"]
    pod["initContainers"] = [{"name": "copy", "image": "busybox:1.36", "resources": sized(), "securityContext": {
        **restricted(0), "privileged": True, "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]}}}]


@case("pgpool-pod-resources", "configmap", 'container "exporter": resources limits.memory, limits.cpu not set')
def no_exporter_limits(r):
    del container(r, "exporter")["resources"]["limits"]


@case("pinned-image-tags", "configmap",
      'container "exporter": image pgpool/pgpool2_exporter has no tag, so it means latest',
      'Deployment "prometheus" container "prometheus": image prom/prometheus:latest is tagged latest')
def unpinned_images(r):
    container(r, "exporter")["image"] = "pgpool/pgpool2_exporter"
    props_of(r, "Deployment", "prometheus")["spec"]["template"]["spec"]["containers"][0]["image"] = "prom/prometheus:latest"


@case("pgpool-no-load-balancer", "configmap", 'Service "pgpool": type LoadBalancer exposes Deployment "pgpool"',
      "allowLoadBalancer: true")
def load_balancer(r):
    props_of(r, "Service", "pgpool")["spec"]["type"] = "LoadBalancer"


@case("pgpool-no-load-balancer", "env", 'Service "pgpool": type NodePort exposes Deployment "pgpool"',
      "on every node's address", "allowNodePort: true")
def node_port(r):
    props_of(r, "Service", "pgpool")["spec"]["type"] = "NodePort"


def in_production(r):
    props_of(r, "Postgres", "pg")["metadata"]["labels"] = {"environment": "production"}
    pin_digests(r)


@case("network-policies-in-production", "configmap",
      "Postgres \"pg\"'s pods (PostgreSQL): no NetworkPolicy selects it, so every pod of the cluster reaches it",
      'Deployment "prometheus" (Prometheus): NetworkPolicy "prometheus" admits every pod of every namespace')
def production_without_isolation(r):
    in_production(r)
    r.remove(next(x for x in r if x[0].endswith(":NetworkPolicy") and x[1] == "pg"))
    props_of(r, "NetworkPolicy", "prometheus")["spec"]["ingress"] = [{"ports": [{"port": 9090}]}]


@case("kubedb-deletion-keeps-data", "env", "Postgres \"pg\": deletionPolicy 'Delete' deletes the database's volumes",
      "use DoNotTerminate")
def production_deleting_data(r):
    in_production(r)
    del props_of(r, "Postgres", "pg")["spec"]["deletionPolicy"]  # KubeDB's default: Delete


@case("kubedb-postgres-tls", "configmap", 'Postgres "pg": no spec.tls, so Pgpool-II and every other client reach '
      "PostgreSQL in clear text")
def production_without_backend_tls(r):
    in_production(r)
    del props_of(r, "Postgres", "pg")["spec"]["tls"]


@case("pgpool-exporter-sidecar", "configmap", 'Deployment "pgpool": the Pgpool-II pod has no pgpool/pgpool2_exporter')
def no_exporter(r):
    pod = props_of(r, "Deployment", "pgpool")["spec"]["template"]["spec"]
    pod["containers"] = pod["containers"][:1]


@case("pgpool-metrics-service-annotations", "configmap",
      "Service \"pgpool-metrics\": annotations prometheus.io/port: '9187', prometheus.io/path: not set",
      'set prometheus.io/port: "9719", prometheus.io/path: "/metrics"')
def wrong_annotations(r):
    annotations = props_of(r, "Service", "pgpool-metrics")["metadata"]["annotations"]
    annotations["prometheus.io/port"] = "9187"
    del annotations["prometheus.io/path"]


@case("pgpool-metrics-service-annotations", "env",
      'Deployment "pgpool": no Service selects its pods on the exporter\'s port 9719')
def no_metrics_service(r):
    r.remove(("kubernetes:core/v1:Service", "pgpool-metrics", props_of(r, "Service", "pgpool-metrics")))


@case("prometheus-rbac-read-only", "configmap",
      'Role "prometheus" rules[1] (services, pods) grants create, delete', "keep verbs to get")
def writable_prometheus(r):
    props_of(r, "Role", "prometheus")["rules"][1]["verbs"] += ["create", "delete"]


@case("prometheus-rbac-read-only", "env",
      'Role "prometheus" rules[1] grants reading secrets, configmaps: service discovery reads only endpointslices',
      "remove them")
def prometheus_reads_secrets(r):
    props_of(r, "Role", "prometheus")["rules"][1]["resources"] += ["secrets", "configmaps"]


@case("prometheus-rbac-read-only", "configmap", 'ClusterRole "db-prometheus" rules[1] grants reading /api')
def prometheus_reads_the_api_root(r):
    cluster_wide_grant(r)
    props_of(r, "ConfigMap", "prometheus-config-5a1b")["data"]["prometheus.yml"] = EVERY_NAMESPACE_YML
    props_of(r, "ClusterRole", "db-prometheus")["rules"][1]["nonResourceURLs"].append("/api")


@case("prometheus-rbac-namespaced", "configmap",
      'ClusterRoleBinding "db-prometheus" grants ServiceAccount "prometheus" of Deployment "prometheus" cluster-wide '
      "access, but its scrape config discovers in namespaces db, team-a: bind a Role with a RoleBinding in each")
def cluster_wide_grant_for_namespaced_discovery(r):
    cluster_wide_grant(r)
    config = props_of(r, "ConfigMap", "prometheus-config-5a1b")
    config["data"]["prometheus.yml"] = PROMETHEUS_YML.replace("[db]", "[db, team-a]")


@pytest.mark.parametrize("policy, mode, mutate, expected", CASES,
                         ids=[f"{p}-{m.__name__}" for p, _, m, _ in CASES])
def test_violating_input_fails_with_expected_message(policy: str, mode: str, mutate: Mutation,
                                                     expected: list[str]) -> None:
    resources = stack(mode)
    mutate(resources)
    found = evaluate(resources)
    mine = [v.message for v in found if v.policy == policy]
    assert mine, f"{policy} reported nothing; all violations: {found}"
    for fragment in expected:
        assert any(fragment in m for m in mine), f"{fragment!r} not in {mine}"
    assert all("hunter2" not in v.message for v in found), "a secret value reached a message"
    assert {v.policy for v in found} == {policy}, found


def test_every_policy_has_a_violating_case() -> None:
    assert {p for p, *_ in CASES} == {p.name for p in POLICIES}


# --- compliant variants of the rules with conditions -----------------------------------------------------------


def test_cluster_wide_grant_passes_when_prometheus_discovers_in_every_namespace() -> None:
    resources = stack()
    cluster_wide_grant(resources)
    props_of(resources, "ConfigMap", "prometheus-config-5a1b")["data"]["prometheus.yml"] = EVERY_NAMESPACE_YML
    assert evaluate(resources) == []
    # A binding for another account, or a Prometheus whose config is not in the stack, is not judged.
    props_of(resources, "ConfigMap", "prometheus-config-5a1b")["data"]["prometheus.yml"] = PROMETHEUS_YML
    props_of(resources, "ClusterRoleBinding", "db-prometheus")["subjects"][0]["name"] = "kube-state-metrics"
    assert evaluate(resources) == []


def test_a_query_cache_in_shared_memory_with_an_expiry_passes() -> None:
    resources = stack()
    set_conf(resources, memory_cache_enabled="on", memqcache_expire="10")
    assert evaluate(resources) == []
    set_conf(resources, memory_cache_enabled="off", memqcache_method="'memcached'")  # nothing cached: not judged
    assert evaluate(resources) == []


def test_sr_check_passes_with_a_pool_passwd_entry_for_its_user() -> None:
    """The guide's example: sr_check_user = 'postgres', its password from POSTGRES_USERNAME/_PASSWORD (a Secret)."""
    resources = stack("env")
    set_env(resources, SR_CHECK_PERIOD="10", SR_CHECK_USER="postgres")
    assert messages(resources, "pgpool-sr-check-password") == []


def test_sr_check_passes_with_a_pool_passwd_file_in_a_mounted_secret() -> None:
    resources = stack()
    set_conf(resources, sr_check_period="10", sr_check_user="'monitor'")
    resources.append(k8s("kubernetes:core/v1:Secret", "pgpool-files",
                         stringData={"pool_passwd": "monitor:AESgufDqr9wivkwAzkBFkrwtw==\n"}))
    deployment = props_of(resources, "Deployment", "pgpool")["spec"]["template"]["spec"]
    assert messages(resources, "pgpool-sr-check-password")
    deployment["volumes"].append({"name": "files", "secret": {"secretName": "pgpool-files"}})
    assert messages(resources, "pgpool-sr-check-password") == []


def test_image_forces_pool_hba_and_ssl_when_pool_passwd_is_off() -> None:
    resources = stack("env")
    set_env(resources, ENABLE_POOL_HBA=None, SSL=None)
    container(resources, "pgpool")["env"].append({"name": "PGPOOL_ENABLE_POOL_PASSWD", "value": "false"})
    props_of(resources, "Deployment", "pgpool")["metadata"]["labels"]["environment"] = "production"
    assert messages(resources, "pgpool-pool-hba") == []
    assert messages(resources, "pgpool-ssl-in-production") == []


def test_ssl_rule_applies_only_to_production_unless_configured() -> None:
    resources = stack()
    set_conf(resources, ssl=None)
    container(resources, "pgpool")["volumeMounts"].pop()
    assert messages(resources, "pgpool-ssl-in-production") == []
    assert messages(resources, "pgpool-ssl-in-production", stack_tags={"environment": "production"})
    everywhere = {"pgpool-ssl-in-production": {"requireSslEverywhere": True}}
    assert "ssl is not set, so Pgpool-II's default 'off' applies in requireSslEverywhere" in messages(
        resources, "pgpool-ssl-in-production", config=everywhere)[0]
    custom = {"pgpool-ssl-in-production": {"productionLabels": {"tier": "prod"}}}
    props_of(resources, "Postgres", "pg")["metadata"]["labels"] = {"tier": "prod"}
    assert messages(resources, "pgpool-ssl-in-production", config=custom)


@pytest.mark.parametrize(("label", "problem"), [
    ("4.7.2", None), ("4.6.0", "CVE-2025-46801"), ("4.2.22", "outside the supported series (4.3, 4.4, 4.5, 4.6, 4.7)")])
def test_release_of_an_image_pinned_by_digest_alone_comes_from_its_label(label: str, problem: str | None) -> None:
    resources = stack()
    container(resources, "pgpool")["image"] = "pgpool/pgpool" + DIGEST
    template = props_of(resources, "Deployment", "pgpool")["spec"]["template"]
    template["metadata"]["labels"]["app.kubernetes.io/version"] = label
    found = messages(resources, "pgpool-supported-release")
    assert [f"label app.kubernetes.io/version={label}" in m and problem in m for m in found] == (
        [True] if problem else [])


def test_certificate_mounted_for_the_image_turns_ssl_on() -> None:
    resources = stack()
    set_conf(resources, ssl=None)
    assert messages(resources, "pgpool-ssl-in-production", stack_tags={"environment": "production"}) == []


def test_weight_matches_a_two_pod_cluster_and_external_databases_are_not_judged() -> None:
    resources = stack()
    props_of(resources, "Postgres", "pg")["spec"]["replicas"] = 2
    assert messages(resources, "pgpool-backend-weight-matches-standbys")
    set_conf(resources, backend_weight1="1")
    assert messages(resources, "pgpool-backend-weight-matches-standbys") == []
    set_conf(resources, backend_weight1="7", backend_hostname1="'other-db-ro.example.net'",
             backend_hostname0="'other-db-rw.example.net'")
    assert messages(resources, "pgpool-backend-weight-matches-standbys") == []


def test_connection_limits_come_from_policy_config_without_a_postgres() -> None:
    resources = [r for r in stack() if not r[0].endswith(":Postgres")]
    set_conf(resources, num_init_children="64", max_pool="1")
    assert "max_connections - superuser_reserved_connections = 100 - 3 = 97 (from policy config maxConnections" in (
        messages(resources, "pgpool-connections-fit-backends")[0])
    roomy = {"pgpool-connections-fit-backends": {"maxConnections": 200.0}}
    assert messages(resources, "pgpool-connections-fit-backends", config=roomy) == []
    per_pod = {"pgpool-connections-fit-backends": {"countPgpoolReplicas": False}}
    assert messages(resources, "pgpool-connections-fit-backends", config=per_pod) == []


def test_load_balancer_allowed_by_config_and_other_services_unaffected() -> None:
    resources = stack()
    props_of(resources, "Service", "pgpool")["spec"]["type"] = "LoadBalancer"
    allowed = {"pgpool-no-load-balancer": {"allowLoadBalancer": True}}
    assert messages(resources, "pgpool-no-load-balancer", config=allowed) == []
    props_of(resources, "Service", "pgpool")["spec"]["type"] = "ClusterIP"
    resources.append(k8s("kubernetes:core/v1:Service", "prometheus", spec={
        "type": "LoadBalancer", "selector": {"app": "prometheus"}, "ports": [{"port": 9090}]}))
    assert messages(resources, "pgpool-no-load-balancer") == []


def test_node_port_allowed_by_its_own_config() -> None:
    resources = stack()
    props_of(resources, "Service", "pgpool")["spec"]["type"] = "NodePort"
    assert messages(resources, "pgpool-no-load-balancer", config={"pgpool-no-load-balancer": {"allowLoadBalancer": True}})
    assert messages(resources, "pgpool-no-load-balancer", config={"pgpool-no-load-balancer": {"allowNodePort": True}}) == []


RENAMED_IMAGES = ("registry.example.com/mirror/pgpool:4.7.2", "acme/pg-pooler:4.7.2",
                  "localhost/pgpool-k8s/pgpool:4.7.2")
"""A mirror, a renamed fork, and the local node's image: none is named .../pgpool/pgpool."""


def direct_command(r):
    pgpool = container(r, "pgpool")
    pgpool["command"] = ["/opt/pgpool-II/bin/pgpool", "-n", "-f", "/etc/pgpool/pgpool.conf"]
    pgpool["volumeMounts"][0] = {"name": "config", "mountPath": "/etc/pgpool"}


@pytest.mark.parametrize("image", RENAMED_IMAGES)
@pytest.mark.parametrize("mode", ["configmap", "env", "command"])
def test_pgpool_is_recognised_by_what_it_runs_not_by_its_image_name(image: str, mode: str) -> None:
    """Production without TLS, a root container and a missing limit are caught whatever the image is called."""
    resources = stack("env" if mode == "env" else "configmap")
    if mode == "command":
        direct_command(resources)
    container(resources, "pgpool")["image"] = image
    pod = props_of(resources, "Deployment", "pgpool")["spec"]["template"]["spec"]
    pod["containers"].append(pod["containers"].pop(0))  # not the first container either
    assert evaluate(resources) == []

    if mode == "env":
        set_env(resources, SSL="off")
    else:
        set_conf(resources, ssl="off")
    container(resources, "pgpool")["volumeMounts"] = [m for m in container(resources, "pgpool")["volumeMounts"]
                                                      if m["name"] != "tls"]
    container(resources, "pgpool")["securityContext"]["runAsUser"] = 0
    del container(resources, "pgpool")["resources"]["limits"]
    found = {v.policy for v in evaluate(resources, stack_tags={"environment": "production"})}
    assert {"pgpool-ssl-in-production", "pgpool-pod-security-context", "pgpool-pod-resources"} <= found, found


def test_pgpool_is_recognised_by_its_labels_when_nothing_else_shows() -> None:
    resources = stack("configmap")
    pgpool = container(resources, "pgpool")
    pgpool["image"] = "acme/pg-pooler:4.7.2"
    pgpool["volumeMounts"] = [{"name": "config", "mountPath": "/config"}]
    pgpool["env"] = []
    pgpool["securityContext"]["runAsUser"] = 0
    assert messages(resources, "pgpool-pod-security-context")


def test_service_monitor_replaces_annotations() -> None:
    resources = stack()
    service = props_of(resources, "Service", "pgpool-metrics")
    service["metadata"]["annotations"] = {}
    assert messages(resources, "pgpool-metrics-service-annotations")
    service["metadata"]["labels"] = {"app.kubernetes.io/component": "metrics"}
    resources.append(k8s("kubernetes:monitoring.coreos.com/v1:ServiceMonitor", "pgpool", spec={
        "selector": {"matchLabels": {"app.kubernetes.io/component": "metrics"}},
        "endpoints": [{"port": "metrics"}]}))
    assert messages(resources, "pgpool-metrics-service-annotations") == []


def test_cpu_limit_requirement_is_configurable() -> None:
    resources = stack()
    del container(resources, "exporter")["resources"]["limits"]["cpu"]
    assert messages(resources, "pgpool-pod-resources")
    assert messages(resources, "pgpool-pod-resources", config={"pgpool-pod-resources": {"requireCpuLimit": False}}) == []


def test_digest_pinned_image_passes() -> None:
    resources = stack()
    container(resources, "exporter")["image"] = "registry.example:5000/pgpool/pgpool2_exporter@sha256:" + "ab" * 32
    assert evaluate(resources) == []


def test_configmap_without_pgpool_conf_is_not_judged_as_pgpool_config() -> None:
    resources = stack()
    resources.append(k8s("kubernetes:core/v1:ConfigMap", "app-settings",
                         data={"settings.ini": "load_balance_mode = off\npassword_encryption = scram-sha-256\n"}))
    assert evaluate(resources) == []


# --- unknown values during preview -----------------------------------------------------------------------------


def _set_path(props: dict, path: tuple, value: Any) -> None:
    for step in path[:-1]:
        props = props[step]
    props[path[-1]] = value


POD = ("spec", "template", "spec")
UNKNOWNS = [
    ("configmap", "ConfigMap", "pgpool-config", ("data",), UNKNOWN_OBJECT_VALUE),
    ("configmap", "ConfigMap", "pgpool-config", ("data", "pgpool.conf"), UNKNOWN_STRING_VALUE),
    ("configmap", "ConfigMap", "pgpool-config", ("metadata", "name"), UNKNOWN_STRING_VALUE),
    ("configmap", "Deployment", "pgpool", POD + ("volumes", 0, "configMap", "name"), UNKNOWN_STRING_VALUE),
    ("env", "Deployment", "pgpool", POD + ("containers", 0, "env"), UNKNOWN_ARRAY_VALUE),
    ("env", "Deployment", "pgpool", POD + ("containers", 0, "env", 3, "value"), UNKNOWN_STRING_VALUE),
    ("env", "Deployment", "pgpool", POD + ("containers", 0, "env", 0), UNKNOWN_OBJECT_VALUE),
    ("env", "Deployment", "pgpool", POD + ("containers", 0, "image"), UNKNOWN_STRING_VALUE),
    ("env", "Deployment", "pgpool", POD + ("containers", 1, "securityContext"), UNKNOWN_OBJECT_VALUE),
    ("env", "Deployment", "pgpool", POD + ("containers", 1, "resources"), UNKNOWN_OBJECT_VALUE),
    ("env", "Deployment", "pgpool", POD + ("containers", 0, "command"), UNKNOWN_ARRAY_VALUE),
    ("env", "Deployment", "pgpool", ("spec", "replicas"), UNKNOWN_NUMBER_VALUE),
    ("env", "Deployment", "pgpool", ("spec", "template", "metadata", "labels"), UNKNOWN_OBJECT_VALUE),
    ("env", "Deployment", "pgpool", POD, UNKNOWN_OBJECT_VALUE),
    ("env", "Postgres", "pg", ("spec", "replicas"), UNKNOWN_NUMBER_VALUE),
    ("env", "Postgres", "pg", ("spec", "standbyMode"), UNKNOWN_STRING_VALUE),
    ("env", "Secret", "pg-config", ("stringData", "user.conf"), UNKNOWN_STRING_VALUE),
    ("env", "Service", "pgpool-metrics", ("metadata", "annotations"), UNKNOWN_OBJECT_VALUE),
    ("env", "Service", "pgpool", ("spec", "type"), UNKNOWN_STRING_VALUE),
    ("env", "Role", "prometheus", ("rules", 0, "verbs"), UNKNOWN_ARRAY_VALUE),
    ("env", "Role", "prometheus", ("rules", 0, "resources"), UNKNOWN_ARRAY_VALUE),
    ("env", "ConfigMap", "prometheus-config-5a1b", ("data", "prometheus.yml"), UNKNOWN_STRING_VALUE),
    ("configmap", "Deployment", "prometheus", POD + ("serviceAccountName",), UNKNOWN_STRING_VALUE),
]


@pytest.mark.parametrize("mode, kind, name, path, sentinel", UNKNOWNS,
                         ids=[f"{k}-{'.'.join(map(str, p))}" for _, k, _, p, _ in UNKNOWNS])
def test_unknown_values_during_preview_are_skipped(mode: str, kind: str, name: str, path: tuple, sentinel: str) -> None:
    resources = stack(mode)
    _set_path(props_of(resources, kind, name), path, sentinel)
    assert evaluate(resources) == []


def test_unknown_values_do_not_hide_known_violations() -> None:
    resources = stack("env")
    set_env(resources, LOAD_BALANCE_MODE="off", BACKEND_HOSTNAME1=UNKNOWN_STRING_VALUE)
    props_of(resources, "Postgres", "pg")["spec"]["replicas"] = UNKNOWN_NUMBER_VALUE
    assert [v.policy for v in evaluate(resources)] == ["pgpool-load-balance-mode-on"]


# --- remediation ------------------------------------------------------------------------------------------------


def _conf_of(props: dict) -> str:
    return props["data"]["pgpool.conf"]


def test_remediation_turns_load_balance_mode_on_in_pgpool_conf() -> None:
    resources = stack()
    set_conf(resources, load_balance_mode="off")
    resource_type, name, props = next(r for r in resources if r[1] == "pgpool-config")
    fixed = remediate("pgpool-load-balance-mode-on", resource_type, name, props)
    assert fixed is not None
    assert parse_pgpool_conf(_conf_of(fixed)).params["load_balance_mode"] == "on"
    assert _conf_of(fixed).count("load_balance_mode") == 1
    assert _conf_of(fixed).replace("load_balance_mode = on", "load_balance_mode = off") == _conf_of(props)
    resources[resources.index((resource_type, name, props))] = (resource_type, name, fixed)
    assert evaluate(resources) == []


def test_remediation_adds_env_and_keeps_secret_values_secret() -> None:
    resources = stack("env")
    set_env(resources, BACKEND_FLAG0=None, BACKEND_FLAG1="ALLOW_TO_FAILOVER")
    resource_type, name, props = next(r for r in resources if r[1] == "pgpool" and r[0].endswith("Deployment"))
    template = props["spec"]["template"]
    template["metadata"]["annotations"]["checksum/config"] = {SECRET_SIG: SECRET_VALUE, "value": "0f3a"}
    fixed = remediate("pgpool-backend-flags", resource_type, name, props)
    assert fixed is not None
    env = {e["name"]: e for e in fixed["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["PGPOOL_PARAMS_BACKEND_FLAG0"]["value"] == "ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER"
    assert env["PGPOOL_PARAMS_BACKEND_FLAG1"]["value"] == "DISALLOW_TO_FAILOVER"
    assert env["POSTGRES_PASSWORD"] == secret_env("POSTGRES_PASSWORD", "pg-auth", "password")
    assert fixed["spec"]["template"]["metadata"]["annotations"]["checksum/config"] == {
        SECRET_SIG: SECRET_VALUE, "value": "0f3a"}
    resources[resources.index((resource_type, name, props))] = (resource_type, name, fixed)
    assert evaluate(resources) == []


@pytest.mark.parametrize("policy, mutate", [
    ("pgpool-failover-on-backend-error-off", default_failover_on_error),
    ("pgpool-connection-cache-on", connection_cache_off),
    ("pgpool-listen-all-addresses", listen_localhost),
    ("pgpool-no-health-check-watchdog-failover", failover_machinery),
    ("pgpool-reserved-connections", no_reserved_connections),
])
def test_remediation_fixes_what_it_reports(policy: str, mutate: Mutation) -> None:
    mode = next(m for p, m, f, _ in CASES if f is mutate)
    resources = stack(mode)
    mutate(resources)
    for index, (resource_type, name, props) in enumerate(resources):
        fixed = remediate(policy, resource_type, name, props)
        if fixed is not None:
            resources[index] = (resource_type, name, fixed)
    assert messages(resources, policy) == []


def test_remediation_leaves_compliant_resources_alone() -> None:
    for resource_type, name, props in stack() + stack("env"):
        for policy in POLICIES:
            if getattr(policy, "has_remediation", lambda: False)():
                assert remediate(policy.name, resource_type, name, props) is None


# --- enforcement levels and config ---------------------------------------------------------------------------


def test_enforcement_levels_default_and_change_with_config() -> None:
    resources = stack()
    set_conf(resources, load_balance_mode="off")
    props_of(resources, "Service", "pgpool-metrics")["metadata"]["annotations"] = {}
    levels = {v.policy: v.level for v in evaluate(resources)}
    assert levels == {"pgpool-load-balance-mode-on": "mandatory", "pgpool-metrics-service-annotations": "advisory"}
    config = {"all": "advisory", "pgpool-metrics-service-annotations": {"enforcementLevel": "mandatory"}}
    assert {v.policy: v.level for v in evaluate(resources, config=config)} == {
        "pgpool-load-balance-mode-on": "advisory", "pgpool-metrics-service-annotations": "mandatory"}
    assert messages(resources, "pgpool-load-balance-mode-on", config={"pgpool-load-balance-mode-on": "disabled"}) == []
    remediated = evaluate(resources, config={"pgpool-load-balance-mode-on": "remediate"})
    assert {v.level for v in remediated if v.policy == "pgpool-load-balance-mode-on"} == {"mandatory"}


def test_every_policy_has_a_name_description_level_and_valid_config_schema() -> None:
    names = [p.name for p in POLICIES]
    assert len(names) == len(set(names))
    for policy in POLICIES:
        assert policy.description and policy.enforcement_level in (EnforcementLevel.MANDATORY,
                                                                   EnforcementLevel.ADVISORY), policy.name
        if policy.config_schema:
            schema = {"type": "object", "properties": policy.config_schema.properties}
            jsonschema.Draft7Validator.check_schema(schema)
            defaults = {k: v["default"] for k, v in policy.config_schema.properties.items()}
            assert set(defaults) == set(policy.config_schema.properties), f"{policy.name}: every setting has a default"
            jsonschema.validate(defaults, schema)


def test_minimal_config_rules_are_mandatory_and_cite_the_guide() -> None:
    guide_rules = ["pgpool-two-backends", "pgpool-backend-flags", "pgpool-failover-on-backend-error-off",
                   "pgpool-load-balance-mode-on", "pgpool-connection-cache-on",
                   "pgpool-no-health-check-watchdog-failover", "pgpool-backend-weight-matches-standbys",
                   "pgpool-sr-check-password"]
    for policy in (p for p in POLICIES if p.name in guide_rules):
        assert policy.enforcement_level == EnforcementLevel.MANDATORY
        assert "Pgpool-II on Kubernetes guide" in policy.description, policy.name


# --- the reader agrees with the real Pgpool-II ------------------------------------------------------------------

PGPOOL = shutil.which("pgpool") or "/usr/sbin/pgpool"
LINES = [
    "listen_addresses = '*'", "listen_addresses = *", "socket_dir = /var/run/pgpool", "port 9999",
    "backend_flag0 = ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER", "ssl = on # comment", "load_balance_mode = 'on' ssl = on",
    "sr_check_user = 'it''s'", "sr_check_user = 'it\\'s'", "backend_weight0 = 1.5.3", "= 3", "x = 0x1F",
    "x = .5", "x = 'a#b'", "x = -5", "ssl = 'on' # 'quoted' comment", "backend_hostname0 = pg.db.svc:5432",
    "LOAD_BALANCE_MODE = off", "x = @", "x = 'unterminated",
]


@pytest.mark.parametrize("line", LINES)
def test_reader_rejects_exactly_what_pgpool_rejects(line: str, tmp_path: Path) -> None:
    """`pgpool -m fast stop` parses the file before it looks for the pid file: its verdict is the truth."""
    assert Path(PGPOOL).exists(), "Pgpool-II is missing: run scripts/install_test_packages.sh"
    conf = tmp_path / "pgpool.conf"
    conf.write_text(f"{line}\npid_file_name = '{tmp_path}/pgpool.pid'\nlogdir = '{tmp_path}'\n")
    result = subprocess.run([PGPOOL, "-f", str(conf), "-m", "fast", "stop"], capture_output=True, text=True,
                            timeout=30)
    pgpool_rejects = "syntax error in configuration file" in result.stdout + result.stderr
    assert pgpool_rejects == bool(parse_pgpool_conf(conf.read_text()).errors), result.stderr


def test_reader_reads_values_the_way_pgpool_does() -> None:
    parsed = parse_pgpool_conf("LISTEN_ADDRESSES = *\nport 9999\nssl = 'on' # c\nx = 'it\\'s'\nssl=off y=1\n")
    assert parsed.params == {"listen_addresses": "*", "port": "9999", "ssl": "off", "x": "it\\'s", "y": "1"}
    assert parsed.lines["ssl"] == 5

