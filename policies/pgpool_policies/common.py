"""Glue between pulumi-policy's callbacks and the checks: plain props, config with schema defaults, remediation."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from .kube import Described, Workload
from .pgpool_conf import PgpoolConfig, set_params
from .sources import CONF_KEY, StackView, resource_configs
from .values import plain

GUIDE = "the Pgpool-II on Kubernetes guide"
SECRET_NAME = re.compile(r"(password|passwd|secret|token|pgpoolkey|pool_?key|private_?key|api_?key)\d*$", re.IGNORECASE)
"""Names (env vars, ConfigMap keys, settings) whose values are passwords or keys."""
PRODUCTION_LABELS = {
    "type": "object", "additionalProperties": {"type": "string"}, "default": {"environment": "production"},
    "description": "A stack is production when its stack tags or any resource's labels carry all of these.",
}
"""The config property of every production rule."""


def settings_of(raw: Any, schema: PolicyConfigSchema | None) -> dict[str, Any]:
    """Policy config over the schema's defaults (the engine sends JSON, so numbers may be floats)."""
    settings = {k: v["default"] for k, v in (schema.properties if schema else {}).items() if "default" in v}
    settings.update({k: v for k, v in dict(raw or {}).items() if k != "enforcementLevel"})
    return settings


@dataclass
class Subject(Described):
    """The resource a resource policy is looking at, as plain values."""

    resource_type: str
    name: str
    props: dict
    settings: dict

    def workload(self) -> Workload | None:
        return Workload.of(self.resource_type, self.name, self.props)

    def configs(self) -> list[PgpoolConfig]:
        return resource_configs(self.resource_type, self.name, self.props)


ResourceCheck = Callable[[Subject, ReportViolation], None]
StackCheck = Callable[[StackView, dict, Any, ReportViolation], None]
ConfigFix = Callable[[PgpoolConfig], dict[str, str]]


def resource_policy(name: str, description: str, check: ResourceCheck, *,
                    level: EnforcementLevel = EnforcementLevel.MANDATORY,
                    schema: PolicyConfigSchema | None = None, fix: ConfigFix | None = None) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        check(Subject(args.resource_type, args.name, plain(args.props), settings_of(args.get_config(), schema)), report)

    return ResourceValidationPolicy(
        name=name, description=description, validate=validate, enforcement_level=level, config_schema=schema,
        remediate=_config_remediation(fix) if fix else None,
        remediation_steps="Run with this policy's enforcementLevel set to remediate to apply the fix." if fix else None,
    )


def stack_policy(name: str, description: str, check: StackCheck, *,
                 level: EnforcementLevel = EnforcementLevel.MANDATORY,
                 schema: PolicyConfigSchema | None = None) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        check(StackView(args.resources), settings_of(args.get_config(), schema), args.stack_tags, report)

    return StackValidationPolicy(name=name, description=description, validate=validate, enforcement_level=level,
                                 config_schema=schema)


def _config_remediation(fix: ConfigFix) -> Callable[[ResourceValidationArgs], Any]:
    """Rewrite the offending settings in place, so every other property (and its secretness) is kept."""

    def remediate(args: ResourceValidationArgs) -> Any:
        props = args.props
        view = plain(props)
        changed = False
        for config in resource_configs(args.resource_type, args.name, view):
            changes = fix(config)
            if not changes:
                continue
            changed = True
            if config.env_mode:
                _set_env(props, view, args.resource_type, changes, config)
            else:
                props["data"][CONF_KEY] = set_params(view["data"][CONF_KEY], changes)
        return props if changed else None

    return remediate


def _set_env(props: Any, view: dict, resource_type: str, changes: dict[str, str], config: PgpoolConfig) -> None:
    workload = Workload.of(resource_type, "", view)
    assert workload is not None and workload.pgpool is not None
    index = next(i for i, c in enumerate(workload.pod["containers"]) if c is workload.pgpool.spec)
    pod = props
    for step in workload.template_path + ("spec",):
        pod = pod[step]
    container = pod["containers"][index]
    env = list(container["env"]) if "env" in container else []
    for name, value in changes.items():
        env_name = config.env_name(name)
        same = [i for i, item in enumerate(env) if isinstance(item, Mapping) and item.get("name") == env_name]
        replacement = {"name": env_name, "value": value}
        if same:
            env[same[0]] = replacement
            env = [item for i, item in enumerate(env) if i not in same[1:]]
        else:
            env.append(replacement)
    container["env"] = env
