"""KubeDB PostgreSQL: one primary and hot standbys, its auth Secret, settings and initial roles.

The Postgres names its Secrets as plain strings and waits for them through depends_on: the engine
replaces a resource along with a replaced dependency only through property references, so no new
password or setting can ever replace (delete) the database. KubeDB's webhook refuses a changed
spec.init once the database is initialised, and the superuser's Secret is read by KubeDB's pods,
so the names stay fixed for the life of the database (README, "KubeDB's Secrets and the Postgres").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from components.database_config import render_user_conf
from components.password_rotation_config import render_roles_sql
from components.k8s_secret import kubernetes_secret
from components.settings import DatabaseSettings
from components.stack_secrets import Credential
from components.workload import metadata_labels

EXPORTER_PORT = 56790  # KubeDB's default postgres_exporter port


@dataclass(frozen=True)
class KubeDBPostgresArgs:
    database: DatabaseSettings
    namespace: str
    superuser: Credential = field(repr=False)
    roles: tuple[Credential, ...] = field(repr=False)
    """Roles created at first start (monitoring and application users)."""
    monitor_user: str = "monitor"
    password_encryption: str = "scram-sha-256"
    """How PostgreSQL stores and checks passwords; the same method as Pgpool-II's pool_passwd."""
    production: bool = False
    prometheus_operator: bool = False
    service_monitor_labels: dict[str, str] = field(default_factory=dict)
    """Extra labels on KubeDB's ServiceMonitor, for the Prometheus Operator's serviceMonitorSelector."""
    network_policy: dict | None = None
    """The database's pods' NetworkPolicy spec (components/network_policy.py); None: none."""


class KubeDBPostgres(pulumi.ComponentResource):
    """A `kubedb.com/v1` Postgres; KubeDB creates the Services `<name>` and `<name>-standby`."""

    primary_service: str
    """Read-write Service: always the primary, even after a failover."""
    standby_service: str
    """Read-only Service over the hot standbys."""
    port: int
    auth_secret_name: str
    """Secret with keys username and password of the superuser."""
    superuser_password: pulumi.Output[str]
    """Secret output; never exported in plaintext."""

    def __init__(self, name: str, args: KubeDBPostgresArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("pgpool-k8s:index:KubeDBPostgres", name, None, opts)
        db, ns = args.database, args.namespace
        # A production database outlives a destroy, a rename or a replacement: Pulumi refuses to delete these
        # (protect) until `pulumi state unprotect`, and even then leaves them in the cluster (retainOnDelete).
        child = pulumi.ResourceOptions(parent=self, protect=args.production, retain_on_delete=args.production)
        labels = metadata_labels(db.cluster_name, "postgres", args.production)
        backends = db.backends
        names = SecretNames(backends.credentials_secret, f"{db.cluster_name}-config", f"{db.cluster_name}-init")
        secrets = [
            kubernetes_secret(names.auth, ns, labels,
                              {"username": args.superuser.name, "password": args.superuser.password}, child,
                              "kubernetes.io/basic-auth"),
            kubernetes_secret(names.config, ns, labels, {"user.conf": render_user_conf(db, args.password_encryption)},
                              child),
            kubernetes_secret(names.init, ns, labels, {"init.sql": render_roles_sql(
                args.roles, args.monitor_user, args.password_encryption, ns)}, child),
        ]
        self.postgres = k8s.apiextensions.CustomResource(
            db.cluster_name,
            api_version="kubedb.com/v1",
            kind="Postgres",
            metadata={"name": db.cluster_name, "namespace": ns, "labels": labels},
            spec=postgres_spec(args, names, labels),
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=secrets)),
        )
        if args.network_policy is not None:
            k8s.networking.v1.NetworkPolicy(
                db.cluster_name, metadata={"name": db.cluster_name, "namespace": ns, "labels": labels},
                spec=args.network_policy, opts=pulumi.ResourceOptions(parent=self))
        self.primary_service = backends.primary_service
        self.standby_service = backends.replica_service
        self.port = db.port
        self.auth_secret_name = names.auth
        self.superuser_password = pulumi.Output.secret(args.superuser.password)
        self.register_outputs({
            "primary_service": self.primary_service,
            "standby_service": self.standby_service,
            "port": self.port,
            "auth_secret_name": self.auth_secret_name,
            "superuser_password": self.superuser_password,
        })


@dataclass(frozen=True)
class SecretNames:
    """The Postgres' Secrets, named as plain strings: fixed for the life of the database."""

    auth: str
    config: str
    init: str


def postgres_spec(args: KubeDBPostgresArgs, names: SecretNames, labels: dict[str, str]) -> dict:
    """The Postgres' spec: hot standbys, the Secrets above, and KubeDB's exporter when monitored."""
    db = args.database
    storage = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": db.storage_size}}}
    if db.storage_class:
        storage["storageClassName"] = db.storage_class
    spec = {
        "version": db.version,
        "replicas": db.replicas,
        "standbyMode": "Hot",
        "streamingMode": db.streaming_mode,
        "clientAuthMode": "md5" if args.password_encryption == "md5" else "scram",
        "authSecret": {"name": names.auth},
        "configSecret": {"name": names.config},
        "init": {"script": {"scriptPath": "/var/initdb", "secret": {"secretName": names.init}}},
        "storageType": "Durable",
        "storage": storage,
        "deletionPolicy": db.deletion_policy,
    }
    if db.tls_issuer:
        # KubeDB has cert-manager issue the server's and clients' certificates; PostgreSQL then admits TCP
        # clients only over TLS (hostssl), and the standbys verify the primary's certificate chain, as
        # Pgpool-II verifies every backend's (ssl_ca_cert).
        spec["tls"] = {"issuerRef": {"apiGroup": "cert-manager.io", "kind": db.tls_issuer_kind, "name": db.tls_issuer}}
        spec["sslMode"] = "verify-ca"
    if db.monitoring:
        spec["monitor"] = {
            "agent": "prometheus.io/operator" if args.prometheus_operator else "prometheus.io/builtin",
            "prometheus": {"exporter": {
                "port": EXPORTER_PORT,
                "resources": {"requests": {"cpu": "25m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
            }},
        }
        if args.prometheus_operator:
            spec["monitor"]["prometheus"]["serviceMonitor"] = {
                "labels": {**labels, **args.service_monitor_labels}, "interval": "30s"}
    return spec
