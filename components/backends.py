"""Where Pgpool-II's two backends and the operator's credentials live, per operator.

Each operator names its read-write Service, read-only Service and superuser Secret its own way,
owns some roles of its own, and may need something enabled before the superuser's Secret
exists; the facts and where they were checked are in the README ("Database operators").
Pgpool-II always gets node 0 = read-write, node 1 = read-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from components.workload import service_host

if TYPE_CHECKING:
    from components.settings import DatabaseSettings


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

    def host(self, service: str, namespace: str) -> str:
        """Fully qualified name, so Pgpool-II resolves it from any namespace."""
        if "." in service:
            return service
        return service_host(service, namespace)


SUPERUSER_REQUIREMENT = {
    "kubedb": "",
    "zalando": "",
    "crunchy": "list the superuser in the PostgresCluster's spec.users (- name: postgres); PGO creates no "
                "Secret for it otherwise",
    "cloudnativepg": "set spec.enableSuperuserAccess: true on the Cluster; CloudNativePG creates no superuser "
                     "Secret otherwise (off by default since 1.21)",
    "external": "",
}
"""What the operator must be told before the superuser's Secret exists ("" when nothing)."""

TLS_ONLY_OPERATORS = {
    "zalando": "Spilo's pg_hba.conf rejects connections without TLS",
    "crunchy": "PGO's pg_hba.conf accepts only hostssl connections",
}
"""Operators whose PostgreSQL refuses clients without TLS, and why."""


OPERATOR_ROLES = {
    "kubedb": {},  # only the superuser, which also streams the replication
    "zalando": {"standby": "the replication user, operator setting replication_username",
                "pooler": "the connection pooler's user, operator setting connection_pooler_user",
                "admin": "a protected role, operator setting protected_role_names",
                "cron_admin": "a protected role, operator setting protected_role_names"},
    "crunchy": {"_crunchyrepl": "the replication user", "_crunchypgbouncer": "PgBouncer's user",
                "ccp_monitoring": "the exporter's user"},
    "cloudnativepg": {"streaming_replica": "the replication user", "cnpg_pooler_pgbouncer": "the Pooler's user",
                      "app": "the default application owner, bootstrap.initdb.owner; its password is in the "
                             "Secret {cluster}-app"},
    "external": {},
}
"""Roles each operator creates and manages itself, besides the superuser, and what they are."""


def operator_owned_users(db: "DatabaseSettings") -> dict[str, str]:
    """Roles the operator manages (name -> what it is): a stack user of the same name would fight it."""
    owned = {name: what.format(cluster=db.cluster_name) for name, what in OPERATOR_ROLES[db.operator].items()}
    if db.operator != "external":
        owned[db.superuser] = "the superuser"
    return owned


def backends_for(db: "DatabaseSettings") -> Backends:
    name, user = db.cluster_name, db.superuser
    if db.operator == "kubedb":
        return Backends(name, f"{name}-standby", db.port, f"{name}-auth")
    if db.operator == "zalando":
        return Backends(name, f"{name}-repl", db.port, f"{user}.{name}.credentials.postgresql.acid.zalan.do")
    if db.operator == "crunchy":
        return Backends(f"{name}-primary", f"{name}-replicas", db.port, f"{name}-pguser-{user}", username_key="user")
    if db.operator == "cloudnativepg":
        return Backends(f"{name}-rw", f"{name}-ro", db.port, f"{name}-superuser")
    return Backends(db.primary_host, db.replica_host, db.port, db.credentials_secret)
