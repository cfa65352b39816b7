"""The Job that sets every role Pgpool-II logs in as, with its current password, in PostgreSQL.

The stack orders it after the database and before Pgpool-II, so a changed password is in
PostgreSQL before the Pgpool-II pods that carry it start (README, "Password rotation").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from components import password_rotation_config as rotation
from components.k8s_secret import kubernetes_secret
from components.operators import Backends
from components.pgpool_config import CA_FILE, config_checksum
from components.settings import DatabaseSettings
from components.stack_secrets import PgpoolSecrets
from components.workload import container_security_context, metadata_labels, resources, restricted_pod_spec

COMPONENT = "password-rotation"
UID = 70  # the postgres user of the postgres:*-alpine images
SUPERUSER_DIR = "/etc/pgpool-k8s/superuser"
ROTATION_DIR = "/etc/pgpool-k8s/rotation"
CA_DIR = "/etc/pgpool-k8s/postgres-ca"
"""The CA of PostgreSQL's certificates (Backends.ca_secret), when the stack asked for TLS to it."""
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
        child = pulumi.ResourceOptions(parent=self)
        labels = metadata_labels(name, COMPONENT, args.production)
        files = rotation_files(args)
        roles = kubernetes_secret(name, args.namespace, labels, files, child)
        job = k8s.batch.v1.Job(
            name,
            metadata={"namespace": args.namespace, "labels": labels},  # auto-named: a change runs a new Job
            spec=job_spec(args, roles.metadata["name"], labels, files),
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(
                custom_timeouts=pulumi.CustomTimeouts(create=f"{DEADLINE_SECONDS}s", update=f"{DEADLINE_SECONDS}s"))),
        )
        if rotation.PREVIOUS_PASSWORD in files:
            self._restart_postgres(args, job, labels, child)
        self.job_name = job.metadata["name"]
        self.register_outputs({"job_name": self.job_name})

    @staticmethod
    def _restart_postgres(args: PasswordRotationArgs, job: k8s.batch.v1.Job, labels: dict,
                          child: pulumi.ResourceOptions) -> None:
        """KubeDB's pods read the superuser password at start (replication, exporter): restart them,
        standbys first, once PostgreSQL has the new one (KubeDB's Restart PostgresOpsRequest)."""
        cluster = args.database.cluster_name
        k8s.apiextensions.CustomResource(
            f"{cluster}-restart",
            api_version="ops.kubedb.com/v1alpha1",
            kind="PostgresOpsRequest",
            metadata={"name": job.metadata["name"].apply(lambda job_name: f"{job_name}-restart"),
                      "namespace": args.namespace, "labels": labels},
            spec={"type": "Restart", "databaseRef": {"name": cluster}, "apply": "Always"},
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[job])),
        )


def rotation_files(args: PasswordRotationArgs) -> dict[str, str]:
    """The Job's own Secret: roles.sql and, while the stack's superuser password changes, the previous one.

    The stack sets the superuser's password only where it owns it (its own KubeDB database); every
    other operator rotates its own."""
    sec = args.secrets
    owns_superuser = args.database.operator_facts.created_by_stack
    files = {rotation.ROLES_SQL: rotation.render_roles_sql(
        sec.stack_roles, sec.monitor.name, args.password_encryption, args.namespace,
        sec.superuser if owns_superuser else None)}
    if owns_superuser and sec.previous_superuser_password:
        files[rotation.PREVIOUS_PASSWORD] = sec.previous_superuser_password
    return files


def _container(args: PasswordRotationArgs) -> dict:
    backends = args.backends
    # With the database's CA, psql verifies its certificate chain, as Pgpool-II does (ssl_ca_cert).
    tls = [{"name": "PGSSLMODE", "value": "verify-ca"},
           {"name": "PGSSLROOTCERT", "value": f"{CA_DIR}/{CA_FILE}"}] if backends.ca_secret else []
    mounts = [{"name": "postgres-ca", "mount_path": CA_DIR, "read_only": True}] if backends.ca_secret else []
    return {
        "name": "set-passwords",
        "image": args.database.client_image,
        "command": ["sh", "-c", rotation.rotation_script(SUPERUSER_DIR, ROTATION_DIR)],
        "env": [
            {"name": "PGHOST", "value": backends.host(backends.primary_service, args.namespace)},
            {"name": "PGPORT", "value": str(backends.port)},
            {"name": "PGDATABASE", "value": "postgres"},
            {"name": "PGCONNECT_TIMEOUT", "value": "10"},
            {"name": "PGAPPNAME", "value": f"pgpool-k8s-{COMPONENT}"},
            *tls,
        ],
        "volume_mounts": [
            {"name": "superuser", "mount_path": SUPERUSER_DIR, "read_only": True},
            {"name": "roles", "mount_path": ROTATION_DIR, "read_only": True},
            *mounts,
        ],
        "resources": resources("10m", "16Mi", "200m", "64Mi"),
        "security_context": container_security_context(UID),
    }


def job_spec(args: PasswordRotationArgs, roles_secret: object, labels: dict, files: dict[str, str]) -> dict:
    """The Job: the container above with the superuser's Secret (the operator's) and its own."""
    backends = args.backends
    superuser_files = [{"key": backends.username_key, "path": rotation.USERNAME},
                       {"key": backends.password_key, "path": rotation.PASSWORD}]
    volumes = [
        # Group-readable through fsGroup: the container's uid is not root.
        {"name": "superuser", "secret": {"secret_name": backends.credentials_secret,
                                         "items": superuser_files, "default_mode": 0o440}},
        {"name": "roles", "secret": {"secret_name": roles_secret, "default_mode": 0o440}},
    ]
    if backends.ca_secret:
        volumes.append({"name": "postgres-ca", "secret": {
            "secret_name": backends.ca_secret, "items": [{"key": CA_FILE, "path": CA_FILE}], "default_mode": 0o444}})
    checksum = config_checksum(*[f"{key}\n{value}" for key, value in sorted(files.items())])
    return {
        "backoff_limit": 4,
        "active_deadline_seconds": DEADLINE_SECONDS,
        "template": {
            # The roles Secret changes in place; its checksum makes every change a new Job.
            "metadata": {"labels": labels, "annotations": {"checksum/roles": checksum}},
            "spec": restricted_pod_spec(UID, [_container(args)], volumes, restart_policy="Never"),
        },
    }
