"""Security: secrets only in Secrets, client authentication, TLS in production, restricted pods, no public Service."""

from __future__ import annotations

import base64
import binascii
import re
from ipaddress import ip_network
from typing import Any

from pulumi_policy import PolicyConfigSchema, ReportViolation

from .common import GUIDE, PRODUCTION_LABELS, SECRET_NAME, Subject, resource_policy, stack_policy
from .kube import Container, group_of, parse_image
from .pgpool_conf import as_bool
from .sources import HBA_KEY, StackView, literal_env, runs_entrypoint
from .values import UNKNOWN, as_dict, as_list, dig

SECRET_FILE = re.compile(r"(^|/)(pool_passwd|\.?pgpoolkey|pcp\.conf|\.?pcppass)$|\.key$", re.IGNORECASE)
SWITCHES = {"PGPOOL_ENABLE_POOL_PASSWD"}
"""Names that look secret but are not: the image's switch for generating pool_passwd."""
FILE_SETTINGS = {"pool_passwd"}
"""pgpool.conf settings that name a password file rather than hold a password."""
PASSWORD_LINE = re.compile(r"^\s*(?P<key>[A-Za-z0-9_.-]*(?:password|passwd)\d*)\s*[=:]\s*(?P<value>.*?)\s*(?:#.*)?$",
                           re.IGNORECASE)
PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
DSN_NAME = re.compile(r"(DATA_SOURCE_NAME|DSN|DATABASE_URL|_URI|_URL)$", re.IGNORECASE)
DSN_PASSWORD = re.compile(r"://[^/:@\s]+:[^@\s]+@|password=[^\s&]", re.IGNORECASE)


def _secret_lines(text: str) -> list[tuple[int, str]]:
    """(line number, setting name) of lines that assign a non-empty password or hold a private key."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        match = PASSWORD_LINE.match(line)
        if match and match.group("key") not in FILE_SETTINGS and match.group("value").strip("'\" ") != "":
            found.append((number, match.group("key")))
        elif PRIVATE_KEY.search(line):
            found.append((number, "a private key"))
    return found


def check_no_secrets_in_configmaps(subject: Subject, report: ReportViolation) -> None:
    if subject.kind != "ConfigMap" or group_of(subject.resource_type) != "core":
        return
    fix = ("ConfigMaps are readable by anyone who may list them and sit unencrypted in Pulumi state; move it into a "
           "Secret (stringData, a Pulumi secret) and mount or secretKeyRef it")
    files = {k: v for k, v in as_dict(subject.props.get("data")).items() if isinstance(v, str)}
    for key, encoded in as_dict(subject.props.get("binaryData")).items():
        try:
            files[key] = base64.b64decode(encoded, validate=True).decode("utf-8", "replace")
        except (binascii.Error, TypeError):
            continue  # unknown during preview, or not base64
    for key, text in files.items():
        if key not in SWITCHES and (SECRET_NAME.search(key) or SECRET_FILE.search(key)) and text.strip():
            report(f'{subject.title} key "{key}" holds a password or key (value not shown): {fix}')
            continue
        for number, what in _secret_lines(text):
            report(f'{subject.title} key "{key}" line {number}: {what} is set in plain text (value not shown): {fix}; '
                   f"for Pgpool-II leave *_password settings empty so it reads pool_passwd from a Secret")


def check_no_plaintext_secret_env(subject: Subject, report: ReportViolation) -> None:
    workload = subject.workload()
    if workload is None:
        return
    for container in workload.containers:
        for item in container.env:
            name = item.get("name") if isinstance(item, dict) else None
            if not isinstance(name, str):
                continue
            value, reference = item.get("value"), as_dict(item.get("valueFrom"))
            where = f"{workload.title} {container.title} env {name}"
            if SECRET_NAME.search(name) and name not in SWITCHES:
                if reference and "secretKeyRef" not in reference:
                    source = next(iter(reference), "valueFrom")
                    report(f"{where} reads a password or key from {source}, which is not a Secret: use "
                           f"valueFrom.secretKeyRef")
                elif not reference and isinstance(value, str) and value:
                    report(f"{where} is a literal value (not shown): a password or key in a pod spec is readable by "
                           f"anyone who can read the {workload.kind} and lands in Pulumi state; use "
                           f"valueFrom.secretKeyRef ({GUIDE}, 'Register password to pool_passwd')")
            elif DSN_NAME.search(name) and isinstance(value, str) and DSN_PASSWORD.search(value):
                report(f"{where} embeds a password in a literal connection string (not shown): pass the password "
                       f"through a separate env var with valueFrom.secretKeyRef")


USERNAME_SUFFIX, PASSWORD_SUFFIX = "_USERNAME", "_PASSWORD"


def check_user_env_pairs(subject: Subject, report: ReportViolation) -> None:
    workload = subject.workload()
    container = workload.pgpool if workload else None
    if container is None or runs_entrypoint(container) is not True:
        return
    if literal_env(container, "PGPOOL_ENABLE_POOL_PASSWD") not in (None, "yes", "true", "on"):
        return
    names = {e["name"] for e in container.env if isinstance(e, dict) and isinstance(e.get("name"), str)}
    for name in sorted(n for n in names if n.endswith(USERNAME_SUFFIX)):
        prefix = name[: -len(USERNAME_SUFFIX)]
        first = prefix.split("_", 1)[0]
        if "_" in prefix:
            report(f"{workload.title} {container.title}: env {name} has an underscore in its prefix '{prefix}': the "
                   f"image cuts the prefix at the first underscore and looks for {first}_USERNAME/{first}_PASSWORD, "
                   f"so this user never reaches pool_passwd and cannot log in; rename the pair without '_' in the "
                   f"prefix (e.g. {prefix.replace('_', '')}_USERNAME)")
        elif prefix + PASSWORD_SUFFIX not in names:
            report(f"{workload.title} {container.title}: env {name} has no {prefix}{PASSWORD_SUFFIX}: the image "
                   f"registers no pool_passwd entry for it ({GUIDE}, 'Register password to pool_passwd'); add "
                   f"{prefix}{PASSWORD_SUFFIX} from the user's Secret (valueFrom.secretKeyRef)")


LOOPBACK = (ip_network("127.0.0.0/8"), ip_network("::1/128"))


def _remote_trust(fields: list[str]) -> bool:
    """A host line (TYPE DATABASE USER ADDRESS [MASK] METHOD ...) trusting an address beyond the pod's loopback."""
    if len(fields) < 5 or fields[0] not in ("host", "hostssl", "hostnossl"):
        return False
    has_mask = len(fields) > 5 and re.fullmatch(r"[0-9.]+|[0-9a-fA-F:]*:[0-9a-fA-F:]*", fields[4]) is not None
    if fields[5 if has_mask else 4] != "trust":
        return False
    if fields[3] == "localhost":
        return False
    try:
        network = ip_network(f"{fields[3]}/{fields[4]}" if has_mask else fields[3], strict=False)
    except ValueError:
        return True  # all, samenet, host names: anything that can reach the pod
    return not any(network.version == lo.version and network.subnet_of(lo) for lo in LOOPBACK)


def check_pool_hba(subject: Subject, report: ReportViolation) -> None:
    for config in subject.configs():
        setting = config.get("enable_pool_hba")
        if setting.text is not None and as_bool(setting.text) is not True:
            report(f"{config.subject}: {config.show(setting)}: without pool_hba.conf Pgpool-II authenticates no "
                   f"client itself; {config.fix('enable_pool_hba', 'on')} ({GUIDE}, 'Configure Pgpool-II using "
                   f"ConfigMap')")
    text = dig(subject.props, "data", HBA_KEY) if subject.kind == "ConfigMap" else None
    for number, line in enumerate(text.splitlines() if isinstance(text, str) else [], start=1):
        fields = line.split("#", 1)[0].split()
        if _remote_trust(fields):
            report(f'{subject.title} {HBA_KEY} line {number}: `{" ".join(fields)}` lets clients from '
                   f"{fields[3]} in without a password (trust); only `local` (the pod's own socket) may use "
                   f"trust: use scram-sha-256 for remote hosts")


SSL_SCHEMA = PolicyConfigSchema(properties={
    "productionLabels": PRODUCTION_LABELS,
    "requireSslEverywhere": {
        "type": "boolean", "default": False, "description": "Require ssl = on in every stack, not only production.",
    },
})


def check_ssl_in_production(stack: StackView, settings: dict, stack_tags: Any, report: ReportViolation) -> None:
    labels = dict(settings["productionLabels"])
    if not settings["requireSslEverywhere"] and not stack.production(labels, stack_tags):
        return
    why = "requireSslEverywhere" if settings["requireSslEverywhere"] else "a production stack (" + ", ".join(
        f"{k}={v}" for k, v in labels.items()) + ")"
    for instance in stack.pgpool_instances():
        setting = instance.config.get("ssl") if instance.config else None
        if setting is not None and setting.text is not None and as_bool(setting.text) is not True:
            report(f"{instance.config.subject}: {instance.config.show(setting)} in {why}: passwords and query data "
                   f"cross the network in clear text; {instance.config.fix('ssl', 'on')} and mount a certificate "
                   f"({GUIDE}, 'TLS settings')", instance.config_urn)


SECCOMP_TYPES = ("RuntimeDefault", "Localhost")


def _container_problems(container: Container, pod_context: Any) -> list[str]:
    if container.spec.get("securityContext") is UNKNOWN:
        return []
    context = as_dict(container.spec.get("securityContext"))

    def effective(name: str) -> Any:
        """The container's setting, else the pod's (UNKNOWN when the pod's context is unknown)."""
        if context.get(name) is not None:
            return context[name]
        return UNKNOWN if pod_context is UNKNOWN else as_dict(pod_context).get(name)

    problems = []
    if effective("runAsNonRoot") is not True and effective("runAsNonRoot") is not UNKNOWN:
        problems.append("runAsNonRoot is not true: set securityContext.runAsNonRoot: true")
    user = effective("runAsUser")
    if user is not UNKNOWN and (user is None or user == 0):
        problems.append(f"runAsUser is {'0' if user == 0 else 'not set'}: the pgpool image's user is a name and the "
                        f"exporter's is root, so the kubelet cannot prove non-root; set a non-zero numeric runAsUser "
                        f"(pgpool: 70)")
    if context.get("allowPrivilegeEscalation") is not False and context.get("allowPrivilegeEscalation") is not UNKNOWN:
        problems.append("allowPrivilegeEscalation is not false: set securityContext.allowPrivilegeEscalation: false")
    if context.get("privileged") is True:
        problems.append("privileged is true: remove it")
    drop = dig(context, "capabilities", "drop")
    if drop is not UNKNOWN and "ALL" not in [str(c).upper() for c in as_list(drop)]:
        problems.append("capabilities do not drop ALL: set securityContext.capabilities.drop: [ALL]")
    added = [c for c in as_list(dig(context, "capabilities", "add")) if c not in ("NET_BIND_SERVICE", UNKNOWN)]
    if added:
        problems.append(f"capabilities add {', '.join(map(str, added))}: remove them")
    seccomp = dig(effective("seccompProfile"), "type")
    if seccomp is not UNKNOWN and seccomp not in SECCOMP_TYPES:
        problems.append(f"seccompProfile type is {seccomp or 'not set'}: set seccompProfile.type: RuntimeDefault "
                        f"(pod or container)")
    return problems


def check_pod_security_context(subject: Subject, report: ReportViolation) -> None:
    workload = subject.workload()
    if workload is None or workload.pgpool is None:
        return
    pod_context = workload.pod.get("securityContext")
    for container in workload.containers:
        for problem in _container_problems(container, pod_context):
            report(f"{workload.title} {container.title} (image {container.image}): {problem}")


RESOURCES_SCHEMA = PolicyConfigSchema(properties={
    "requireCpuLimit": {
        "type": "boolean", "default": True,
        "description": "Also require limits.cpu (requests.cpu, requests.memory and limits.memory are always required).",
    },
})


def check_resources(subject: Subject, report: ReportViolation) -> None:
    workload = subject.workload()
    if workload is None or workload.pgpool is None:
        return
    required = [("requests", "cpu"), ("requests", "memory"), ("limits", "memory")]
    if subject.settings["requireCpuLimit"]:
        required.append(("limits", "cpu"))
    for container in workload.containers:
        resources = container.spec.get("resources")
        if resources is UNKNOWN:
            continue
        missing = [f"{kind}.{what}" for kind, what in required if dig(resources, kind, what) is None]
        if missing:
            report(f"{workload.title} {container.title}: resources {', '.join(missing)} not set: without requests "
                   f"Pgpool-II is evicted first under pressure, without a memory limit one leak takes the node's "
                   f"memory; set {', '.join(f'resources.{m}' for m in missing)}")


def check_pinned_images(subject: Subject, report: ReportViolation) -> None:
    workload = subject.workload()
    if workload is None:
        return
    for container in workload.containers:
        image = container.image
        if not isinstance(image, str):
            continue
        _, tag, digest = parse_image(image)
        if digest:
            continue
        if not tag or tag == "latest":
            shown = "has no tag, so it means latest" if not tag else "is tagged latest"
            report(f"{workload.title} {container.title}: image {image} {shown}: every pull may bring another "
                   f"version; pin a version tag (e.g. pgpool/pgpool:4.5.4) or a digest")


LOAD_BALANCER_SCHEMA = PolicyConfigSchema(properties={
    "allowLoadBalancer": {
        "type": "boolean", "default": False,
        "description": "Allow a LoadBalancer Service in front of Pgpool-II (exposes the database outside the cluster).",
    },
    "allowNodePort": {
        "type": "boolean", "default": False,
        "description": "Allow a NodePort Service in front of Pgpool-II (exposes the database on every node's address).",
    },
})
EXPOSURES = {
    # Service type: (what it opens, the setting that allows it)
    "LoadBalancer": ("outside the cluster", "allowLoadBalancer"),
    "NodePort": ("on every node's address, to whoever reaches a node", "allowNodePort"),
}


def check_no_load_balancer(stack: StackView, settings: dict, stack_tags: Any, report: ReportViolation) -> None:
    for service, urn in stack.services:
        exposure = EXPOSURES.get(service.type)
        if exposure is None or settings[exposure[1]]:
            continue
        for workload, _ in stack.workloads:
            if workload.pgpool is not None and service.selects(workload):
                report(f"{service.title}: type {service.type} exposes {workload.title} (Pgpool-II) {exposure[0]}: "
                       f"use type ClusterIP, or set this policy's {exposure[1]}: true if that is intended", urn)
                break


POLICIES = [
    resource_policy(
        "no-secrets-in-configmaps",
        "No password or key in a ConfigMap: ConfigMaps are not secret and their contents land in Pulumi state "
        "unencrypted. pool_passwd, .pgpoolkey, pcp.conf, TLS keys and *_password settings belong in Secrets.",
        check_no_secrets_in_configmaps),
    resource_policy(
        "no-plaintext-secret-env",
        f"Passwords and keys reach containers only through valueFrom.secretKeyRef, never as literal env values "
        f"({GUIDE}, 'Register password to pool_passwd').",
        check_no_plaintext_secret_env),
    resource_policy(
        "pgpool-user-env-pairs",
        f"Every <PREFIX>_USERNAME env of the pgpool container has a <PREFIX>_PASSWORD and a prefix without '_' "
        f"({GUIDE}, 'Register password to pool_passwd'): the image cuts the prefix at the first underscore.",
        check_user_env_pairs),
    resource_policy(
        "pgpool-pool-hba",
        f"enable_pool_hba = on and no `trust` for remote hosts in pool_hba.conf ({GUIDE}, 'Configure Pgpool-II "
        "using ConfigMap'): Pgpool-II itself must authenticate every client that reaches it over the network.",
        check_pool_hba),
    stack_policy(
        "pgpool-ssl-in-production",
        f"ssl = on in production stacks ({GUIDE}, 'TLS settings'): client passwords and data must not cross the "
        "network in clear text.",
        check_ssl_in_production, schema=SSL_SCHEMA),
    resource_policy(
        "pgpool-pod-security-context",
        "Every container of the Pgpool-II pod (pgpool, exporter, init) runs non-root with a numeric runAsUser, no "
        "privilege escalation, all capabilities dropped and seccomp RuntimeDefault (Pod Security 'restricted').",
        check_pod_security_context),
    resource_policy(
        "pgpool-pod-resources",
        "Every container of the Pgpool-II pod sets resource requests and limits: without them Pgpool-II is evicted "
        "or OOM-killed first.",
        check_resources, schema=RESOURCES_SCHEMA),
    resource_policy(
        "pinned-image-tags",
        "Every container image is pinned to a version tag or digest (no `latest`, no missing tag), so a restart "
        "never changes the software.",
        check_pinned_images),
    stack_policy(
        "pgpool-no-load-balancer",
        "No LoadBalancer or NodePort Service in front of Pgpool-II unless allowLoadBalancer or allowNodePort is set: "
        "it would expose the database outside the cluster or on every node's address.",
        check_no_load_balancer, schema=LOAD_BALANCER_SCHEMA),
]

