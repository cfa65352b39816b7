"""Pool sizing: Pgpool-II must never ask a backend for more connections than it accepts."""

from __future__ import annotations

from typing import Any

from pulumi_policy import PolicyConfigSchema, ReportViolation

from .common import Subject, resource_policy, stack_policy
from .database import backing_postgres, connection_limits
from .pgpool_conf import PgpoolConfig, as_number
from .sources import StackView

SIZING_SCHEMA = PolicyConfigSchema(properties={
    "maxConnections": {
        "type": "integer", "minimum": 1, "default": 100,
        "description": "Backends' max_connections when the stack's KubeDB Postgres does not set it (PostgreSQL's default).",
    },
    "superuserReservedConnections": {
        "type": "integer", "minimum": 0, "default": 3,
        "description": "Backends' superuser_reserved_connections when the Postgres does not set it (PostgreSQL's default).",
    },
    "countPgpoolReplicas": {
        "type": "boolean", "default": True,
        "description": "Multiply by the Pgpool-II workload's replicas: every Pgpool-II pod keeps its own pools "
                       "to the same primary.",
    },
})


def check_connections_fit(stack: StackView, settings: dict, stack_tags: Any, report: ReportViolation) -> None:
    for instance in stack.pgpool_instances():
        config = instance.config
        if config is None:
            continue
        children = as_number(config.get("num_init_children").text or "")
        pool = as_number(config.get("max_pool").text or "")
        pods = instance.workload.replica_count() if settings["countPgpoolReplicas"] else 1
        if children is None or pool is None or pods is None:
            continue
        needed = children * pool * pods
        defaults = {
            "max_connections": (int(settings["maxConnections"]), "policy config maxConnections"),
            "superuser_reserved_connections": (int(settings["superuserReservedConnections"]),
                                               "policy config superuserReservedConnections"),
        }
        backends = backing_postgres(config, stack, instance.workload.namespace) or [None]
        for postgres in backends:
            configured = connection_limits(postgres, stack) if postgres else {}
            if configured is None:
                continue
            limits = {**defaults, **configured}
            (maximum, max_source), (reserved, reserved_source) = (
                limits["max_connections"], limits["superuser_reserved_connections"])
            usable = maximum - reserved
            if needed <= usable:
                continue
            across = f" * {pods} Pgpool-II pods ({instance.workload.title} replicas)" if pods > 1 else ""
            backend = postgres.title if postgres else "each backend"
            report(f"{config.subject}: num_init_children * max_pool{' * replicas' if pods > 1 else ''} = "
                   f"{children} * {pool}{across} = {needed} backend connections, but {backend} accepts "
                   f"max_connections - superuser_reserved_connections = {maximum} - {reserved} = {usable} "
                   f"(from {' and '.join(dict.fromkeys((max_source, reserved_source)))}), so clients get 'sorry, too "
                   f"many clients already'; "
                   f"lower num_init_children or max_pool, or raise max_connections", instance.config_urn)


def check_reserved_connections(subject: Subject, report: ReportViolation) -> None:
    for config in subject.configs():
        setting = config.get("reserved_connections")
        if setting.text is not None and (as_number(setting.text) or 0) < 1:
            report(f"{config.subject}: {config.show(setting)}: with 0, a client beyond num_init_children waits "
                   f"forever instead of getting 'sorry, too many clients already'; {config.fix(setting.name, '1')}")


def fix_reserved_connections(config: PgpoolConfig) -> dict[str, str]:
    setting = config.get("reserved_connections")
    children = as_number(config.get("num_init_children").text or "")
    if setting.text is None or (as_number(setting.text) or 0) >= 1 or (children is not None and children <= 1):
        return {}
    return {"reserved_connections": "1"}


POLICIES = [
    stack_policy(
        "pgpool-connections-fit-backends",
        "num_init_children * max_pool (times the Pgpool-II replicas) fits within each backend's max_connections - "
        "superuser_reserved_connections: beyond that PostgreSQL refuses clients with 'sorry, too many clients "
        "already'. Limits come from the stack's KubeDB Postgres (user.conf, tuning) or from this policy's config.",
        check_connections_fit, schema=SIZING_SCHEMA),
    resource_policy(
        "pgpool-reserved-connections",
        "reserved_connections >= 1: a client beyond num_init_children gets an error instead of hanging.",
        check_reserved_connections, fix=fix_reserved_connections),
]
