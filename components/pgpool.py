"""Pgpool-II: its configuration, credentials, Deployment with the exporter sidecar, Services.

A thin registration of what is planned elsewhere: the files and credentials by `pgpool_files`
(components/pgpool_config.py), then, around the registered objects' names, the pod and its policies by
`pgpool_workload` (components/pgpool_pod.py). Every ConfigMap the pods read is auto-named (`<resource
name>-<suffix>`) and referenced by its output name: a change creates the new object, rolls the
Deployment in place and deletes the old object afterwards. Secrets keep their names and change in place.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from components.k8s_secret import kubernetes_secret
from components.pgpool_config import PCP_SECRET, PgpoolArgs, PgpoolFiles, pgpool_files
from components.pgpool_pod import CredentialRef, PgpoolWorkload, PodObjects, pgpool_workload
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
        self._child = pulumi.ResourceOptions(parent=self)
        # The release, for whoever cannot read it from the image's tag (the policy pack, with a tag of your own).
        self._labels = {**metadata_labels(args.settings.name, COMPONENT, args.production),
                        "app.kubernetes.io/version": str(args.settings.release)}
        selector = selector_labels(args.settings.name, COMPONENT)
        files = pgpool_files(args)
        objects = self._config_objects(args, files)
        self._workload_objects(args, pgpool_workload(args, files, objects, self._labels, selector), selector)
        self.user_secret_names = {app.name: objects.users[app.name].secret for app in args.secrets.apps}
        self.config_checksum = files.checksum
        self.register_outputs({
            "service_name": self.service_name,
            "metrics_service_name": self.metrics_service_name,
            "user_secret_names": self.user_secret_names,
            "config_checksum": self.config_checksum,
        })

    def _secret(self, args: PgpoolArgs, suffix: str, data: dict[str, str], type_: str = "Opaque") -> k8s.core.v1.Secret:
        return kubernetes_secret(f"{args.settings.name}-{suffix}", args.namespace, self._labels, data, self._child,
                                 type_)

    def _config_objects(self, args: PgpoolArgs, files: PgpoolFiles) -> PodObjects:
        """The ConfigMap and Secrets the pod reads, registered; their names."""
        s, backends = args.settings, args.backends
        users = {args.secrets.superuser.name: CredentialRef(backends.credentials_secret, backends.username_key,
                                                            backends.password_key)}
        pcp = None
        for suffix, credential in files.credentials.items():
            created = self._secret(args, suffix, {"username": credential.name, "password": credential.password},
                                   "kubernetes.io/basic-auth")
            ref = CredentialRef(created.metadata["name"])
            if suffix == PCP_SECRET:
                pcp = ref
            else:
                users[credential.name] = ref
        config_map = k8s.core.v1.ConfigMap(f"{s.name}-config", metadata={"namespace": args.namespace,
                                                                         "labels": self._labels},
                                           data=files.config, opts=self._child)
        tls_secret = s.tls_secret_name or None
        if files.tls:
            tls_secret = self._secret(args, "tls", files.tls, "kubernetes.io/tls").metadata["name"]
        return PodObjects(config_map=config_map.metadata["name"],
                          files_secret=self._secret(args, "files", files.secret).metadata["name"],
                          tls_secret=tls_secret, users=users, pcp=pcp)

    def _workload_objects(self, args: PgpoolArgs, workload: PgpoolWorkload, selector: dict[str, str]) -> None:
        """The Deployment, its Services, disruption budget and NetworkPolicy."""
        s, child = args.settings, self._child
        meta = {"name": s.name, "namespace": args.namespace, "labels": self._labels}
        k8s.apps.v1.Deployment(s.name, metadata=meta, spec={
            "replicas": s.replicas,
            "selector": {"match_labels": selector},
            "strategy": {"type": "RollingUpdate", "rolling_update": {"max_unavailable": 0, "max_surge": 1}},
            "template": workload.pod_template,
        }, opts=child)
        # Plain selector labels, not the Deployment's output: that would make the Services wait for its rollout.
        service = k8s.core.v1.Service(s.name, metadata=meta, spec={
            "type": s.service_type, "selector": selector,
            "ports": [{"name": "postgres", "port": s.port, "target_port": "postgres"}],
        }, opts=child)
        metrics_name = metrics_service_name(s.name)
        metrics = k8s.core.v1.Service(metrics_name, metadata={
            "name": metrics_name, "namespace": args.namespace, "labels": {**self._labels, **metrics_selector(s.name)},
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(s.exporter_port),
                            "prometheus.io/path": "/metrics"},
        }, spec={"selector": selector,
                 "ports": [{"name": "metrics", "port": s.exporter_port, "target_port": "metrics"}]}, opts=child)
        k8s.policy.v1.PodDisruptionBudget(s.name, metadata=meta, spec=workload.disruption_budget, opts=child)
        if workload.network_policy is not None:
            k8s.networking.v1.NetworkPolicy(s.name, metadata=meta, spec=workload.network_policy, opts=child)
        self.service_name = service.metadata["name"]
        self.metrics_service_name = metrics.metadata["name"]
