"""The dev stack on the real Pulumi engine, rendering its manifests: `make up`'s whole path, a second up,
refresh, a Pgpool-II setting changed, the state export, the consumer example, destroy.

The tests of this module share one stack and run in order, as a user's commands would.
"""

from __future__ import annotations

import base64
import json
import pytest

from policies.pgpool_policies import PACK_NAME, POLICIES
from tests.engine.harness import EngineProject, EngineRun, first_up, module_project, rendered_objects

STACK = "dev"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> EngineProject:
    return module_project(tmp_path_factory, "engine")


@pytest.fixture(scope="module", name="first_up")
def first_up_fixture(project: EngineProject) -> EngineRun:
    return first_up(project, STACK)


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def only(objects: list[dict], kind: str, name_prefix: str) -> dict:
    [found] = [o for o in by_kind(objects, kind) if o["metadata"]["name"].startswith(name_prefix)]
    return found


def test_up_renders_every_kind_and_prints_outputs(project: EngineProject, first_up: EngineRun):
    objects = project.rendered(STACK)
    kinds = {o["kind"] for o in objects}
    assert {"Namespace", "Postgres", "Deployment", "Service", "ConfigMap", "Secret", "PodDisruptionBudget",
            "ServiceAccount"} <= kinds
    assert kinds & {"Role", "ClusterRole"} and kinds & {"RoleBinding", "ClusterRoleBinding"}
    pgpool = only(objects, "Deployment", "pgpool")
    assert [c["name"] for c in pgpool["spec"]["template"]["spec"]["containers"]] == ["pgpool", "exporter"]
    assert {d["metadata"]["name"] for d in by_kind(objects, "Deployment")} == {"pgpool", "prometheus"}
    assert only(objects, "Postgres", "pg")["apiVersion"] == "kubedb.com/v1"

    assert "Outputs:" in first_up.output
    assert '  pgpoolHost: "pgpool.pgpool-dev.svc.cluster.local"' in first_up.output
    assert "  superuserPassword: [secret]" in first_up.output
    listed = first_up.output.split("Rendered manifests in ", 1)[1]
    for path in project.render_dir(STACK).rglob("*.yaml"):
        assert f"  {path.relative_to(project.render_dir(STACK))}\n" in listed


def test_preview_ran_every_policy_before_the_update(first_up: EngineRun):
    assert first_up.policies_ran() == {PACK_NAME: {policy.name for policy in POLICIES}}
    assert first_up.violations() == []
    report = [line for line in first_up.output.splitlines() if line.startswith(f"Policy pack {PACK_NAME}@")]
    assert report and all(f"{len(POLICIES)} policies ran" in line for line in report)
    # The preview with the pack comes before anything is written.
    assert first_up.output.index("=== preview") < first_up.output.index("=== up")


def test_second_up_changes_nothing(project: EngineProject, first_up: EngineRun):
    again = project.engine("up", STACK)
    assert again.returncode == 0, again.output
    assert set(again.changes()) == {"same"}, again.changes()


def test_refresh_finds_no_drift(project: EngineProject, first_up: EngineRun):
    refresh = project.engine("refresh", STACK)
    assert refresh.returncode == 0, refresh.output
    assert set(refresh.changes()) == {"same"}, refresh.changes()


def test_state_export_holds_no_secret(project: EngineProject, first_up: EngineRun):
    exported = project.pulumi("stack", "export", "--stack", STACK)
    values = project.secret_values(STACK)
    assert {"pgpool-k8s:poolKey", "pgpool-k8s:dbPassword", "pgpool-k8s:tlsKey",
            "pgpool-k8s:userPasswords.app"} <= set(values)
    for key, value in values.items():
        pieces = [line for line in value.splitlines() if line and not line.startswith("-----")] or [value]
        for piece in pieces:
            assert piece not in exported, f"{key} is in the state in plaintext"
        assert base64.b64encode(value.encode()).decode() not in exported, f"{key} is in the state in base64"


def test_pgpool_setting_change_rolls_the_deployment_in_place(project: EngineProject, first_up: EngineRun):
    before = only(project.rendered(STACK), "Deployment", "pgpool")
    project.set_config(STACK, "numInitChildren", "24")
    preview = project.engine("preview", STACK)
    assert preview.returncode == 0, preview.output
    up = project.engine("up", STACK)
    assert up.returncode == 0, up.output
    after = only(project.rendered(STACK), "Deployment", "pgpool")

    for run in (preview, up):
        steps = run.steps()
        touched = {(op, kind, name) for op, kind, name in steps if kind.endswith((":Deployment", ":Service"))}
        assert not [s for s in touched if s[0] not in ("same", "update")], touched
        assert ("update", "kubernetes:apps/v1:Deployment", "pgpool") in touched
    annotation = "checksum/config"
    assert (before["spec"]["template"]["metadata"]["annotations"][annotation]
            != after["spec"]["template"]["metadata"]["annotations"][annotation])

    # New config objects exist before the Deployment points at them; old ones go only afterwards.
    steps = up.steps()
    order = [(op, name) for op, kind, name in steps]
    deployment_update = order.index(("update", "pgpool"))
    replaced = [name for op, name in order if op == "delete-replaced"]
    assert replaced, f"no config object was replaced: {steps}"
    for name in replaced:
        assert order.index(("create-replacement", name)) < deployment_update < order.index(("delete-replaced", name))


def test_password_change_updates_secrets_in_place_and_runs_the_job_before_the_roll(project: EngineProject,
                                                                                 first_up: EngineRun):
    project.pulumi("config", "set", "--secret", "--path", "--stack", STACK, "pgpool-k8s:userPasswords.app",
                   "a-new-Passw0rd")
    up = project.engine("up", STACK)
    assert up.returncode == 0, up.output
    steps = up.steps()
    secrets = {(op, name) for op, kind, name in steps if kind == "kubernetes:core/v1:Secret"}
    assert ("update", "pgpool-user-app") in secrets and ("update", "pgpool-passwords") in secrets, secrets
    assert not [s for s in secrets if s[0] not in ("same", "update")], secrets
    assert not [s for s in steps if s[1].endswith(("Deployment", "Service", "Postgres")) and s[0] not in
                ("same", "update")], steps
    order = [(op, name) for op, kind, name in steps]
    # The new Job (auto-named) runs to completion before the pods that carry the new password roll.
    assert order.index(("create-replacement", "pgpool-passwords")) < order.index(("update", "pgpool"))
    assert order.index(("update", "pgpool")) < order.index(("delete-replaced", "pgpool-passwords"))
    [user] = [o for o in project.rendered(STACK) if o["kind"] == "Secret" and o["metadata"]["name"] == "pgpool-user-app"]
    assert base64.b64decode(user["data"]["password"]).decode() == "a-new-Passw0rd"


def test_consumer_example_reads_the_stack_through_a_stack_reference(project: EngineProject, first_up: EngineRun):
    consumer = project.dir / "examples" / "consumer"
    run = project.engine("up", STACK, project=consumer)
    assert run.returncode == 0, run.output
    outputs = json.loads(project.pulumi("stack", "output", "--json", "--stack", STACK))
    objects = rendered_objects(consumer / ".state" / "manifests" / STACK)
    [config_map] = by_kind(objects, "ConfigMap")
    assert config_map["data"]["PGHOST"] == outputs["pgpoolHost"] == "pgpool.pgpool-dev.svc.cluster.local"
    assert config_map["data"]["PGPORT"] == "9999"
    [deployment] = by_kind(objects, "Deployment")
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in env} == {outputs["credentialsSecret"]}

    # The StackReference holds the stack's secret output; the consumer's state keeps it encrypted.
    exported = project.pulumi("stack", "export", "--stack", STACK, cwd=consumer)
    password = project.secret_values(STACK)["pgpool-k8s:dbPassword"]
    assert "superuserPassword" in exported and password not in exported

    destroyed = project.engine("destroy", STACK, project=consumer)
    assert destroyed.returncode == 0, destroyed.output


def test_destroy_leaves_no_state_and_no_file(project: EngineProject, first_up: EngineRun):
    run = project.engine("destroy", STACK)
    assert run.returncode == 0, run.output
    state = json.loads(project.pulumi("stack", "export", "--stack", STACK))
    assert not state["deployment"].get("resources"), state["deployment"].get("resources")
    assert not list(project.render_dir(STACK).rglob("*.yaml"))
