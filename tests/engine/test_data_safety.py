"""`make up` on the real engine refuses what would lose data or leak a secret, before anything is written:
a change that deletes or replaces the stack's namespace or database (unless allowed for that one command),
a mistyped secret key (named, its value never shown), a secret stored in plain text.

The tests of this module share one dev stack (rendering its manifests) and run in order.
"""

from __future__ import annotations

import json

import pytest

from tests.engine.harness import EngineProject, EngineRun, first_up, module_project
from tests.program_run import production_config

STACK = "dev"
ALLOW = ("--allow-database-replacement",)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> EngineProject:
    return module_project(tmp_path_factory, "data-safety")


@pytest.fixture(scope="module", name="first_up")
def first_up_fixture(project: EngineProject) -> EngineRun:
    return first_up(project, STACK)


def snapshot(project: EngineProject) -> tuple[str, dict[str, str]]:
    """The stack's state and rendered files, to show that nothing was written."""
    state = json.loads(project.pulumi("stack", "export", "--stack", STACK))["deployment"]["resources"]
    files = {str(path.relative_to(project.render_dir(STACK))): path.read_text()
             for path in sorted(project.render_dir(STACK).rglob("*.yaml"))}
    return json.dumps(state, sort_keys=True), files


@pytest.mark.parametrize("key, value, refused", [
    ("clusterName", "pg2", ["Postgres pgpool-dev/pg would be deleted (delete): the database goes with its data"]),
    ("namespace", "pgpool-elsewhere", ["Namespace pgpool-dev would be deleted (delete): the namespace goes",
                                        "Postgres pgpool-dev/pg would be replaced"]),
])
def test_a_change_that_deletes_the_database_is_refused_unless_allowed_once(project: EngineProject, first_up: EngineRun,
                                                                           key: str, value: str, refused: list[str]):
    before = snapshot(project)
    stack_file = project.dir / f"Pulumi.{STACK}.yaml"
    settings = stack_file.read_bytes()
    project.set_config(STACK, key, value)
    try:
        for command in ("preview", "up"):
            run = project.engine(command, STACK)
            assert run.returncode != 0, run.output
            assert "The plan is refused before anything is written" in run.output
            for problem in refused:
                assert problem in run.output, run.output
            assert "--allow-database-replacement (make up ALLOW_DATABASE_REPLACEMENT=yes)" in run.output
            assert "=== up" not in run.output
        assert snapshot(project) == before

        allowed = project.engine("preview", STACK, extra=ALLOW)
        assert allowed.returncode == 0, allowed.output
        assert any(op in ("delete", "replace", "delete-replaced") and kind.endswith(":Postgres")
                   for op, kind, _ in allowed.steps())
    finally:
        stack_file.write_bytes(settings)
    assert set(project.engine("preview", STACK).changes()) == {"same"}


@pytest.mark.parametrize("key, value", [
    ("dbpassword", "Mistyped-Secret-Value-1"),
    ("tlskey", "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"),
])
def test_a_mistyped_secret_key_stops_up_without_showing_its_value(project: EngineProject, first_up: EngineRun,
                                                                  key: str, value: str):
    project.pulumi("config", "set", "--secret", "--stack", STACK, "--", key, value)
    try:
        run = project.engine("up", STACK)
    finally:
        project.pulumi("config", "rm", "--stack", STACK, key)
    assert run.returncode != 0
    assert f"pgpool-k8s:{key} (value not shown): unknown setting; did you mean " in run.output
    for line in value.splitlines():
        if not line.startswith("-----"):
            assert line not in run.output


def test_a_previous_superuser_password_in_plain_text_stops_up(project: EngineProject, first_up: EngineRun):
    project.pulumi("config", "set", "--plaintext", "--stack", STACK, "dbPasswordPrevious", "typed-in-clear")
    try:
        run = project.engine("up", STACK)
    finally:
        project.pulumi("config", "rm", "--stack", STACK, "dbPasswordPrevious")
    assert run.returncode != 0
    assert "pgpool-k8s:dbPasswordPrevious is stored unencrypted in Pulumi.dev.yaml" in run.output
    assert "pulumi config set --secret --stack dev dbPasswordPrevious" in run.output
    assert "typed-in-clear" not in run.output and "=== up" not in run.output


def test_a_production_stack_cannot_be_destroyed_while_its_database_is_protected(tmp_path_factory):
    project = module_project(tmp_path_factory, "production")  # a dev stack file without secrets to copy
    project.write_stack_file("prod-like", production_config())  # deletionPolicy: production's default
    up = project.engine("up", "prod-like")
    assert up.returncode == 0, up.output
    state = json.loads(project.pulumi("stack", "export", "--stack", "prod-like"))["deployment"]["resources"]
    guarded = {r["urn"].split("::")[-1] for r in state if r.get("protect")}
    assert guarded == {"pgpool-dev", "pg", "pg-auth", "pg-config", "pg-init"}
    assert all(r.get("retainOnDelete") for r in state if r.get("protect"))
    files = sorted(project.render_dir("prod-like").rglob("*.yaml"))

    destroy = project.engine("destroy", "prod-like")

    assert destroy.returncode != 0
    assert "Destroy is refused before anything is deleted" in destroy.output, destroy.output
    assert "pg is protected (a production stack's namespace or database)" in destroy.output
    assert "=== destroy" not in destroy.output
    after = json.loads(project.pulumi("stack", "export", "--stack", "prod-like"))["deployment"]["resources"]
    assert len(after) == len(state), "destroy deleted resources of a protected stack"
    assert sorted(project.render_dir("prod-like").rglob("*.yaml")) == files
