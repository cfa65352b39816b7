"""Where Pgpool-II's two backends and the operator's credentials live, per operator.

Each operator names its read-write Service, read-only Service and user Secret its own way
(see the table in the README); Pgpool-II always gets node 0 = read-write, node 1 = read-only.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.settings import DatabaseSettings
from components.workload import service_host


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


def backends_for(db: DatabaseSettings) -> Backends:
    name, user = db.cluster_name, db.superuser
    if db.operator == "kubedb":
        return Backends(name, f"{name}-standby", db.port, f"{name}-auth")
    if db.operator == "zalando":
        return Backends(name, f"{name}-repl", db.port, f"{user}.{name}.credentials.postgresql.acid.zalan.do")
    if db.operator == "crunchy":
        return Backends(f"{name}-primary", f"{name}-replicas", db.port, f"{name}-pguser-{user}", username_key="user")
    if db.operator == "cloudnativepg":
        return Backends(f"{name}-rw", f"{name}-ro", db.port, f"{name}-app")
    return Backends(db.primary_host, db.replica_host, db.port, db.credentials_secret)
