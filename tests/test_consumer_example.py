"""examples/consumer under Pulumi mocks: it reads this stack's real outputs through a StackReference.

The StackReference mock answers with the outputs of a mock run of this project's own program, so
renaming an output of the stack breaks this test, as it would break the consumer.
"""

from __future__ import annotations

import asyncio
import gc
import json
import runpy
from typing import Any

import pulumi
import pytest
import yaml
from pulumi.runtime.rpc_manager import RPCManager
from pulumi.runtime.settings import SETTINGS
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from tests.program_run import ROOT, RegisteredResource, fresh_stack, stack_outputs, unwrap
from tests.recorded_run import plain_strings
from tests.test_manifest_schemas import manifest, validate_builtin

CONSUMER = ROOT / "examples" / "consumer"
PROJECT = "pgpool-k8s-consumer"


class StackReferenceMocks(pulumi.runtime.Mocks):
    """Answers StackReferences with the given outputs; records every other resource."""

    def __init__(self, outputs: dict[str, Any], secret_outputs: set[str]):
        self.outputs, self.secret_outputs = outputs, secret_outputs
        self.resources: list[RegisteredResource] = []
        self.references: list[str] = []
        self.providers: dict[str, str] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        if args.typ == "pulumi:pulumi:StackReference":
            self.references.append(args.inputs["name"])
            return args.inputs["name"], {"name": args.inputs["name"], "outputs": self.outputs,
                                         "secretOutputNames": sorted(self.secret_outputs)}
        self.resources.append(RegisteredResource(args.typ, args.name, args.inputs))
        self.providers[args.name] = args.provider or ""
        return f"{args.name}-id", unwrap(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


def consumer_defaults() -> dict[str, str]:
    block = yaml.safe_load((CONSUMER / "Pulumi.yaml").read_text())["config"]
    return {key: str(spec["default"]) for key, spec in block.items()}


def run_consumer(stack_run_result, **config: str):
    mocks = StackReferenceMocks(stack_run_result.outputs, stack_run_result.secret_outputs)
    fresh_stack()
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack="dev", preview=False)
    pulumi.runtime.set_all_config({**consumer_defaults(), **{f"{PROJECT}:{k}": v for k, v in config.items()}})
    _sync_await(run_pulumi_func(lambda: runpy.run_path(str(CONSUMER / "__main__.py"), run_name="__main__")))
    return (mocks, *stack_outputs())


@pytest.fixture(scope="module")
def consumer_run(dev_run):
    """The consumer with its default config, run once against the dev stack's outputs."""
    return run_consumer(dev_run)


def find(mocks, type_suffix):
    [found] = [r for r in mocks.resources if r.type.endswith(type_suffix)]
    return found


def test_consumer_reads_the_stack_it_is_configured_for(dev_run, consumer_run):
    mocks, _, _ = consumer_run
    assert mocks.references == ["organization/pgpool-k8s/dev"]
    mocks, _, _ = run_consumer(dev_run, stackRef="acme/pgpool-k8s/prod")
    assert mocks.references == ["acme/pgpool-k8s/prod"]


def test_consumer_connects_through_pgpool_with_the_stacks_credentials(dev_run, consumer_run):
    mocks, outputs, _ = consumer_run
    stack = dev_run.outputs
    config_map = find(mocks, "core/v1:ConfigMap").props
    assert config_map["metadata"]["namespace"] == stack["namespace"]
    assert config_map["data"] == {"PGHOST": stack["pgpoolHost"], "PGPORT": str(stack["pgpoolPort"]),
                                  "PGSSLMODE": "require"}
    deployment = find(mocks, "apps/v1:Deployment").props
    assert deployment["metadata"]["namespace"] == stack["namespace"]  # a secretKeyRef cannot cross namespaces
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["envFrom"] == [{"configMapRef": {"name": config_map["metadata"]["name"]}}]
    env = {e["name"]: e for e in container["env"]}
    for variable, key in (("PGUSER", "username"), ("PGPASSWORD", "password"), ("PGDATABASE", "username")):
        assert "value" not in env[variable]
        assert env[variable]["valueFrom"]["secretKeyRef"] == {"name": stack["credentialsSecret"], "key": key}
    # The Secret the app reads is one the stack really creates, with those keys.
    secret = dev_run.named("core/v1:Secret", stack["credentialsSecret"]).props
    assert {"username", "password"} <= set(secret["stringData"])
    assert secret["metadata"]["namespace"] == stack["namespace"]
    assert outputs["credentialsSecret"] == stack["credentialsSecret"]


def test_consumer_picks_another_application_user(stack_run):
    stack = stack_run(users='["app", "reporting"]')
    mocks, _, _ = run_consumer(stack, appUser="reporting")
    [container] = find(mocks, "apps/v1:Deployment").props["spec"]["template"]["spec"]["containers"]
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"]}
    assert refs == {stack.outputs["appCredentialsSecrets"]["reporting"]}


def test_consumer_names_the_users_when_app_user_is_unknown(dev_run):
    message = consumer_error(dev_run, appUser="nobody")
    assert "pgpool-k8s-consumer:appUser = 'nobody' is not a user of organization/pgpool-k8s/dev; use one of app" \
        in message


def consumer_error(stack_run_result, **config: str) -> str:
    """The message the consumer fails with. The failed run's futures all hold that error; they are
    dropped here with the error handler silenced, or asyncio prints each as "never retrieved"."""
    try:
        run_consumer(stack_run_result, **config)
    except Exception as error:  # noqa: BLE001 - the program's own failure is what is under test
        message = str(error)
    else:
        raise AssertionError("the consumer ran without an error")
    loop = asyncio.get_event_loop()
    fresh_stack()
    SETTINGS.rpc_manager = RPCManager()  # the old one keeps the error and its traceback
    loop.set_exception_handler(lambda _loop, _context: None)
    try:
        loop.run_until_complete(asyncio.sleep(0))  # run the callbacks the failed run left queued
        gc.collect()
    finally:
        loop.set_exception_handler(None)
    return message


def test_the_stacks_secret_outputs_stay_secret(dev_run, consumer_run):
    mocks, outputs, secret_outputs = consumer_run
    password = dev_run.outputs["superuserPassword"]
    assert "superuserPassword" in dev_run.secret_outputs
    for resource in mocks.resources:
        assert password not in json.dumps(unwrap(resource.inputs)), resource.name
    for name, value in outputs.items():
        assert password not in json.dumps(value), name
    assert secret_outputs == set()  # nothing secret is re-exported, so nothing could leak in plaintext


def test_consumer_objects_are_valid_restricted_and_rendered_without_a_cluster(consumer_run):
    mocks, _, _ = consumer_run
    provider = find(mocks, "providers:kubernetes").props
    assert provider == {"renderYamlToDirectory": ".state/manifests/dev"}
    for resource in mocks.resources:
        if resource.type.startswith("kubernetes:"):
            assert mocks.providers[resource.name].endswith("pulumi:providers:kubernetes::k8s::k8s-id"), resource.name
            validate_builtin(manifest(resource.props))
    pod = find(mocks, "apps/v1:Deployment").props["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}
    assert ":" in container["image"] and not container["image"].endswith(":latest")
    assert all(not text.startswith("-----BEGIN") for _, text in plain_strings(find(mocks, "apps/v1:Deployment").inputs))
