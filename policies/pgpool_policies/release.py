"""The Pgpool-II release a workload runs (pgpool_versions.py: supported series, known vulnerabilities, the DNS
retry), and images pinned by digest in production."""

from __future__ import annotations

from typing import Any

from pulumi_policy import EnforcementLevel, PolicyConfigSchema, ReportViolation

from .common import Subject, resource_policy, stack_policy
from .kube import Workload
from .pgpool_versions import DNS_RETRY, SUPPORTED_SERIES, Version, image_version, version_problem
from .sources import StackView
from .values import UNKNOWN, as_dict

VERSION_LABEL = "app.kubernetes.io/version"
"""Kubernetes' recommended label for the version of an application: read when the image is pinned by digest alone."""
PRODUCTION_SCHEMA = PolicyConfigSchema(properties={
    "productionLabels": {
        "type": "object", "additionalProperties": {"type": "string"}, "default": {"environment": "production"},
        "description": "A stack is production when its stack tags or any resource's labels carry all of these.",
    },
})


def workload_release(workload: Workload) -> tuple[Version | None, str]:
    """The Pgpool-II release of the workload's pgpool container and where it was read; (None, "") when neither
    its image's tag nor the pod template's version label names one; (None, "unknown") while preview does not
    know them."""
    image = workload.pgpool.image if workload.pgpool else None
    if not isinstance(image, str):
        return None, "unknown"
    version = image_version(image)
    if version:
        return version, f"image {image}"
    if workload.pod_labels is UNKNOWN:
        return None, "unknown"
    label = as_dict(workload.pod_labels).get(VERSION_LABEL)
    version = Version.parse(label) if isinstance(label, str) else None
    return (version, f"label {VERSION_LABEL}={label}") if version else (None, "")


def check_release(subject: Subject, report: ReportViolation) -> None:
    workload = subject.workload()
    if workload is None or workload.pgpool is None:
        return
    version, source = workload_release(workload)
    where = f"{workload.title} {workload.pgpool.title}"
    if version is None and not source:
        report(f"{where}: image {workload.pgpool.image} names no Pgpool-II release (a tag such as 4.7.2) and the pod "
               f"template has no {VERSION_LABEL} label, so nothing tells whether it is supported or has known "
               f"vulnerabilities: tag the image with its release, or label the pod template {VERSION_LABEL}=<release>")
    elif version is not None:
        problem = version_problem(version)
        if problem:
            report(f"{where} ({source}): {problem}")


def check_dns_retry_in_production(stack: StackView, settings: dict, stack_tags: Any, report: ReportViolation) -> None:
    if not stack.production(dict(settings["productionLabels"]), stack_tags):
        return
    for workload, urn in stack.workloads:
        version, source = workload_release(workload)
        if version is not None and version < DNS_RETRY:
            report(f"{workload.title} ({source}): Pgpool-II {version} gives up on a backend at the first failed DNS "
                   f"lookup of its Service name (EAI_AGAIN, as while CoreDNS restarts), failing the clients of that "
                   f"moment; {DNS_RETRY} retries it for up to 5 seconds. Use {DNS_RETRY} or later in production", urn)


def check_digests_in_production(stack: StackView, settings: dict, stack_tags: Any, report: ReportViolation) -> None:
    if not stack.production(dict(settings["productionLabels"]), stack_tags):
        return
    for workload, urn in stack.workloads:
        for container in workload.containers:
            image = container.image
            if isinstance(image, str) and "@sha256:" not in image:
                report(f"{workload.title} {container.title}: image {image} is pinned by tag alone in a production "
                       f"stack: a registry may move a tag to other content, and the next pull on any node runs it; "
                       f"pin the digest you verified (image:tag@sha256:...)", urn)


SERIES = ", ".join(f"{major}.{minor}" for major, minor in SUPPORTED_SERIES)
POLICIES = [
    resource_policy(
        "pgpool-supported-release",
        f"Pgpool-II runs a release of a supported series ({SERIES}) with no known vulnerability (CVE-2025-46801, "
        "CVE-2024-45624, CVE-2023-22332: each series' first fixed release), read from the image's tag or the pod "
        f"template's {VERSION_LABEL} label.",
        check_release),
    stack_policy(
        "pgpool-dns-retry-in-production",
        f"Production stacks run Pgpool-II {DNS_RETRY} or later, which retries a failed DNS lookup of a backend's "
        "Service name instead of failing its clients.",
        check_dns_retry_in_production, level=EnforcementLevel.ADVISORY, schema=PRODUCTION_SCHEMA),
    stack_policy(
        "pinned-image-digests-in-production",
        "In production stacks every container image is pinned by digest, so what runs is what was verified.",
        check_digests_in_production, schema=PRODUCTION_SCHEMA),
]
