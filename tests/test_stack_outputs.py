"""The stack's outputs, what consumers rely on, and how bad secrets stop the program early."""

from __future__ import annotations

import json

import pytest

from components.settings import SettingsError
from tests.program_run import dev_stack_inputs, fresh_stack, run_program
from tests.recorded_run import plain_strings, recording_registrations, secret_values, secrets_for

OUTPUTS = {"namespace", "pgpoolHost", "pgpoolPort", "primaryService", "replicaService", "credentialsSecret",
           "appCredentialsSecrets", "metricsEndpoint", "prometheusUrl", "superuserPassword", "renderedManifests"}


def test_outputs_name_what_the_stack_created(dev_run):
    out = dev_run.outputs
    assert set(out) == OUTPUTS
    assert out["namespace"] == "pgpool-dev" == dev_run.find("core/v1:Namespace", "pgpool-dev").props["metadata"]["name"]
    service = dev_run.find("core/v1:Service", "pgpool").props
    assert out["pgpoolHost"] == f"{service['metadata']['name']}.pgpool-dev.svc.cluster.local"
    assert out["pgpoolPort"] == service["spec"]["ports"][0]["port"] == 9999
    assert out["primaryService"] == "pg.pgpool-dev.svc.cluster.local"
    assert out["replicaService"] == "pg-standby.pgpool-dev.svc.cluster.local"
    metrics = dev_run.find("core/v1:Service", "pgpool-metrics").props
    metrics_port = int(metrics["spec"]["ports"][0]["port"])  # the mock hands numbers back as floats
    assert out["metricsEndpoint"] == (f"http://{metrics['metadata']['name']}.pgpool-dev.svc.cluster.local:"
                                      f"{metrics_port}{metrics['metadata']['annotations']['prometheus.io/path']}")
    prometheus_port = int(dev_run.find("core/v1:Service", "prometheus").props["spec"]["ports"][0]["port"])
    assert out["prometheusUrl"] == f"http://prometheus.pgpool-dev.svc.cluster.local:{prometheus_port}"


def test_credentials_secrets_exist_and_hold_the_users(stack_run):
    run = stack_run(users='["app", "reporting"]')
    assert run.outputs["credentialsSecret"] == run.outputs["appCredentialsSecrets"]["app"]
    passwords = json.loads(run.secrets["userPasswords"])
    for user, name in run.outputs["appCredentialsSecrets"].items():
        # A fixed name, which a changed password keeps: other stacks' pods read it by name.
        assert name == f"pgpool-user-{user}"
        secret = run.named("core/v1:Secret", name).props
        assert secret["metadata"]["namespace"] == run.outputs["namespace"]
        assert secret["stringData"] == {"username": user, "password": passwords[user]}
    assert set(run.outputs["appCredentialsSecrets"]) == {"app", "reporting"}


def test_outputs_follow_the_settings(stack_run):
    run = stack_run(namespace="shop-db", pgpoolName="pool", pgpoolPort="6432", exporterPort="9187")
    out = run.outputs
    assert out["namespace"] == "shop-db"
    assert (out["pgpoolHost"], out["pgpoolPort"]) == ("pool.shop-db.svc.cluster.local", 6432)
    assert out["metricsEndpoint"] == "http://pool-metrics.shop-db.svc.cluster.local:9187/metrics"
    assert out["prometheusUrl"] == "http://prometheus.shop-db.svc.cluster.local:9090"


def test_only_the_superuser_password_is_secret_and_no_other_output_leaks_one(stack_run):
    for run in (stack_run(), stack_run(pgpoolMode="env"), stack_run(operator="cloudnativepg", users='["orders"]')):
        assert run.secret_outputs == {"superuserPassword"}
        assert run.outputs["superuserPassword"] == run.secrets["dbPassword"]
        secrets = secret_values(run.secrets)
        for name, value in run.outputs.items():
            if name in run.secret_outputs:
                continue
            for path, text in plain_strings(value, name):
                assert not [key for key, secret in secrets.items() if secret in text], path


def test_no_superuser_password_output_when_the_operator_owns_it(stack_run):
    run = stack_run(operator="zalando", pgpoolMode="env")
    assert "superuserPassword" not in run.outputs
    assert run.secret_outputs == set()


def test_render_mode_writes_manifests_per_stack(dev_run, stack_run):
    assert dev_run.outputs["renderedManifests"] == ".state/manifests/dev"
    provider = dev_run.find("pulumi:providers:kubernetes", "k8s").props
    assert provider["renderYamlToDirectory"] == ".state/manifests/dev"
    applied = stack_run(kubeContext="kind-dev")
    assert "renderedManifests" not in applied.outputs
    provider = applied.find("pulumi:providers:kubernetes", "k8s").props
    assert provider.get("context") == "kind-dev" and "renderYamlToDirectory" not in provider


def test_every_kubernetes_object_goes_through_the_stacks_provider(dev_run, stack_run):
    # An object on the default provider would use the ambient kubeconfig even in render mode.
    for run in (dev_run, stack_run(prometheusOperator="true", networkPolicy="true")):
        [provider] = [r for r in run.registrations if r.type == "pulumi:providers:kubernetes"]
        for resource in run.kubernetes_objects():
            assert run.registration(resource).provider.startswith(provider.urn + "::"), resource.name


# --- bad secrets are refused before anything is registered ----------------------------------

BAD_SECRETS = {
    "pool key line break": ({}, {"poolKey": "two\nlines"}, "poolKey"),
    "password line break": ({}, {"userPasswords": json.dumps({"app": "two\nlines"})}, "userPasswords.app"),
    # An AES entry of a password over 79 bytes outgrows the 128 characters pgpool reads of it.
    "AES entry too long": ({}, {"monitorPassword": "x" * 80}, "monitorPassword"),
    "pool key of 256 bytes": ({}, {"poolKey": "k" * 256}, "poolKey"),  # pgpool reads at most 255
    "pcp user of 128 bytes": ({"pcpUser": "p" * 128}, {}, "pcpUser"),  # the pcp client refuses 128 or more
}


@pytest.mark.parametrize("config, secrets, key", BAD_SECRETS.values(), ids=BAD_SECRETS)
def test_bad_secret_is_refused_before_any_resource(config, secrets, key):
    full_config = {**dev_stack_inputs()[0], **config}
    fresh_stack()
    with recording_registrations() as registrations, pytest.raises(Exception) as error:
        run_program(full_config, secrets_for(full_config, secrets), "dev")
    assert isinstance(error.value, SettingsError), f"{type(error.value).__name__}: {error.value}"
    assert f"pgpool-k8s:{key}" in str(error.value)
    assert [r.type for r in registrations if r.type != "pulumi:pulumi:Stack"] == []
    for value in secrets.values():
        assert value not in str(error.value)


@pytest.mark.parametrize("key, value", [("dbPasswordPrevious", "typed-in-clear"),
                                        ("userPasswords", json.dumps({"app": "typed-in-clear"}))])
def test_a_secret_stored_in_plain_text_is_refused_before_any_resource(key: str, value: str):
    """Whether or not this stack reads it now (dbPasswordPrevious is read only during a rotation)."""
    config = dev_stack_inputs()[0]
    secrets = {k: v for k, v in secrets_for(config, {}).items() if k != key}
    fresh_stack()
    with recording_registrations() as registrations, pytest.raises(Exception) as error:
        run_program({**config, key: value}, secrets, "dev")
    assert isinstance(error.value, SettingsError), f"{type(error.value).__name__}: {error.value}"
    assert f"pgpool-k8s:{key} is stored unencrypted in Pulumi.dev.yaml (value not shown)" in str(error.value)
    assert "pulumi config set --secret" in str(error.value) and "typed-in-clear" not in str(error.value)
    assert [r.type for r in registrations if r.type != "pulumi:pulumi:Stack"] == []
