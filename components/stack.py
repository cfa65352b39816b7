"""The whole system of one stack: namespace, database, the roles' passwords, Pgpool-II and monitoring.

Order matters for a changed password: PostgreSQL learns it (the password Job) before the Pgpool-II
pods that carry it in pool_passwd roll, so they can log in to their backends from their first start.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from components.kubedb import EXPORTER_PORT as KUBEDB_EXPORTER_PORT
from components.kubedb import KubeDBPostgres, KubeDBPostgresArgs
from components.network_policy import database_policy_spec, peer
from components.ownership import marking, owner
from components.password_rotation import COMPONENT as PASSWORD_JOB_COMPONENT
from components.password_rotation import PasswordRotation, PasswordRotationArgs
from components.pgpool import COMPONENT as PGPOOL_COMPONENT
from components.pgpool import Pgpool, metrics_selector, metrics_service_name
from components.pgpool_config import PgpoolArgs
from components.prometheus import POD_LABELS as PROMETHEUS_POD_LABELS
from components.prometheus import Prometheus, PrometheusArgs
from components.settings import PROJECT, PrometheusSettings, StackSettings
from components.stack_secrets import PgpoolSecrets
from components.workload import PART_OF, selector_labels, service_host


class PgpoolStack(pulumi.ComponentResource):
    """KubeDB PostgreSQL (or another operator's), Pgpool-II in front, Prometheus watching both."""

    namespace: pulumi.Output[str]
    pgpool_host: pulumi.Output[str]
    pgpool_port: int
    primary_service: str
    replica_service: str
    credentials_secret: pulumi.Input[str]
    """Secret (keys username, password) of the first application user; the operator's superuser Secret
    when there is none."""
    app_credentials_secrets: dict[str, pulumi.Output[str]]
    metrics_endpoint: pulumi.Output[str]
    prometheus_url: str

    def __init__(self, name: str, settings: StackSettings, secrets: PgpoolSecrets,
                 opts: pulumi.ResourceOptions | None = None):
        # Every object below says it is this stack's (components/ownership.py).
        marks = pulumi.ResourceOptions(transformations=[marking(owner(PROJECT, settings.stack))])
        super().__init__("pgpool-k8s:index:PgpoolStack", name, None, pulumi.ResourceOptions.merge(opts, marks))
        namespace = self._namespace(settings)
        passwords = self._passwords(settings, secrets, [namespace, *self._database(settings, secrets, namespace)])
        pgpool = Pgpool(settings.pgpool.name, PgpoolArgs(
            settings=settings.pgpool,
            backends=settings.database.backends,
            namespace=settings.namespace,
            secrets=secrets,
            production=settings.production,
            prometheus_peer=prometheus_peer(settings.prometheus),
        ), pulumi.ResourceOptions(parent=self, depends_on=[namespace, passwords]))
        self.prometheus_url = self._prometheus(settings, namespace)
        self._outputs(settings, namespace, pgpool)

    def _namespace(self, settings: StackSettings) -> k8s.core.v1.Namespace:
        # A production namespace holds the database's volumes: Pulumi refuses to delete it until `pulumi state
        # unprotect`, and even then leaves it in the cluster.
        return k8s.core.v1.Namespace(
            settings.namespace,
            metadata={"name": settings.namespace, "labels": {
                "app.kubernetes.io/part-of": PART_OF,
                # Ours pass "restricted"; KubeDB's own pods may not, so enforcing it is a setting.
                "pod-security.kubernetes.io/enforce": settings.pod_security_enforce,
                "pod-security.kubernetes.io/warn": "restricted",
                "pod-security.kubernetes.io/audit": "restricted",
            }},
            opts=pulumi.ResourceOptions(parent=self, protect=settings.production, retain_on_delete=settings.production),
        )

    def _database(self, settings: StackSettings, secrets: PgpoolSecrets,
                  namespace: k8s.core.v1.Namespace) -> list[pulumi.Resource]:
        """The database, when the stack creates it (KubeDB); other operators' already runs."""
        db = settings.database
        if not db.operator_facts.created_by_stack:
            return []
        return [KubeDBPostgres(db.cluster_name, KubeDBPostgresArgs(
            database=db,
            namespace=settings.namespace,
            superuser=secrets.superuser,
            roles=secrets.stack_roles,
            monitor_user=secrets.monitor.name,
            password_encryption=settings.pgpool.password_encryption,
            production=settings.production,
            prometheus_operator=settings.prometheus.enabled and settings.prometheus.operator,
            service_monitor_labels=dict(settings.prometheus.operator_labels),
            network_policy=database_network_policy(settings),
        ), pulumi.ResourceOptions(parent=self, depends_on=[namespace]))]

    def _passwords(self, settings: StackSettings, secrets: PgpoolSecrets,
                   database_ready: list[pulumi.Resource]) -> PasswordRotation:
        return PasswordRotation(password_job_name(settings), PasswordRotationArgs(
            database=settings.database,
            backends=settings.database.backends,
            namespace=settings.namespace,
            secrets=secrets,
            password_encryption=settings.pgpool.password_encryption,
            production=settings.production,
        ), pulumi.ResourceOptions(parent=self, depends_on=database_ready))

    def _prometheus(self, settings: StackSettings, namespace: k8s.core.v1.Namespace) -> str:
        """The stack's Prometheus (or the Prometheus Operator's objects); its URL, "" when none."""
        if not settings.prometheus.enabled:
            return ""
        return Prometheus("prometheus", PrometheusArgs(
            settings=settings.prometheus,
            namespace=settings.namespace,
            pgpool_service=metrics_service_name(settings.pgpool.name),
            pgpool_metrics_selector=metrics_selector(settings.pgpool.name),
            # The operator's exporters' Service, where the stack knows one.
            postgres_metrics_service=settings.database.exporter_service,
            production=settings.production,
            network_policy=settings.pgpool.network_policy,
            query_cache=settings.pgpool.query_cache.enabled,
        ), pulumi.ResourceOptions(parent=self, depends_on=[namespace])).url

    def _outputs(self, settings: StackSettings, namespace: k8s.core.v1.Namespace, pgpool: Pgpool) -> None:
        ns_name, backends, exporter_port = settings.namespace, settings.database.backends, settings.pgpool.exporter_port
        self.namespace = namespace.metadata["name"]
        self.pgpool_host = pgpool.service_name.apply(lambda service: service_host(service, ns_name))
        self.pgpool_port = settings.pgpool.port
        self.primary_service = backends.host(backends.primary_service, ns_name)
        self.replica_service = backends.host(backends.replica_service, ns_name)
        self.app_credentials_secrets = pgpool.user_secret_names
        self.credentials_secret = next(iter(pgpool.user_secret_names.values()), backends.credentials_secret)
        self.metrics_endpoint = pgpool.metrics_service_name.apply(
            lambda service: f"http://{service_host(service, ns_name)}:{exporter_port}/metrics")
        self.register_outputs({
            "namespace": self.namespace,
            "pgpool_host": self.pgpool_host,
            "pgpool_port": self.pgpool_port,
            "primary_service": self.primary_service,
            "replica_service": self.replica_service,
            "credentials_secret": self.credentials_secret,
            "app_credentials_secrets": self.app_credentials_secrets,
            "metrics_endpoint": self.metrics_endpoint,
            "prometheus_url": self.prometheus_url,
        })


def prometheus_peer(prometheus: PrometheusSettings) -> dict:
    """Who may scrape Pgpool-II's exporter through its NetworkPolicy."""
    if not prometheus.enabled:
        return {}
    if prometheus.operator:
        # The operator's Prometheus runs in a namespace of its own; the operator labels its pods so.
        return {"namespace_selector": {}, "pod_selector": {"match_labels": {
            "app.kubernetes.io/name": "prometheus", "app.kubernetes.io/managed-by": "prometheus-operator"}}}
    return {"pod_selector": {"match_labels": PROMETHEUS_POD_LABELS}}


def password_job_name(settings: StackSettings) -> str:
    return f"{settings.pgpool.name}-passwords"


def database_network_policy(settings: StackSettings) -> dict | None:
    """Who reaches the database's pods: Pgpool-II and the password Job, the database itself, its operator,
    Prometheus; None without networkPolicy, or when the operator's pods are not the stack's to guard."""
    db = settings.database
    pods = db.operator_facts.database_pods(db)
    if not settings.pgpool.network_policy or not pods:
        return None
    clients = [peer((), selector_labels(settings.pgpool.name, PGPOOL_COMPONENT)),
               peer((), selector_labels(password_job_name(settings), PASSWORD_JOB_COMPONENT))]
    return database_policy_spec(pods, db.port, clients, db.operator_namespace, prometheus_peer(settings.prometheus),
                                KUBEDB_EXPORTER_PORT if db.monitoring else None)
