"""Monitoring: the exporter sidecar, a Service Prometheus discovers it through, a read-only Prometheus
whose grants reach no further than the namespaces it discovers in."""

from __future__ import annotations

from typing import Any

import yaml
from pulumi_policy import EnforcementLevel, PolicyConfigSchema, ReportViolation

from .common import GUIDE, Subject, resource_policy, stack_policy
from .kube import (
    EXPORTER_DEFAULT_PORT,
    Container,
    Service,
    Workload,
    group_of,
    labels_of,
    namespace_of,
    parse_image,
    same_namespace,
    selector_matches,
)
from .sources import StackView
from .values import UNKNOWN, as_dict, as_list, dig

SCRAPE, PORT, PATH = "prometheus.io/scrape", "prometheus.io/port", "prometheus.io/path"
MONITORING_GROUP = "monitoring.coreos.com"
RBAC_GROUP = "rbac.authorization.k8s.io"
PROMETHEUS_IMAGES = ("prom/prometheus", "prometheus/prometheus")
"""Docker Hub's and quay.io's paths of the Prometheus server image."""


def check_exporter_sidecar(subject: Subject, report: ReportViolation) -> None:
    workload = subject.workload()
    if workload is None or workload.pgpool is None or workload.exporter is not None:
        return
    images = ", ".join(str(c.image) for c in workload.containers if not c.init)
    report(f"{workload.title}: the Pgpool-II pod has no pgpool/pgpool2_exporter sidecar (containers' images: {images}): "
           f"nothing exports pool and backend metrics; add a container with image pgpool/pgpool2_exporter "
           f"({GUIDE}, 'Pgpool-II with monitoring')")


def _exporter_port(exporter: Container) -> tuple[Any, int]:
    """(port name, number) the exporter listens on: its port named metrics, its first port, else 9719."""
    ports = [p for p in exporter.ports() if isinstance(p.get("containerPort"), (int, float))]
    chosen = next((p for p in ports if p.get("name") == "metrics"), ports[0] if ports else None)
    return (chosen.get("name"), int(chosen["containerPort"])) if chosen else (None, EXPORTER_DEFAULT_PORT)


def _targets(service: Service, name: Any, number: int) -> bool:
    for port in service.ports:
        target = port.get("targetPort", port.get("port"))
        if target is UNKNOWN or target == name or (isinstance(target, (int, float)) and int(target) == number):
            return True
    return False


def _monitored_by_operator(stack: StackView, service: Service, workload: Workload) -> bool:
    """A Prometheus Operator ServiceMonitor (or PodMonitor) selects it instead of annotations."""
    for resource in stack.resources:
        if group_of(resource.resource_type) != MONITORING_GROUP:
            continue
        selector = dig(resource.props, "spec", "selector", "matchLabels")
        if resource.kind == "ServiceMonitor" and selector_matches(selector, service.labels):
            return True
        if resource.kind == "PodMonitor" and selector_matches(selector, workload.pod_labels):
            return True
    return False


METRICS_SCHEMA = PolicyConfigSchema(properties={
    "metricsPath": {"type": "string", "default": "/metrics", "description": "The exporter's metrics path."},
})


def check_metrics_service(stack: StackView, settings: dict, stack_tags: Any, report: ReportViolation) -> None:
    for workload, urn in stack.workloads:
        exporter = workload.exporter if workload.pgpool else None
        if exporter is None or workload.pod_labels is UNKNOWN:
            continue
        name, number = _exporter_port(exporter)
        services = [(s, u) for s, u in stack.services if s.selects(workload) and _targets(s, name, number)]
        undecided = any(s.undecided and same_namespace(s.namespace, workload.namespace) for s, _ in stack.services)
        if not services and not undecided:
            report(f"{workload.title}: no Service selects its pods on the exporter's port {number}: Prometheus finds "
                   f"the exporter through a Service's endpoints ({GUIDE}, 'Pgpool-II with monitoring'); add a "
                   f"Service for port {number} annotated {SCRAPE}: \"true\", {PORT}: \"{number}\", "
                   f"{PATH}: {settings['metricsPath']}", urn)
        expected = {SCRAPE: "true", PORT: str(number), PATH: settings["metricsPath"]}
        for service, service_urn in services:
            if service.annotations is UNKNOWN or _monitored_by_operator(stack, service, workload):
                continue
            wrong = {k: service.annotations.get(k) for k, v in expected.items()
                     if service.annotations.get(k) not in (v, UNKNOWN)}
            if wrong:
                shown = ", ".join(f"{k}: {'not set' if v is None else repr(v)}" for k, v in wrong.items())
                report(f"{service.title}: annotations {shown}: Prometheus' scrape config keeps only Services annotated "
                       f"{SCRAPE}: \"true\" and takes the port and path from {PORT} and {PATH}, so the exporter is "
                       f"not scraped; set " + ", ".join(f'{k}: "{expected[k]}"' for k in wrong), service_urn)


PROMETHEUS_SCHEMA = PolicyConfigSchema(properties={
    "prometheusLabels": {
        "type": "object", "additionalProperties": {"type": "string"},
        "default": {"app.kubernetes.io/name": "prometheus"},
        "description": "Labels that mark Prometheus' Role or ClusterRole (a name containing 'prometheus' also does).",
    },
    "allowedVerbs": {
        "type": "array", "items": {"type": "string"}, "default": ["get", "list", "watch"],
        "description": "Verbs Prometheus' Role or ClusterRole may grant.",
    },
    "allowedResources": {
        "type": "array", "items": {"type": "string"},
        "default": ["endpointslices", "endpoints", "services", "pods", "nodes", "nodes/metrics", "ingresses"],
        "description": "Resources it may grant them on: what Kubernetes service discovery and kubelet scraping read.",
    },
    "allowedNonResourceURLs": {
        "type": "array", "items": {"type": "string"}, "default": ["/metrics", "/metrics/cadvisor"],
        "description": "Non-resource URLs it may grant them on.",
    },
})


def check_prometheus_role(subject: Subject, report: ReportViolation) -> None:
    if subject.kind not in ("ClusterRole", "Role") or group_of(subject.resource_type) != RBAC_GROUP:
        return
    name = dig(subject.props, "metadata", "name")
    labels = labels_of(subject.props)
    marked = dict(subject.settings["prometheusLabels"])
    if not (marked and all(labels.get(k) == v for k, v in marked.items())) and not (
            isinstance(name, str) and "prometheus" in name):
        return
    settings = subject.settings
    allowed = set(settings["allowedVerbs"])
    for index, rule in enumerate(as_list(subject.props.get("rules"))):
        rule = as_dict(rule)
        resources, urls = as_list(rule.get("resources")), as_list(rule.get("nonResourceURLs"))
        what = ", ".join(str(r) for r in resources + urls)
        extra = [v for v in as_list(rule.get("verbs")) if v is not UNKNOWN and v not in allowed]
        if extra:
            report(f"{subject.title} rules[{index}] ({what}) grants {', '.join(map(str, extra))}: Prometheus only "
                   f"discovers and reads targets; keep verbs to {', '.join(sorted(allowed))}")
        beyond = [r for r in resources if r is not UNKNOWN and r not in settings["allowedResources"]]
        beyond += [u for u in urls if u is not UNKNOWN and u not in settings["allowedNonResourceURLs"]]
        if beyond:
            report(f"{subject.title} rules[{index}] grants reading {', '.join(map(str, beyond))}: service discovery "
                   f"reads only {', '.join(settings['allowedResources'])}, and a Prometheus that can read more (a "
                   "Secret's passwords, say) exposes it to whoever controls its targets; remove them")


def is_prometheus(container: Container) -> bool:
    image = container.image
    return isinstance(image, str) and not container.init and parse_image(image)[0].endswith(PROMETHEUS_IMAGES)


def _discovery_namespaces(stack: StackView, workload: Workload) -> Any:
    """Namespaces the server's kubernetes_sd_configs discover in (sorted), None when one of them covers
    every namespace, UNKNOWN when its config cannot be read from the stack."""
    found, complete = [], True
    for volume in workload.volumes.values():
        reference = dig(volume, "configMap", "name")
        if reference is None:
            continue
        config_map = stack.find("ConfigMap", reference, workload.namespace)
        if config_map is None:
            complete = False
            continue
        for text in as_dict(dig(config_map.props, "data")).values():
            try:
                config = yaml.safe_load(text) if isinstance(text, str) else None
            except yaml.YAMLError:
                config = None
            if isinstance(config, dict) and "scrape_configs" in config:
                found.append(config)
    if not found:
        return UNKNOWN if not complete else []
    names = set()
    for config in found:
        for job in as_list(config.get("scrape_configs")):
            for discovery in as_list(as_dict(job).get("kubernetes_sd_configs")):
                namespaces = as_dict(as_dict(discovery).get("namespaces"))
                listed = [n for n in as_list(namespaces.get("names")) if isinstance(n, str)]
                if namespaces.get("own_namespace"):
                    listed.append(workload.namespace)
                if not listed:
                    return None
                names.update(listed)
    return sorted(names)


def check_namespaced_discovery(stack: StackView, settings: dict, stack_tags: Any, report: ReportViolation) -> None:
    bindings = stack.of_kind("ClusterRoleBinding", RBAC_GROUP)
    if not bindings:
        return
    for workload, _ in stack.workloads:
        if not any(is_prometheus(c) for c in workload.containers):
            continue
        account = dig(workload.pod, "serviceAccountName", default="default")
        if account is UNKNOWN or workload.namespace is UNKNOWN:
            continue
        namespaces = _discovery_namespaces(stack, workload)
        if namespaces is None or namespaces is UNKNOWN:
            continue
        for binding in bindings:
            for subject in as_list(binding.props.get("subjects")):
                subject = as_dict(subject)
                if (subject.get("kind"), subject.get("name"), subject.get("namespace")) != (
                        "ServiceAccount", account, workload.namespace or namespace_of(binding.props)):
                    continue
                where = f"namespaces {', '.join(namespaces)}" if namespaces else "no namespace at all"
                report(f"{binding.title} grants ServiceAccount \"{account}\" of {workload.title} cluster-wide "
                       f"access, but its scrape config discovers in {where}: bind a Role with a RoleBinding in "
                       "each of those namespaces instead (Prometheus lists and watches only there)", binding.urn)


POLICIES = [
    resource_policy(
        "pgpool-exporter-sidecar",
        f"The Pgpool-II pod runs the pgpool2_exporter sidecar ({GUIDE}, 'Pgpool-II with monitoring').",
        check_exporter_sidecar, level=EnforcementLevel.ADVISORY),
    stack_policy(
        "pgpool-metrics-service-annotations",
        f"A Service exposes the exporter with the prometheus.io/scrape, port and path annotations the Prometheus "
        f"scrape config keeps ({GUIDE}, 'Pgpool-II with monitoring'), unless a ServiceMonitor/PodMonitor selects it.",
        check_metrics_service, level=EnforcementLevel.ADVISORY, schema=METRICS_SCHEMA),
    resource_policy(
        "prometheus-rbac-read-only",
        "Prometheus' Role or ClusterRole grants only get, list and watch, on only what service discovery reads: "
        "anything more is a foothold if Prometheus is compromised.",
        check_prometheus_role, schema=PROMETHEUS_SCHEMA),
    stack_policy(
        "prometheus-rbac-namespaced",
        "Prometheus' ServiceAccount is bound cluster-wide only when its scrape config discovers in every namespace; "
        "discovery in named namespaces takes a Role and RoleBinding in each.",
        check_namespaced_discovery),
]
