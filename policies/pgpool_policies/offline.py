"""Run the pack's policies in-process, with arguments built the way pulumi-policy's analyzer server builds them.

Properties go through a protobuf Struct (so numbers arrive as floats, as on the wire), then through
pulumi-policy's own deserialize and unknown-checking proxy; enforcement levels and config are
resolved like `--policy-pack-config` does (a level string or {"enforcementLevel": .., <props>}, and
"all" for every policy). Validations that read an unknown value are reported the way the engine
reports them: an advisory "can't run policy ... during preview".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from google.protobuf import json_format, struct_pb2
from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.deserialize import deserialize_properties, serialize_properties
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

from .pack import POLICIES

PACK_LEVEL = EnforcementLevel.MANDATORY


@dataclass(frozen=True)
class Violation:
    policy: str
    level: str
    """mandatory or advisory (remediate is reported as mandatory, as the engine does)."""
    message: str
    urn: str


def _struct_dict(props: Mapping[str, Any]) -> dict:
    struct = struct_pb2.Struct()
    struct.update(dict(props))
    return json_format.MessageToDict(struct)


def engine_props(props: Mapping[str, Any]) -> Any:
    """Props as a validation receives them from Analyze/AnalyzeStack."""
    return unknown_checking_proxy(deserialize_properties(_struct_dict(props)))


def _options() -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)


def _resources(resources: Iterable[Any], stack: str, project: str) -> list[tuple[str, str, Mapping, str]]:
    """(type, name, props, urn) from (type, name, props) tuples or objects with .type, .name, .props."""
    rows = []
    for resource in resources:
        resource_type, name, props = resource if isinstance(resource, tuple) else (
            resource.type, resource.name, resource.props)
        rows.append((resource_type, name, props, f"urn:pulumi:{stack}::{project}::{resource_type}::{name}"))
    return rows


def _configure(policy: Policy, config: Mapping[str, Any]) -> tuple[EnforcementLevel, dict]:
    level = policy.enforcement_level or PACK_LEVEL
    entry = config.get(policy.name, {})
    if "all" in config:
        level = EnforcementLevel(config["all"])
    if isinstance(entry, str):
        return EnforcementLevel(entry), {}
    if "enforcementLevel" in entry:
        level = EnforcementLevel(entry["enforcementLevel"])
    return level, {k: v for k, v in entry.items() if k != "enforcementLevel"}


def evaluate(resources: Iterable[Any], config: Mapping[str, Any] | None = None,
             stack_tags: Mapping[str, str] | None = None, policies: list[Policy] | None = None,
             stack: str = "dev", project: str = "pgpool-k8s") -> list[Violation]:
    """Every violation the pack reports for these resources (resource policies, then stack policies)."""
    rows = _resources(resources, stack, project)
    found: list[Violation] = []
    for policy in policies or POLICIES:
        level, settings = _configure(policy, config or {})
        if level == EnforcementLevel.DISABLED:
            continue
        reported = EnforcementLevel.MANDATORY if level == EnforcementLevel.REMEDIATE else level

        def report(message: str, urn: str | None = None, default_urn: str = "") -> None:
            found.append(Violation(policy.name, reported.value, message, urn or default_urn))

        if isinstance(policy, ResourceValidationPolicy):
            for resource_type, name, props, urn in rows:
                args = ResourceValidationArgs(resource_type, engine_props(props), urn, name, _options(), None,
                                              settings, stack_tags or {})
                _run(policy, args, lambda m, u=None, urn=urn: report(m, u, urn), found)
        elif isinstance(policy, StackValidationPolicy):
            stack_resources = [PolicyResource(t, engine_props(p), u, n, _options(), None, None, [], {})
                               for t, n, p, u in rows]
            _run(policy, StackValidationArgs(stack_resources, settings, stack_tags or {}), report, found)
    return found


def _run(policy: Policy, args: Any, report: Any, found: list[Violation]) -> None:
    try:
        policy.validate(args, report)
    except UnknownValueError as error:
        found.append(Violation(policy.name, EnforcementLevel.ADVISORY.value,
                               f"can't run policy '{policy.name}' during preview: {error.message}", ""))


def remediate(policy_name: str, resource_type: str, name: str, props: Mapping[str, Any],
              config: Mapping[str, Any] | None = None) -> dict | None:
    """The props a policy's remediation returns (serialized, secrets still marked), or None if it changes nothing."""
    policy = next(p for p in POLICIES if p.name == policy_name)
    assert isinstance(policy, ResourceValidationPolicy)
    proxied = unknown_checking_proxy(deserialize_properties(_struct_dict(props), True))
    args = ResourceValidationArgs(resource_type, proxied, f"urn:pulumi:dev::pgpool-k8s::{resource_type}::{name}", name,
                                  _options(), None, dict(config or {}), {})
    result = policy.remediate(args)
    return None if result is None else dict(serialize_properties(result))
