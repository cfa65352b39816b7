"""Prometheus scraping Pgpool-II's exporter and KubeDB's postgres_exporter, with alert rules.

Either a Prometheus server of its own (ServiceAccount, read-only RBAC in the namespaces it
discovers in, ConfigMaps, Deployment, Service), or, where the cluster runs the Prometheus
Operator, ServiceMonitor and PrometheusRule objects for it. The Grafana dashboard ConfigMap is
picked up by Grafana's sidecar either way.

The server's ConfigMaps are named by Pulumi (`prometheus-config-<suffix>`): a changed config
creates a new ConfigMap, rolls the Deployment onto it in place, then deletes the old one.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components import monitoring_config as mon
from components.network_policy import prometheus_policy_spec
from components.settings import PrometheusSettings
from components.workload import (
    container_security_context,
    empty_dir,
    metadata_labels,
    resources,
    restricted_pod_spec,
    selector_labels,
    service_host,
)

NAME = "prometheus"
POD_LABELS = selector_labels(NAME, NAME)
"""The Prometheus pods' labels, also what Pgpool-II's NetworkPolicy admits to the exporter."""
PORT = 9090
UID = 65534  # nobody, the user of the official image
RULES_DIR = "/etc/prometheus/rules"
RBAC_GROUP = "rbac.authorization.k8s.io"


@dataclass(frozen=True)
class PrometheusArgs:
    settings: PrometheusSettings
    namespace: str
    pgpool_service: str
    """The Pgpool-II metrics Service (for rule labels and the dashboard)."""
    pgpool_metrics_selector: dict[str, str]
    """Labels of the metrics Service, for the ServiceMonitor."""
    postgres_metrics_service: str
    """The Service in front of the postgres_exporter sidecars (for the rules); "" when unknown."""
    production: bool = False
    network_policy: bool = False
    """Admit only the named clients to the server (components/network_policy.py)."""
    query_cache: bool = False
    """Pgpool-II runs its query cache: its alert and dashboard section."""


class Prometheus(pulumi.ComponentResource):
    url: str
    """In-cluster URL of the Prometheus server; empty with the Prometheus Operator."""

    def __init__(self, name: str, args: PrometheusArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("pgpool-k8s:index:Prometheus", name, None, opts)
        s, ns = args.settings, args.namespace
        child = pulumi.ResourceOptions(parent=self)
        labels = metadata_labels(NAME, NAME, args.production)

        if s.grafana_dashboard:
            k8s.core.v1.ConfigMap(
                f"{args.pgpool_service}-dashboard",
                metadata={"name": f"{args.pgpool_service}-dashboard", "namespace": ns,
                          "labels": {**labels, "grafana_dashboard": "1"}},
                data={"pgpool.json": mon.render_grafana_dashboard(args.pgpool_service, ns, args.query_cache)},
                opts=child,
            )

        if s.operator:
            self._operator_objects(args, labels, child)
            self.url = ""
        else:
            self._server(args, labels, child)
            self.url = f"http://{service_host(NAME, ns)}:{PORT}"
        self.register_outputs({"url": self.url})

    def _operator_objects(self, args: PrometheusArgs, labels: dict, child: pulumi.ResourceOptions) -> None:
        ns = args.namespace
        # The operator's Prometheus selects these by label (serviceMonitorSelector, ruleSelector).
        labels = {**labels, **dict(args.settings.operator_labels)}
        k8s.apiextensions.CustomResource(
            f"{args.pgpool_service}",
            api_version="monitoring.coreos.com/v1",
            kind="ServiceMonitor",
            metadata={"name": args.pgpool_service, "namespace": ns, "labels": labels},
            spec={
                "selector": {"matchLabels": args.pgpool_metrics_selector},
                "namespaceSelector": {"matchNames": [ns]},
                "endpoints": [{"port": "metrics", "path": "/metrics", "interval": args.settings.scrape_interval}],
            },
            opts=child,
        )
        k8s.apiextensions.CustomResource(
            f"{args.pgpool_service}-rules",
            api_version="monitoring.coreos.com/v1",
            kind="PrometheusRule",
            metadata={"name": f"{args.pgpool_service}-rules", "namespace": ns, "labels": labels},
            spec={"groups": mon.alert_rule_groups(args.settings, args.pgpool_service, ns,
                                                    args.postgres_metrics_service, args.query_cache)},
            opts=child,
        )

    def _server(self, args: PrometheusArgs, labels: dict, child: pulumi.ResourceOptions) -> None:
        s, ns = args.settings, args.namespace
        account = k8s.core.v1.ServiceAccount(NAME, metadata={"name": NAME, "namespace": ns, "labels": labels},
                                             opts=child)
        namespaces = None if s.cluster_wide else list(dict.fromkeys([ns, *s.discovery_namespaces]))
        _discovery_rbac(account, ns, namespaces, labels, child)
        prometheus_yml = mon.render_prometheus_yml(s, namespaces, [f"{RULES_DIR}/*.yml"])
        rules_yml = mon.render_alert_rules(s, args.pgpool_service, ns, args.postgres_metrics_service,
                                           args.query_cache)
        # Auto-named (no metadata.name): see the module docstring.
        config = k8s.core.v1.ConfigMap(f"{NAME}-config", metadata={"namespace": ns, "labels": labels},
                                       data={"prometheus.yml": prometheus_yml}, opts=child)
        rules = k8s.core.v1.ConfigMap(f"{NAME}-rules", metadata={"namespace": ns, "labels": labels},
                                      data={"pgpool.yml": rules_yml}, opts=child)
        volumes = [
            {"name": "config", "config_map": {"name": config.metadata["name"]}},
            {"name": "rules", "config_map": {"name": rules.metadata["name"]}},
            self._data_volume(args, labels, child),
        ]
        k8s.apps.v1.Deployment(
            NAME,
            metadata={"name": NAME, "namespace": ns, "labels": labels},
            spec={
                "replicas": 1,
                # Two servers must never write one TSDB volume.
                "strategy": {"type": "Recreate"},
                "selector": {"match_labels": POD_LABELS},
                "template": {
                    "metadata": {"labels": labels},
                    # The API token: Kubernetes service discovery needs it.
                    "spec": restricted_pod_spec(UID, [server_container(s)], volumes,
                                                service_account=account.metadata["name"]),
                },
            },
            opts=child,
        )
        k8s.core.v1.Service(
            NAME,
            metadata={"name": NAME, "namespace": ns, "labels": labels},
            spec={"selector": POD_LABELS, "ports": [{"name": "web", "port": PORT, "target_port": "web"}]},
            opts=child,
        )
        if args.network_policy:
            k8s.networking.v1.NetworkPolicy(
                NAME, metadata={"name": NAME, "namespace": ns, "labels": labels},
                spec=prometheus_policy_spec(POD_LABELS, PORT, s.client_namespace_labels, s.client_pod_labels),
                opts=child)

    @staticmethod
    def _data_volume(args: PrometheusArgs, labels: dict, child: pulumi.ResourceOptions) -> dict:
        """The TSDB's volume: a claim of its own, or an emptyDir."""
        s, ns = args.settings, args.namespace
        if s.storage != "pvc":
            return empty_dir("data", size=s.storage_size)
        claim = k8s.core.v1.PersistentVolumeClaim(
            f"{NAME}-data",
            metadata={"name": f"{NAME}-data", "namespace": ns, "labels": labels},
            spec={"access_modes": ["ReadWriteOnce"], "resources": {"requests": {"storage": s.storage_size}}},
            opts=child,
        )
        return {"name": "data", "persistent_volume_claim": {"claim_name": claim.metadata["name"]}}


def server_container(s: PrometheusSettings) -> dict:
    return {
        "name": NAME,
        "image": s.image,
        "args": [
            "--config.file=/etc/prometheus/prometheus.yml",
            "--storage.tsdb.path=/prometheus",
            f"--storage.tsdb.retention.time={s.retention}",
            f"--web.listen-address=:{PORT}",
        ],
        "ports": [{"name": "web", "container_port": PORT}],
        "volume_mounts": [
            {"name": "config", "mount_path": "/etc/prometheus", "read_only": True},
            {"name": "rules", "mount_path": RULES_DIR, "read_only": True},
            {"name": "data", "mount_path": "/prometheus"},
        ],
        "resources": resources("100m", "256Mi", "1", "1Gi"),
        "security_context": container_security_context(),
        "readiness_probe": {"http_get": {"path": "/-/ready", "port": "web"}, "period_seconds": 10},
        "liveness_probe": {"http_get": {"path": "/-/healthy", "port": "web"}, "period_seconds": 20,
                           "failure_threshold": 6},
    }


def _discovery_rbac(account: k8s.core.v1.ServiceAccount, namespace: str, namespaces: list[str] | None,
                    labels: dict, child: pulumi.ResourceOptions) -> None:
    """Read access for EndpointSlice discovery: a Role and RoleBinding in each namespace discovered in,
    or, for every namespace (namespaces None), the one grant that can give it: a ClusterRole."""
    subject = {"kind": "ServiceAccount", "name": account.metadata["name"], "namespace": namespace}
    rules = [dict(rule) for rule in mon.DISCOVERY_RBAC_RULES]
    if namespaces is None:
        cluster_name = f"{namespace}-{NAME}"  # cluster-scoped: the namespace keeps stacks apart
        role = k8s.rbac.v1.ClusterRole(cluster_name, metadata={"name": cluster_name, "labels": labels},
                                       rules=rules, opts=child)
        k8s.rbac.v1.ClusterRoleBinding(
            cluster_name, metadata={"name": cluster_name, "labels": labels},
            role_ref={"api_group": RBAC_GROUP, "kind": "ClusterRole", "name": role.metadata["name"]},
            subjects=[subject], opts=child)
        return
    for discovered in namespaces:
        # In another namespace the name says whose Prometheus it is.
        name = NAME if discovered == namespace else f"{NAME}-{namespace}"
        resource_name = NAME if discovered == namespace else f"{NAME}-{discovered}"
        metadata = {"name": name, "namespace": discovered, "labels": labels}
        role = k8s.rbac.v1.Role(resource_name, metadata=metadata, rules=rules, opts=child)
        k8s.rbac.v1.RoleBinding(
            resource_name, metadata=metadata,
            role_ref={"api_group": RBAC_GROUP, "kind": "Role", "name": role.metadata["name"]},
            subjects=[subject], opts=child)
