"""Pgpool-II: its configuration, credentials, Deployment with the exporter sidecar, Services."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from components import pgpool_config as conf
from components.backends import Backends
from components.k8s_secret import kubernetes_secret, secret_env
from components.settings import PgpoolSecrets, PgpoolSettings, env_prefix
from components.workload import (
    container_security_context,
    empty_dir,
    metadata_labels,
    pod_security_context,
    resources,
    selector_labels,
    soft_anti_affinity,
)

COMPONENT = "pgpool"
INSTALL_DIR = "/opt/pgpool-II"
SECRET_MOUNT = "/etc/pgpool-secrets"  # Secret volume; copied to PgpoolPaths.secrets_dir with mode 0600
TLS_MOUNT = "/etc/pgpool-tls"
EXPORTER_UID = 65534  # the exporter image runs as root by default


@dataclass(frozen=True)
class PgpoolArgs:
    settings: PgpoolSettings
    backends: Backends
    namespace: str
    secrets: PgpoolSecrets = field(repr=False)
    production: bool = False
    prometheus_peer: dict = field(default_factory=dict)
    """NetworkPolicy peer (snake_case) of the Prometheus allowed to scrape the exporter; empty admits none."""


def user_secret_name(pgpool: str, user: str) -> str:
    return f"{pgpool}-user-{user.replace('_', '-')}"


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
    user_secret_names: dict[str, str]
    """Kubernetes Secret (keys username, password) per application user."""
    config_checksum: str
    """Hash of every rendered file and credential; a change rolls the pods."""

    def __init__(self, name: str, args: PgpoolArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("pgpool-k8s:index:Pgpool", name, None, opts)
        s, ns, sec = args.settings, args.namespace, args.secrets
        child = pulumi.ResourceOptions(parent=self)
        labels = metadata_labels(s.name, COMPONENT, args.production)
        pod_labels = selector_labels(s.name, COMPONENT)
        configmap_mode = s.mode == "configmap"
        paths = conf.PgpoolPaths()

        # Credentials as Kubernetes Secrets: env mode and the exporter read them through secretKeyRef.
        credential_secrets: dict[str, tuple[str, str, str]] = {}
        superuser = sec.users[0]
        credential_secrets[superuser.name] = (args.backends.credentials_secret, args.backends.username_key,
                                              args.backends.password_key)
        self.user_secret_names = {}
        for user in sec.users[1:]:
            secret_name = user_secret_name(s.name, user.name)
            kubernetes_secret(secret_name, ns, labels, {"username": user.name, "password": user.password}, child,
                              "kubernetes.io/basic-auth")
            credential_secrets[user.name] = (secret_name, "username", "password")
            if user is not sec.monitor:
                self.user_secret_names[user.name] = secret_name

        hba = conf.render_pool_hba(s)
        files = {"pcppass": conf.render_pcppass(sec.pcp, s.pcp_port)}
        config_files = {"pool_hba.conf": hba}
        env: list[dict] = []
        if configmap_mode:
            config_files["pgpool.conf"] = conf.render_pgpool_conf(s, args.backends, ns, paths)
            files.update({
                "pool_passwd": conf.render_pool_passwd(sec.users, s.password_encryption, sec.pool_key),
                ".pgpoolkey": conf.render_pool_key(sec.pool_key),
                "pcp.conf": conf.render_pcp_conf(sec.pcp),
            })
        else:
            pcp_secret = f"{s.name}-pcp"
            kubernetes_secret(pcp_secret, ns, labels, {"username": sec.pcp.name, "password": sec.pcp.password},
                              child, "kubernetes.io/basic-auth")
            env = [{"name": k, "value": v} for k, v in conf.render_pgpool_env(s, args.backends, ns)]
            env += [
                {"name": "PGPOOL_PASSWORD_ENCRYPTION_METHOD", "value": s.password_encryption},
                {"name": "PGPOOL_ENABLE_POOL_PASSWD", "value": "true"},
                secret_env("PGPOOL_PCP_USER", pcp_secret, "username"),
                secret_env("PGPOOL_PCP_PASSWORD", pcp_secret, "password"),
            ]
            for user in sec.users:
                secret_name, user_key, password_key = credential_secrets[user.name]
                prefix = env_prefix(user.name)
                env += [secret_env(f"{prefix}_USERNAME", secret_name, user_key),
                        secret_env(f"{prefix}_PASSWORD", secret_name, password_key)]

        config_map = k8s.core.v1.ConfigMap(
            f"{s.name}-config",
            metadata={"name": f"{s.name}-config", "namespace": ns, "labels": labels},
            data=config_files,
            opts=child,
        )
        files_secret = kubernetes_secret(f"{s.name}-files", ns, labels, files, child)

        tls_secret_name = s.tls_secret_name
        if s.ssl and not tls_secret_name:
            tls_secret_name = f"{s.name}-tls"
            kubernetes_secret(tls_secret_name, ns, labels, {"tls.crt": sec.tls_cert, "tls.key": sec.tls_key}, child,
                              "kubernetes.io/tls")

        self.config_checksum = conf.config_checksum(
            *[f"{k}\n{v}" for k, v in sorted({**config_files, **files}.items())],
            *[f"{e['name']}={e.get('value', '')}" for e in env],
            *[f"{u.name}:{u.password}" for u in sec.users + (sec.pcp,)],
            sec.tls_cert, sec.tls_key, tls_secret_name,
        )

        volumes = [
            {"name": "config", "config_map": {"name": config_map.metadata["name"], "default_mode": 0o444}},
            {"name": "secret-files", "secret": {"secret_name": files_secret.metadata["name"], "default_mode": 0o600}},
            empty_dir("prepared-secrets", memory=True, size="1Mi"),
            empty_dir("sockets", memory=True, size="1Mi"),
            empty_dir("tmp", size="64Mi"),
        ]
        prepared = paths.secrets_dir
        copies = sorted(files)
        mounts = [
            {"name": "prepared-secrets", "mount_path": prepared, "read_only": True},
            {"name": "sockets", "mount_path": paths.socket_dir},
            {"name": "tmp", "mount_path": "/tmp"},
        ]
        init_mounts = [
            {"name": "secret-files", "mount_path": SECRET_MOUNT, "read_only": True},
            {"name": "prepared-secrets", "mount_path": prepared},
        ]
        if configmap_mode:
            mounts.insert(0, {"name": "config", "mount_path": paths.config_dir, "read_only": True})
        else:
            # The image's entrypoint writes etc/ at start: give it a writable copy of the image's etc/.
            volumes.append(empty_dir("etc", size="16Mi"))
            mounts += [{"name": "etc", "mount_path": f"{INSTALL_DIR}/etc"},
                       {"name": "config", "mount_path": "/config/pool_hba.conf", "sub_path": "pool_hba.conf",
                        "read_only": True}]
            init_mounts.append({"name": "etc", "mount_path": "/prepared-etc"})
        copy_script = "umask 077 && " + " && ".join(f"cp {SECRET_MOUNT}/{f} {prepared}/{f}" for f in copies)
        if tls_secret_name:
            volumes.append({"name": "tls", "secret": {"secret_name": tls_secret_name, "default_mode": 0o600}})
            init_mounts.append({"name": "tls", "mount_path": TLS_MOUNT, "read_only": True})
            copy_script += f" && cp {TLS_MOUNT}/tls.crt {TLS_MOUNT}/tls.key {prepared}/"
            if not configmap_mode:
                volumes.append(empty_dir("image-tls", memory=True, size="1Mi"))
                mounts += [{"name": "tls", "mount_path": "/config/tls", "read_only": True},
                           {"name": "image-tls", "mount_path": f"{INSTALL_DIR}/tls"}]
        if not configmap_mode:
            copy_script += f" && cp -a {INSTALL_DIR}/etc/. /prepared-etc/"

        monitor_secret, monitor_user_key, monitor_password_key = credential_secrets[sec.monitor.name]
        # Ready = the monitor user logs in like any client (TCP, TLS when on, password) and queries a
        # backend; alive = pgpool's PCP answers, so a database outage never restarts pgpool.
        psql_check = ["psql", "-h", "127.0.0.1", "-p", str(s.port), "-U", sec.monitor.name, "-d", "postgres",
                      "-tAc", "SELECT 1"]
        probe_env = [
            secret_env("PGPASSWORD", monitor_secret, monitor_password_key),
            {"name": "PGSSLMODE", "value": "require" if s.ssl else "disable"},
            {"name": "PGCONNECT_TIMEOUT", "value": "3"},
            {"name": "PCPPASSFILE", "value": paths.pcppass},
        ]
        pgpool_container = {
            "name": "pgpool",
            "image": s.image,
            "ports": [{"name": "postgres", "container_port": s.port}, {"name": "pcp", "container_port": s.pcp_port}],
            "env": env + probe_env,
            "volume_mounts": mounts,
            "resources": resources(s.cpu_request, s.memory_request, s.cpu_limit, s.memory_limit),
            "security_context": container_security_context(),
            "startup_probe": {"exec_": {"command": psql_check}, "period_seconds": 5, "failure_threshold": 60},
            "readiness_probe": {"exec_": {"command": psql_check}, "period_seconds": 10, "timeout_seconds": 5,
                                "failure_threshold": 3},
            "liveness_probe": {"exec_": {"command": ["pcp_node_count", "-h", paths.socket_dir, "-p", str(s.pcp_port),
                                                    "-U", sec.pcp.name, "-w"]},
                               "period_seconds": 20, "timeout_seconds": 5, "failure_threshold": 3},
        }
        if configmap_mode:
            pgpool_container["command"] = conf.pgpool_command(paths)

        exporter_container = {
            "name": "exporter",
            "image": s.exporter_image,
            "ports": [{"name": "metrics", "container_port": s.exporter_port}],
            "env": [
                secret_env("POSTGRES_USERNAME", monitor_secret, monitor_user_key),
                secret_env("POSTGRES_PASSWORD", monitor_secret, monitor_password_key),
                {"name": "POSTGRES_DATABASE", "value": "postgres"},
                {"name": "PGPOOL_SERVICE", "value": "localhost"},
                {"name": "PGPOOL_SERVICE_PORT", "value": str(s.port)},
                {"name": "SSLMODE", "value": "require" if s.ssl else "disable"},
            ],
            "resources": resources("25m", "32Mi", "200m", "64Mi"),
            "security_context": container_security_context(EXPORTER_UID),
            "readiness_probe": {"http_get": {"path": "/metrics", "port": "metrics"}, "period_seconds": 15,
                                "timeout_seconds": 5},
            "liveness_probe": {"tcp_socket": {"port": "metrics"}, "period_seconds": 20},
        }
        prepare_container = {
            "name": "prepare-secrets",
            "image": s.image,
            "command": ["sh", "-c", copy_script],
            "volume_mounts": init_mounts,
            "resources": resources("10m", "16Mi", "100m", "32Mi"),
            "security_context": container_security_context(),
        }

        deployment = k8s.apps.v1.Deployment(
            s.name,
            metadata={"name": s.name, "namespace": ns, "labels": labels},
            spec={
                "replicas": s.replicas,
                "selector": {"match_labels": pod_labels},
                "strategy": {"type": "RollingUpdate", "rolling_update": {"max_unavailable": 0, "max_surge": 1}},
                "template": {
                    "metadata": {"labels": labels, "annotations": {"checksum/config": self.config_checksum}},
                    "spec": {
                        "automount_service_account_token": False,
                        "enable_service_links": False,
                        "security_context": pod_security_context(s.run_as_user),
                        "affinity": soft_anti_affinity(pod_labels),
                        "termination_grace_period_seconds": 30,
                        "init_containers": [prepare_container],
                        "containers": [pgpool_container, exporter_container],
                        "volumes": volumes,
                    },
                },
            },
            opts=child,
        )
        selector = deployment.spec.selector.match_labels

        service = k8s.core.v1.Service(
            s.name,
            metadata={"name": s.name, "namespace": ns, "labels": labels},
            spec={"type": s.service_type, "selector": selector,
                  "ports": [{"name": "postgres", "port": s.port, "target_port": "postgres"}]},
            opts=child,
        )
        metrics = k8s.core.v1.Service(
            metrics_service_name(s.name),
            metadata={
                "name": metrics_service_name(s.name), "namespace": ns,
                "labels": {**labels, **metrics_selector(s.name)},
                "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(s.exporter_port),
                                "prometheus.io/path": "/metrics"},
            },
            spec={"selector": selector, "ports": [{"name": "metrics", "port": s.exporter_port, "target_port": "metrics"}]},
            opts=child,
        )
        k8s.policy.v1.PodDisruptionBudget(
            s.name,
            metadata={"name": s.name, "namespace": ns, "labels": labels},
            spec={"max_unavailable": 1, "selector": {"match_labels": pod_labels}},
            opts=child,
        )
        if s.network_policy:
            k8s.networking.v1.NetworkPolicy(
                s.name,
                metadata={"name": s.name, "namespace": ns, "labels": labels},
                spec=_network_policy_spec(s, pod_labels, args.prometheus_peer),
                opts=child,
            )

        self.service_name = service.metadata["name"]
        self.metrics_service_name = metrics.metadata["name"]
        self.register_outputs({
            "service_name": self.service_name,
            "metrics_service_name": self.metrics_service_name,
            "user_secret_names": self.user_secret_names,
            "config_checksum": self.config_checksum,
        })


def _network_policy_spec(s: PgpoolSettings, pod_labels: dict, prometheus_peer: dict) -> dict:
    """Clients by namespace/pod labels (same namespace when none are given); Prometheus to metrics."""
    client = {}
    if s.client_namespace_labels:
        client["namespace_selector"] = {"match_labels": dict(s.client_namespace_labels)}
    client["pod_selector"] = {"match_labels": dict(s.client_pod_labels)}
    ingress = [{"from_": [client], "ports": [{"port": s.port, "protocol": "TCP"}]}]
    if prometheus_peer:
        ingress.append({"from_": [prometheus_peer],
                        "ports": [{"port": s.exporter_port, "protocol": "TCP"}]})
    return {"pod_selector": {"match_labels": pod_labels}, "policy_types": ["Ingress"], "ingress": ingress}
