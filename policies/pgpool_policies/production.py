"""Production stacks: the database's pods, Pgpool-II and Prometheus admit only named peers; the database
keeps its data when its object is deleted; the hop from Pgpool-II to PostgreSQL is encrypted."""

from __future__ import annotations

from typing import Any

from pulumi_policy import EnforcementLevel, PolicyConfigSchema, ReportViolation

from .common import PRODUCTION_LABELS, stack_policy
from .kube import labels_of, namespace_of, same_namespace
from .monitoring import is_prometheus
from .sources import StackResource, StackView
from .values import UNKNOWN, as_dict, as_list, dig

NETWORKING_GROUP = "networking.k8s.io"
KUBEDB_POD_LABELS = {"app.kubernetes.io/name": "postgreses.kubedb.com", "app.kubernetes.io/managed-by": "kubedb.com",
                     "app.kubernetes.io/component": "database"}
"""Labels KubeDB gives every pod of a Postgres, besides app.kubernetes.io/instance: <its name>, on top of the
Postgres' own labels but for these keys, which it never propagates (kmodules' labelKeyBlacklist)."""
NOT_PROPAGATED = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by",
                  "app.kubernetes.io/version")
DATA_KEEPING_POLICIES = ("Halt", "DoNotTerminate")
PRODUCTION_SCHEMA = PolicyConfigSchema(properties={
    "productionLabels": PRODUCTION_LABELS,
    "requireEverywhere": {
        "type": "boolean", "default": False, "description": "Apply this rule to every stack, not only production.",
    },
})


def _applies(stack: StackView, settings: dict, stack_tags: Any) -> bool:
    return settings["requireEverywhere"] or stack.production(dict(settings["productionLabels"]), stack_tags)


def _selects(selector: Any, labels: Any) -> bool | None:
    """Whether a matchLabels selector selects these labels; None when either is unknown during preview."""
    if selector is UNKNOWN or labels is UNKNOWN:
        return None
    if not isinstance(selector, dict) or set(selector) - {"matchLabels"}:
        return None  # matchExpressions: not judged here
    return all(as_dict(labels).get(k) == v for k, v in as_dict(selector.get("matchLabels")).items())


def _open_rule(rule: dict) -> bool:
    """An ingress rule that admits every pod of every namespace: no `from`, or a peer selecting everything."""
    peers = as_list(rule.get("from")) if "from" in rule else None
    if peers is None or not peers:
        return True
    return any(isinstance(p, dict) and "ipBlock" not in p and p.get("namespaceSelector") == {}
               and not as_dict(p.get("podSelector")).get("matchLabels") for p in peers)


def _isolation(stack: StackView, namespace: Any, pod_labels: Any) -> tuple[bool | None, list[str]]:
    """(selected by an Ingress NetworkPolicy, names of the selecting policies that admit everyone)."""
    selected: bool | None = False
    open_policies = []
    for policy in stack.of_kind("NetworkPolicy", NETWORKING_GROUP):
        spec = as_dict(dig(policy.props, "spec"))
        if not same_namespace(namespace_of(policy.props), namespace):
            continue
        types = spec.get("policyTypes")
        if isinstance(types, list) and "Ingress" not in types:
            continue
        verdict = _selects(spec.get("podSelector"), pod_labels)
        if verdict is None:
            selected = None if selected is False else selected
            continue
        if verdict:
            selected = True
            if any(_open_rule(r) for r in as_list(spec.get("ingress")) if isinstance(r, dict)):
                open_policies.append(policy.title)
    return selected, open_policies


def _guarded_pods(stack: StackView) -> list[tuple[str, Any, Any, str]]:
    """(what, namespace, pod labels, resource URN) of every Pgpool-II, Prometheus server and KubeDB database."""
    found = []
    for workload, urn in stack.workloads:
        if workload.pgpool is not None:
            found.append((f"{workload.title} (Pgpool-II)", workload.namespace, workload.pod_labels, urn))
        elif any(is_prometheus(c) for c in workload.containers):
            found.append((f"{workload.title} (Prometheus)", workload.namespace, workload.pod_labels, urn))
    for postgres in stack.postgres():
        name = dig(postgres.props, "metadata", "name")
        propagated = {k: v for k, v in labels_of(postgres.props).items() if k not in NOT_PROPAGATED}
        labels = UNKNOWN if not isinstance(name, str) else {**propagated, **KUBEDB_POD_LABELS,
                                                            "app.kubernetes.io/instance": name}
        found.append((f"{postgres.title}'s pods (PostgreSQL)", namespace_of(postgres.props), labels, postgres.urn))
    return found


def check_network_policies(stack: StackView, settings: dict, stack_tags: Any, report: ReportViolation) -> None:
    if not _applies(stack, settings, stack_tags):
        return
    for what, namespace, labels, urn in _guarded_pods(stack):
        selected, open_policies = _isolation(stack, namespace, labels)
        if selected is False:
            report(f"{what}: no NetworkPolicy selects it, so every pod of the cluster reaches it (PostgreSQL past "
                   f"Pgpool-II's pool_hba.conf, Prometheus' data and API): add an Ingress NetworkPolicy that admits "
                   f"only its clients (networkPolicy = true does for this stack)", urn)
        for title in open_policies:
            report(f"{what}: {title} admits every pod of every namespace (a rule without `from`, or with an empty "
                   f"namespaceSelector and podSelector): name the peers that must talk to it", urn)


def _deletion_policy(postgres: StackResource) -> Any:
    spec = as_dict(dig(postgres.props, "spec"))
    return spec.get("deletionPolicy", spec.get("terminationPolicy", "Delete"))


def check_deletion_keeps_data(stack: StackView, settings: dict, stack_tags: Any, report: ReportViolation) -> None:
    if not _applies(stack, settings, stack_tags):
        return
    for postgres in stack.postgres():
        policy = _deletion_policy(postgres)
        if policy is not UNKNOWN and policy not in DATA_KEEPING_POLICIES:
            report(f"{postgres.title}: deletionPolicy {policy!r} deletes the database's volumes when the object is "
                   f"deleted (a destroy, a rename, a change of namespace): use DoNotTerminate (KubeDB refuses the "
                   f"deletion) or Halt (KubeDB keeps the volumes and Secrets)", postgres.urn)


def check_backend_tls(stack: StackView, settings: dict, stack_tags: Any, report: ReportViolation) -> None:
    if not _applies(stack, settings, stack_tags):
        return
    for postgres in stack.postgres():
        tls = dig(postgres.props, "spec", "tls")
        if tls is not UNKNOWN and not as_dict(tls).get("issuerRef"):
            report(f"{postgres.title}: no spec.tls, so Pgpool-II and every other client reach PostgreSQL in clear "
                   f"text (passwords' SCRAM exchanges, query data): set spec.tls.issuerRef to a cert-manager Issuer "
                   f"(postgresTlsIssuer; needs cert-manager and KubeDB's TLS support)", postgres.urn)


POLICIES = [
    stack_policy(
        "network-policies-in-production",
        "In production stacks, an Ingress NetworkPolicy that names its peers selects the pods of Pgpool-II, of "
        "PostgreSQL (KubeDB) and of Prometheus: nothing else in the cluster reaches them.",
        check_network_policies, schema=PRODUCTION_SCHEMA),
    stack_policy(
        "kubedb-deletion-keeps-data",
        "In production stacks, a KubeDB Postgres' deletionPolicy keeps its data (DoNotTerminate or Halt): deleting "
        "the object, by a destroy or a rename, never deletes the volumes.",
        check_deletion_keeps_data, schema=PRODUCTION_SCHEMA),
    stack_policy(
        "kubedb-postgres-tls",
        "In production stacks, a KubeDB Postgres has spec.tls, so the hop from Pgpool-II to PostgreSQL is encrypted.",
        check_backend_tls, level=EnforcementLevel.ADVISORY, schema=PRODUCTION_SCHEMA),
]
