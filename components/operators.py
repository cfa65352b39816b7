"""Who runs PostgreSQL: everything the stack knows about each database operator, in one table.

Each operator names its read-write Service, read-only Service and superuser Secret its own way,
owns some roles of its own, may refuse clients without TLS, and may need something enabled before
the superuser's Secret exists; the facts and where they were checked are in the README ("Database
operators"). Pgpool-II always gets node 0 = read-write, node 1 = read-only. Every question about an
operator is asked of OPERATORS; no other module compares operator names. No Pulumi import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol

from components.workload import service_host


class DatabaseNames(Protocol):
    """What the templates below are filled from (the database settings)."""

    cluster_name: str
    superuser: str
    port: int
    primary_host: str
    replica_host: str
    credentials_secret: str


@dataclass(frozen=True)
class Backends:
    primary_service: str
    """Read-write Service (backend node 0)."""
    replica_service: str
    """Read-only Service in front of the standbys (backend node 1)."""
    port: int
    credentials_secret: str
    """Secret holding the superuser's name and password."""
    username_key: str = "username"
    password_key: str = "password"
    ca_secret: str = ""
    """Secret whose key ca.crt signed the backends' certificates, which Pgpool-II verifies; "" when the stack
    asked for no TLS to them (Pgpool-II then still uses TLS where the server offers it, unverified)."""

    def host(self, service: str, namespace: str) -> str:
        """Fully qualified name, so Pgpool-II resolves it from any namespace."""
        if "." in service:
            return service
        return service_host(service, namespace)


@dataclass(frozen=True)
class Operator:
    """One operator's facts. Names are templates of {cluster} (clusterName), {superuser}
    (postgresSuperuser) and, for external, {primary_host}, {replica_host}, {credentials_secret}."""

    primary_service: str
    replica_service: str
    credentials_secret: str
    username_key: str = "username"
    password_key: str = "password"
    owned_roles: Mapping[str, str] = field(default_factory=dict)
    """Roles it creates and manages itself besides the superuser, and what they are."""
    owns_superuser_role: bool = True
    """It creates and manages the superuser role (external: whoever runs it does)."""
    created_by_stack: bool = False
    """The stack creates the database itself (a KubeDB Postgres) and its superuser's Secret: the
    superuser's password is the stack's to generate and rotate. Every other operator owns its own."""
    exporter_service: str = ""
    """The Service in front of its postgres_exporter sidecars, with postgresMonitoring on; "" when the
    stack does not run one. That exporter gets the superuser's password in a connection string."""
    needs_tls: str = ""
    """Why its PostgreSQL refuses clients without TLS; "" when it does not."""
    enable_first: str = ""
    """What it must be told before the superuser's Secret exists; "" when nothing."""
    hosts_from_settings: bool = False
    """Its hosts and Secret are named by externalPrimaryHost, externalReplicaHost, externalCredentialsSecret."""
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    """Labels (templates of {cluster}) that select its database's pods, where the stack writes their
    NetworkPolicy; empty: the operator's own policies guard them."""

    def database_pods(self, db: DatabaseNames) -> dict[str, str]:
        return {key: value.format(cluster=db.cluster_name) for key, value in self.pod_labels.items()}

    def backends(self, db: DatabaseNames) -> Backends:
        names = {"cluster": db.cluster_name, "superuser": db.superuser, "primary_host": db.primary_host,
                 "replica_host": db.replica_host, "credentials_secret": db.credentials_secret}
        return Backends(self.primary_service.format(**names), self.replica_service.format(**names), db.port,
                        self.credentials_secret.format(**names), self.username_key, self.password_key)

    def roles_owned(self, db: DatabaseNames) -> dict[str, str]:
        """Roles it manages (name -> what it is): a stack user of the same name would fight it."""
        owned = {name: what.format(cluster=db.cluster_name) for name, what in self.owned_roles.items()}
        if self.owns_superuser_role:
            owned[db.superuser] = "the superuser"
        return owned


OPERATORS: Mapping[str, Operator] = {
    "kubedb": Operator(
        "{cluster}", "{cluster}-standby", "{cluster}-auth",
        created_by_stack=True, exporter_service="{cluster}-stats",  # the superuser also streams the replication
        # KubeDB's Postgres.OffshootSelectors (kubedb/apimachinery apis/kubedb/v1/postgres_helpers.go).
        pod_labels={"app.kubernetes.io/name": "postgreses.kubedb.com", "app.kubernetes.io/instance": "{cluster}",
                    "app.kubernetes.io/managed-by": "kubedb.com"}),
    "zalando": Operator(
        "{cluster}", "{cluster}-repl", "{superuser}.{cluster}.credentials.postgresql.acid.zalan.do",
        owned_roles={"standby": "the replication user, operator setting replication_username",
                     "pooler": "the connection pooler's user, operator setting connection_pooler_user",
                     "admin": "a protected role, operator setting protected_role_names",
                     "cron_admin": "a protected role, operator setting protected_role_names"},
        needs_tls="Spilo's pg_hba.conf rejects connections without TLS"),
    "crunchy": Operator(
        "{cluster}-primary", "{cluster}-replicas", "{cluster}-pguser-{superuser}", username_key="user",
        owned_roles={"_crunchyrepl": "the replication user", "_crunchypgbouncer": "PgBouncer's user",
                     "ccp_monitoring": "the exporter's user"},
        needs_tls="PGO's pg_hba.conf accepts only hostssl connections",
        enable_first="list the superuser in the PostgresCluster's spec.users (- name: postgres); PGO creates no "
                     "Secret for it otherwise"),
    "cloudnativepg": Operator(
        "{cluster}-rw", "{cluster}-ro", "{cluster}-superuser",
        owned_roles={"streaming_replica": "the replication user", "cnpg_pooler_pgbouncer": "the Pooler's user",
                     "app": "the default application owner, bootstrap.initdb.owner; its password is in the "
                            "Secret {cluster}-app"},
        enable_first="set spec.enableSuperuserAccess: true on the Cluster; CloudNativePG creates no superuser "
                     "Secret otherwise (off by default since 1.21)"),
    "external": Operator(
        "{primary_host}", "{replica_host}", "{credentials_secret}", owns_superuser_role=False,
        hosts_from_settings=True),
}
"""Every operator the stack works with, by its `operator` setting."""
