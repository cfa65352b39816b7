"""The Job that sets every role Pgpool-II logs in as, with its current password, in PostgreSQL.

The stack orders it after the database and before Pgpool-II, so a changed password is in
PostgreSQL before the Pgpool-II pods that carry it start (README, "Password rotation").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from components import password_rotation_config as rotation
from components.backends import Backends
from components.k8s_secret import kubernetes_secret
from components.pgpool_config import config_checksum
from components.settings import DatabaseSettings, PgpoolSecrets
from components.workload import container_security_context, metadata_labels, pod_security_context, resources

COMPONENT = "password-rotation"
UID = 70  # the postgres user of the postgres:*-alpine images
SUPERUSER_DIR = "/etc/pgpool-k8s/superuser"
ROTATION_DIR = "/etc/pgpool-k8s/rotation"
DEADLINE_SECONDS = 30 * 60
"""How long one run may wait for a new database to accept connections (KubeDB takes minutes)."""


@dataclass(frozen=True)
class PasswordRotationArgs:
    database: DatabaseSettings
    backends: Backends
    namespace: str
    secrets: PgpoolSecrets = field(repr=False)
    password_encryption: str = "scram-sha-256"
    """How PostgreSQL stores the passwords; the method of Pgpool-II's pool_passwd."""
    production: bool = False


class PasswordRotation(pulumi.ComponentResource):
    """Runs roles.sql on the primary as the superuser whenever a password or role changes."""

    job_name: pulumi.Output[str]
    """The Job of the current passwords (a new one, under a new name, for every change)."""

    def __init__(self, name: str, args: PasswordRotationArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("pgpool-k8s:index:PasswordRotation", name, None, opts)
        db, ns, sec = args.database, args.namespace, args.secrets
        child = pulumi.ResourceOptions(parent=self)
        labels = metadata_labels(name, COMPONENT, args.production)
        # With KubeDB the stack owns the superuser's password too; other operators rotate their own.
        owns_superuser = db.operator == "kubedb"
        superuser = sec.users[0] if owns_superuser else None
        files = {rotation.ROLES_SQL: rotation.render_roles_sql(
            sec.users[1:], sec.monitor.name, args.password_encryption, ns, superuser)}
        if owns_superuser and sec.previous_superuser_password:
            files[rotation.PREVIOUS_PASSWORD] = sec.previous_superuser_password
        roles = kubernetes_secret(name, ns, labels, files, child)

        backends = args.backends
        container = {
            "name": "set-passwords",
            "image": db.client_image,
            "command": ["sh", "-c", rotation.rotation_script(SUPERUSER_DIR, ROTATION_DIR)],
            "env": [
                {"name": "PGHOST", "value": backends.host(backends.primary_service, ns)},
                {"name": "PGPORT", "value": str(backends.port)},
                {"name": "PGDATABASE", "value": "postgres"},
                {"name": "PGCONNECT_TIMEOUT", "value": "10"},
                {"name": "PGAPPNAME", "value": f"pgpool-k8s-{COMPONENT}"},
            ],
            "volume_mounts": [
                {"name": "superuser", "mount_path": SUPERUSER_DIR, "read_only": True},
                {"name": "roles", "mount_path": ROTATION_DIR, "read_only": True},
            ],
            "resources": resources("10m", "16Mi", "200m", "64Mi"),
            "security_context": container_security_context(UID),
        }
        superuser_files = [{"key": backends.username_key, "path": rotation.USERNAME},
                           {"key": backends.password_key, "path": rotation.PASSWORD}]
        job = k8s.batch.v1.Job(
            name,
            metadata={"namespace": ns, "labels": labels},  # auto-named: a change runs a new Job
            spec={
                "backoff_limit": 4,
                "active_deadline_seconds": DEADLINE_SECONDS,
                "template": {
                    # The roles Secret changes in place; its checksum makes every change a new Job.
                    "metadata": {"labels": labels,
                                 "annotations": {"checksum/roles": config_checksum(*[f"{key}\n{value}" for key, value in sorted(files.items())])}},
                    "spec": {
                        "restart_policy": "Never",
                        "automount_service_account_token": False,
                        "enable_service_links": False,
                        "security_context": pod_security_context(UID),
                        "containers": [container],
                        "volumes": [
                            # Group-readable through fsGroup: the container's uid is not root.
                            {"name": "superuser", "secret": {"secret_name": backends.credentials_secret,
                                                             "items": superuser_files, "default_mode": 0o440}},
                            {"name": "roles", "secret": {"secret_name": roles.metadata["name"],
                                                         "default_mode": 0o440}},
                        ],
                    },
                },
            },
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(
                custom_timeouts=pulumi.CustomTimeouts(create=f"{DEADLINE_SECONDS}s", update=f"{DEADLINE_SECONDS}s"))),
        )
        if owns_superuser and sec.previous_superuser_password:
            # KubeDB's pods read the superuser password at start (replication, exporter): restart them,
            # standbys first, once PostgreSQL has the new one (KubeDB's Restart PostgresOpsRequest).
            k8s.apiextensions.CustomResource(
                f"{db.cluster_name}-restart",
                api_version="ops.kubedb.com/v1alpha1",
                kind="PostgresOpsRequest",
                metadata={"name": job.metadata["name"].apply(lambda job_name: f"{job_name}-restart"),
                          "namespace": ns, "labels": labels},
                spec={"type": "Restart", "databaseRef": {"name": db.cluster_name}, "apply": "Always"},
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[job])),
            )

        self.job_name = job.metadata["name"]
        self.register_outputs({"job_name": self.job_name})
