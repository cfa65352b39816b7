"""Who may reach what: the Ingress NetworkPolicies of the database's pods and of Prometheus, and the peers
they and Pgpool-II's admit. Plain dicts in the snake_case form pulumi_kubernetes accepts; no Pulumi import.

Every policy admits only what must talk; the kubelet's probes come from the node, which NetworkPolicy
implementations admit. A pod no policy selects is open to every pod of the cluster.
"""

from __future__ import annotations

from typing import Mapping

Labels = tuple[tuple[str, str], ...]
NAMESPACE_NAME = "kubernetes.io/metadata.name"
"""The label the API server gives every namespace: its name."""


def peer(namespace_labels: Labels, pod_labels: Labels | Mapping[str, str]) -> dict:
    """Pods by labels in namespaces by labels; no namespace labels means the policy's own namespace."""
    found = {}
    if namespace_labels:
        found["namespace_selector"] = {"match_labels": dict(namespace_labels)}
    found["pod_selector"] = {"match_labels": dict(pod_labels)}
    return found


def tcp(port: int) -> dict:
    return {"port": port, "protocol": "TCP"}


def ingress_policy(pods: Mapping[str, str], rules: list[tuple[list[dict], list[int]]]) -> dict:
    """A policy over `pods` admitting, per rule, its peers on its ports (no ports: every port)."""
    ingress = []
    for peers, ports in rules:
        rule = {"from_": peers}
        if ports:
            rule["ports"] = [tcp(port) for port in ports]
        ingress.append(rule)
    return {"pod_selector": {"match_labels": dict(pods)}, "policy_types": ["Ingress"], "ingress": ingress}


def database_policy_spec(database_pods: Mapping[str, str], port: int, clients: list[dict], operator_namespace: str,
                         prometheus_peer: dict, exporter_port: int | None) -> dict:
    """The database's pods: its clients (Pgpool-II, the password Job) to PostgreSQL's port; its own pods to
    any port (replication, the operator's coordinator sidecars); the operator's namespace to any port
    (health checks, ops requests); Prometheus to the exporter sidecars' port. Applications never: they go
    through Pgpool-II, whose pool_hba.conf admits only TLS."""
    rules = [(clients, [port]), ([peer((), database_pods)], []),
             ([{"namespace_selector": {"match_labels": {NAMESPACE_NAME: operator_namespace}}}], [])]
    if prometheus_peer and exporter_port:
        rules.append(([prometheus_peer], [exporter_port]))
    return ingress_policy(database_pods, rules)


def prometheus_policy_spec(prometheus_pods: Mapping[str, str], port: int, client_namespace_labels: Labels,
                           client_pod_labels: Labels) -> dict:
    """Prometheus: only the named clients (Grafana) to its port; none unless named (`kubectl port-forward`
    enters the pod and needs no rule)."""
    rules = []
    if client_namespace_labels or client_pod_labels:
        rules.append(([peer(client_namespace_labels, client_pod_labels)], [port]))
    return ingress_policy(prometheus_pods, rules)
