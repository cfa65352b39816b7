"""Whole-program runs under Pulumi mocks that also record each resource's parent and provider.

Pulumi's MockResourceArgs carries no parent, so the mock monitor's RegisterResource is wrapped
while the program runs. tests/conftest.py turns `run_recorded` into cached fixtures.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterator

from pulumi.runtime.mocks import MockMonitor

from tests.program_run import (
    ProgramRun,
    RegisteredResource,
    dev_stack_inputs,
    generate_secrets,
    is_secret,
    run_program,
)


@dataclass
class Registration:
    type: str
    name: str
    urn: str
    parent_urn: str
    provider: str
    """Provider reference `<urn>::<id>`; empty for components."""
    dependencies: tuple[str, ...] = ()
    """URNs the resource waits for (depends_on and property references)."""
    property_dependencies: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Input property -> URNs its value came from: what makes the engine replace the resource along
    with a replaced dependency."""
    protect: bool = False
    retain_on_delete: bool = False


@dataclass
class RecordedRun(ProgramRun):
    secrets: dict[str, str] = field(default_factory=dict)
    """The secret config the run used (generated once per session, or overridden)."""
    registrations: list[Registration] = field(default_factory=list)

    def registration(self, resource: RegisteredResource) -> Registration:
        [mine] = [r for r in self.registrations if (r.type, r.name) == (resource.type, resource.name)]
        return mine

    def parent_type(self, resource: RegisteredResource) -> str:
        """Type token of the resource's parent ('' for the stack itself)."""
        parent_urn = self.registration(resource).parent_urn
        parents = [r for r in self.registrations if r.urn == parent_urn]
        return parents[0].type if parents else ""

    def kubernetes_objects(self) -> list[RegisteredResource]:
        """Every Kubernetes object, without the provider."""
        return [r for r in self.resources if r.type.startswith("kubernetes:")]


@contextlib.contextmanager
def recording_registrations() -> Iterator[list[Registration]]:
    registrations: list[Registration] = []
    original = MockMonitor.RegisterResource

    def register(monitor: MockMonitor, request: Any) -> Any:
        response = original(monitor, request)
        registrations.append(Registration(
            request.type, request.name, response.urn, request.parent, request.provider, tuple(request.dependencies),
            {key: tuple(deps.urns) for key, deps in request.propertyDependencies.items()},
            bool(request.protect), bool(request.retainOnDelete)))
        return response

    MockMonitor.RegisterResource = register
    try:
        yield registrations
    finally:
        MockMonitor.RegisterResource = original


def secrets_for(config: dict[str, str], overrides: dict[str, str]) -> dict[str, str]:
    """The session's dev secrets, plus generated ones for keys this config adds (e.g. new users)."""
    _, base = dev_stack_inputs()
    generated = generate_secrets(config, "dev")
    secrets = {**generated, **base}
    users = {**json.loads(generated.get("userPasswords", "{}")), **json.loads(base.get("userPasswords", "{}"))}
    if users:
        secrets["userPasswords"] = json.dumps(users)
    return {**secrets, **overrides}


def run_recorded(config_overrides: dict[str, str | None], secret_overrides: dict[str, str] | None = None) -> RecordedRun:
    merged = {**dev_stack_inputs()[0], **config_overrides}
    config = {key: value for key, value in merged.items() if value is not None}
    secrets = secrets_for(config, secret_overrides or {})
    with recording_registrations() as registrations:
        run = run_program(config, secrets, "dev")
    return RecordedRun(run.resources, run.outputs, run.secret_outputs, secrets, registrations)


def plain_strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, text) of every string value not wrapped in Pulumi's secret marker."""
    if is_secret(value):
        return
    if isinstance(value, dict):
        for key, item in value.items():
            yield from plain_strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from plain_strings(item, f"{path}[{index}]")
    elif isinstance(value, str):
        yield path, value


def secret_values(secrets: dict[str, str]) -> dict[str, str]:
    """Every secret value of a run's config by key, user passwords one by one."""
    values = {key: value for key, value in secrets.items() if key != "userPasswords"}
    for user, password in json.loads(secrets.get("userPasswords", "{}")).items():
        values[f"userPasswords.{user}"] = password
    return values
