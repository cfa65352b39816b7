"""The KubeDB Postgres a Pgpool-II talks to, and the connection limits its backends set."""

from __future__ import annotations

from typing import Any

from .kube import namespace_of, same_namespace
from .pgpool_conf import PgpoolConfig, as_number, parse_pgpool_conf
from .sources import StackResource, StackView, secret_text
from .values import UNKNOWN, as_dict, as_int, dig

KUBEDB_SERVICE_SUFFIXES = ("", "-standby", "-replicas", "-pods")  # primary, standbys (v1, v1alpha1), headless
POSTGRES_CONFIG_FILE = "user.conf"


def backing_postgres(config: PgpoolConfig, stack: StackView, pgpool_namespace: Any) -> list[StackResource]:
    """The stack's Postgres objects whose Services are Pgpool-II's backends (the only one, if hosts are unreadable)."""
    postgres = stack.postgres()
    hosts = [config.get(f"backend_hostname{n}").text for n in (0, 1)]
    hosts = [h for h in hosts if h]
    if not hosts:
        return postgres if len(postgres) == 1 else []
    found = []
    for resource in postgres:
        name = dig(resource.props, "metadata", "name")
        if not isinstance(name, str):
            continue
        services = {name + suffix for suffix in KUBEDB_SERVICE_SUFFIXES}
        for host in hosts:
            labels = host.split(".")
            host_namespace = labels[1] if len(labels) > 1 else pgpool_namespace
            if labels[0] in services and same_namespace(host_namespace, namespace_of(resource.props)):
                found.append(resource)
                break
    return found


def standbys(resource: StackResource) -> int | None:
    replicas = as_int(dig(resource.props, "spec", "replicas", default=1))
    return None if replicas is None else replicas - 1


def connection_limits(resource: StackResource, stack: StackView) -> dict[str, tuple[int, str]] | None:
    """max_connections / superuser_reserved_connections a KubeDB Postgres sets, with where each comes from;
    None when its configuration is unknown during preview."""
    spec = as_dict(dig(resource.props, "spec"))
    found: dict[str, tuple[int, str]] = {}
    tuned = dig(spec, "configuration", "tuning", "maxConnections")
    if isinstance(tuned, (int, float)) and not isinstance(tuned, bool):
        found["max_connections"] = (int(tuned), f"{resource.title} spec.configuration.tuning.maxConnections")
    files = []
    inline = dig(spec, "configuration", "inline")
    if isinstance(inline.get(POSTGRES_CONFIG_FILE) if isinstance(inline, dict) else None, str):
        files.append((inline[POSTGRES_CONFIG_FILE], f"{resource.title} spec.configuration.inline"))
    for secret_name in (dig(spec, "configuration", "secretName"), dig(spec, "configSecret", "name")):
        secret = stack.find("Secret", secret_name, namespace_of(resource.props)) if isinstance(secret_name, str) else None
        text = secret_text(secret.props, POSTGRES_CONFIG_FILE) if secret else None
        if text is UNKNOWN or inline is UNKNOWN:
            return None
        if isinstance(text, str):
            files.append((text, f"{secret.title} {POSTGRES_CONFIG_FILE}"))
    for text, source in files:
        params = parse_pgpool_conf(text).params
        for name in ("max_connections", "superuser_reserved_connections"):
            number = as_number(params.get(name, ""))
            if number is not None:
                found[name] = (number, source)
    return found

