"""Pgpool-II: its configuration, credentials, Deployment with the exporter sidecar, Services.

A thin registration of what components/pgpool_pod.py plans. Every ConfigMap and Secret the pods read
is auto-named (`<resource name>-<suffix>`) and referenced by its output name: a change creates the
new object, rolls the Deployment in place and deletes the old object afterwards.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from components.k8s_secret import kubernetes_secret
from components.pgpool_pod import (
    PCP_SECRET,
    CredentialRef,
    PgpoolArgs,
    PodObjects,
    disruption_budget_spec,
    network_policy_spec,
    pgpool_files,
    pod_plan,
    pod_template,
)
from components.workload import metadata_labels, selector_labels

COMPONENT = "pgpool"


def metrics_service_name(pgpool: str) -> str:
    return f"{pgpool}-metrics"


def metrics_selector(pgpool: str) -> dict[str, str]:
    """Labels that pick the exporter's Service out from the client Service (for a ServiceMonitor)."""
    return {**selector_labels(pgpool, COMPONENT), "app.kubernetes.io/component": "metrics"}


class Pgpool(pulumi.ComponentResource):
    """Pgpool-II in front of a primary and a read-only Service, configured as the guide says."""

    service_name: pulumi.Output[str]
    """Client-facing Service (port `settings.port`)."""
    metrics_service_name: pulumi.Output[str]
    """Exporter Service, annotated for Prometheus discovery."""
    user_secret_names: dict[str, pulumi.Output[str]]
    """Kubernetes Secret (keys username, password) per application user; its name never changes."""
    config_checksum: str
    """Hash of every rendered file and credential; a change rolls the pods."""

    def __init__(self, name: str, args: PgpoolArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("pgpool-k8s:index:Pgpool", name, None, opts)
        s, ns = args.settings, args.namespace
        child = pulumi.ResourceOptions(parent=self)
        labels = metadata_labels(s.name, COMPONENT, args.production)
        selector = selector_labels(s.name, COMPONENT)
        files = pgpool_files(args)

        def secret(suffix: str, data: dict[str, str], type_: str = "Opaque") -> k8s.core.v1.Secret:
            return kubernetes_secret(f"{s.name}-{suffix}", ns, labels, data, child, type_)

        users = {args.secrets.users[0].name: CredentialRef(args.backends.credentials_secret,
                                                          args.backends.username_key, args.backends.password_key)}
        pcp = None
        for suffix, credential in files.credentials.items():
            created = secret(suffix, {"username": credential.name, "password": credential.password},
                             "kubernetes.io/basic-auth")
            ref = CredentialRef(created.metadata["name"])
            if suffix == PCP_SECRET:
                pcp = ref
            else:
                users[credential.name] = ref
        config_map = k8s.core.v1.ConfigMap(f"{s.name}-config", metadata={"namespace": ns, "labels": labels},
                                           data=files.config, opts=child)
        tls_secret = s.tls_secret_name or None
        if files.tls:
            tls_secret = secret("tls", files.tls, "kubernetes.io/tls").metadata["name"]
        objects = PodObjects(config_map=config_map.metadata["name"],
                             files_secret=secret("files", files.secret).metadata["name"],
                             tls_secret=tls_secret, users=users, pcp=pcp)
        template = pod_template(args, pod_plan(args, files, objects), objects, labels, selector, files.checksum)

        meta = {"name": s.name, "namespace": ns, "labels": labels}
        k8s.apps.v1.Deployment(s.name, metadata=meta, spec={
            "replicas": s.replicas,
            "selector": {"match_labels": selector},
            "strategy": {"type": "RollingUpdate", "rolling_update": {"max_unavailable": 0, "max_surge": 1}},
            "template": template,
        }, opts=child)
        # Plain selector labels, not the Deployment's output: that would make the Services wait for its rollout.
        service = k8s.core.v1.Service(s.name, metadata=meta, spec={
            "type": s.service_type, "selector": selector,
            "ports": [{"name": "postgres", "port": s.port, "target_port": "postgres"}],
        }, opts=child)
        metrics_name = metrics_service_name(s.name)
        metrics = k8s.core.v1.Service(metrics_name, metadata={
            "name": metrics_name, "namespace": ns, "labels": {**labels, **metrics_selector(s.name)},
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(s.exporter_port),
                            "prometheus.io/path": "/metrics"},
        }, spec={"selector": selector,
                 "ports": [{"name": "metrics", "port": s.exporter_port, "target_port": "metrics"}]}, opts=child)
        k8s.policy.v1.PodDisruptionBudget(s.name, metadata=meta, spec=disruption_budget_spec(selector), opts=child)
        if s.network_policy:
            k8s.networking.v1.NetworkPolicy(s.name, metadata=meta,
                                            spec=network_policy_spec(s, selector, args.prometheus_peer), opts=child)

        self.service_name = service.metadata["name"]
        self.metrics_service_name = metrics.metadata["name"]
        self.user_secret_names = {user: ref.secret for user, ref in users.items()
                                  if user not in (args.secrets.users[0].name, args.secrets.monitor.name)}
        self.config_checksum = files.checksum
        self.register_outputs({
            "service_name": self.service_name,
            "metrics_service_name": self.metrics_service_name,
            "user_secret_names": self.user_secret_names,
            "config_checksum": self.config_checksum,
        })
