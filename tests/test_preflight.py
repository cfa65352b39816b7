"""scripts/preflight.py on plans as the engine describes them (its resourcePreEvent metadata) and on a
stand-in for kubectl: what is a takeover, what is the stack's own replacement, what loses the database.
The real engine and API server run it in tests/engine/test_data_safety.py and tests/cluster/."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import preflight  # noqa: E402

URN = "urn:pulumi:dev::pgpool-k8s::pgpool-k8s:index:PgpoolStack$"
SECRET = "kubernetes:core/v1:Secret"
POSTGRES = "kubernetes:kubedb.com/v1:Postgres"
STACK = "pgpool-k8s/dev"


def state(name: str, namespace: str = "pgpool-dev", uid: str = "") -> dict:
    return {"inputs": {"metadata": {"name": name, "namespace": namespace}},
            "outputs": {"metadata": {"name": name, "namespace": namespace, **({"uid": uid} if uid else {})}}}


def step(op: str, type_: str, urn: str, new: dict | None = None, old: dict | None = None) -> dict:
    return {"resourcePreEvent": {"metadata": {"op": op, "type": type_, "urn": urn, "new": new, "old": old}}}


def kubectl_with(*objects: tuple[str, str, str, str], mark: str | None = None):
    """A kubectl `get --output json` over these (resource, namespace, name, uid) objects, annotated with
    `mark` as the stack's owner."""
    calls = []

    def kubectl(*args: str) -> subprocess.CompletedProcess:
        calls.append(args)
        resource, rest = args[1], args[2:]
        namespace = rest[rest.index("--namespace") + 1] if "--namespace" in rest else ""
        names = [a for a in rest[:rest.index("--ignore-not-found")] if a != "--namespace" and a != namespace]
        annotations = {"pgpool-k8s/stack": mark} if mark else {}
        items = [{"metadata": {"name": n, "uid": u, "annotations": annotations,
                               "managedFields": [{"manager": "kubectl-create"}]}}
                 for r, ns, n, u in objects if r == resource and ns == namespace and n in names]
        out = "" if not items else json.dumps(items[0] if len(items) == 1 else {"kind": "List", "items": items})
        return subprocess.CompletedProcess(args, 0, out, "")

    kubectl.calls = calls
    return kubectl


def test_an_existing_object_the_stack_did_not_create_is_refused_by_name():
    events = [step("create", SECRET, URN + "kubernetes:core/v1:Secret::pgpool-user-app", new=state("pgpool-user-app")),
              step("create", SECRET, URN + "kubernetes:core/v1:Secret::pg-auth", new=state("pg-auth"))]
    kubectl = kubectl_with(("Secret", "pgpool-dev", "pg-auth", "u1"))
    with pytest.raises(preflight.PreflightError) as refused:
        preflight.check_plan(events, {"resources": []}, kubectl, STACK, allow_database_replacement=False)
    [problem] = refused.value.problems
    assert problem.startswith("Secret pgpool-dev/pg-auth already exists in the cluster (written by kubectl-create) "
                              "and is not stack pgpool-k8s/dev's: `make up` would take it over")
    assert len(kubectl.calls) == 1, "one kubectl call per type and namespace"


def test_the_stacks_own_replacement_under_the_same_resource_passes():
    urn = URN + "kubernetes:core/v1:Secret::pg-auth"
    events = [step("delete-replaced", SECRET, urn, old=state("pg-auth")),
              step("create-replacement", SECRET, urn, new=state("pg-auth"), old=state("pg-auth"))]
    kubectl = kubectl_with(("Secret", "pgpool-dev", "pg-auth", "u1"))
    preflight.check_plan(events, {"resources": [{"urn": urn, "type": SECRET, **state("pg-auth")}]}, kubectl, STACK,
                         allow_database_replacement=False)


def test_a_renamed_resource_that_would_delete_its_object_after_creating_it_is_refused():
    old_urn, new_urn = URN + "kubernetes:core/v1:Secret::auth", URN + "kubernetes:core/v1:Secret::pg-auth"
    events = [step("create", SECRET, new_urn, new=state("pg-auth")), step("delete", SECRET, old_urn, old=state("pg-auth"))]
    recorded = {"resources": [{"urn": old_urn, "type": SECRET, **state("pg-auth")}]}
    with pytest.raises(preflight.PreflightError) as refused:
        preflight.check_plan(events, recorded, kubectl_with(("Secret", "pgpool-dev", "pg-auth", "u1")), STACK, False)
    assert f"which this update deletes after creating {new_urn} under the same name" in refused.value.problems[0]


def test_names_unknown_until_the_update_and_render_mode_look_nothing_up():
    events = [step("create", SECRET, URN + "x", new=state(preflight.UNKNOWN))]
    kubectl = kubectl_with()
    preflight.check_plan(events, {"resources": []}, kubectl, STACK, False)
    preflight.check_plan(events, {"resources": []}, None, STACK, False)
    assert kubectl.calls == []


@pytest.mark.parametrize("op", ["delete", "replace", "delete-replaced"])
def test_deleting_or_replacing_the_database_is_refused_unless_allowed(op: str):
    events = [step(op, POSTGRES, URN + "kubernetes:kubedb.com/v1:Postgres::pg", old=state("pg"))]
    with pytest.raises(preflight.PreflightError) as refused:
        preflight.check_plan(events, {"resources": []}, None, STACK, False)
    assert refused.value.problems[0].startswith("Postgres pgpool-dev/pg would be ")
    preflight.check_plan(events, {"resources": []}, None, STACK, allow_database_replacement=True)


def test_destroy_refuses_an_object_made_again_by_someone_else():
    urn = URN + "kubernetes:core/v1:Secret::pg-auth"
    recorded = {"resources": [{"urn": urn, "type": SECRET, **state("pg-auth", uid="ours")}]}
    preflight.check_destroy(recorded, kubectl_with(("Secret", "pgpool-dev", "pg-auth", "ours")))
    preflight.check_destroy(recorded, kubectl_with())  # already gone: nothing to protect
    with pytest.raises(preflight.PreflightError) as refused:
        preflight.check_destroy(recorded, kubectl_with(("Secret", "pgpool-dev", "pg-auth", "theirs")))
    assert "Secret pgpool-dev/pg-auth in the cluster is not the one the stack created" in refused.value.problems[0]
    assert f"pulumi state delete '{urn}'" in refused.value.problems[0]


def test_a_tls_issuer_the_cluster_lacks_is_refused_before_anything_waits_for_it():
    postgres = state("pg")
    postgres["inputs"]["spec"] = {"tls": {"issuerRef": {"apiGroup": "cert-manager.io", "kind": "Issuer", "name": "pg-ca"}}}
    events = [step("create", POSTGRES, URN + "kubernetes:kubedb.com/v1:Postgres::pg", new=postgres)]
    answers = {"Issuer.cert-manager.io": (1, "error: the server doesn't have a resource type \"Issuer\"")}

    def kubectl(*args: str) -> subprocess.CompletedProcess:
        if args[1] in answers:
            code, err = answers[args[1]]
            return subprocess.CompletedProcess(args, code, "" if code else "issuer.cert-manager.io/pg-ca\n", err)
        return subprocess.CompletedProcess(args, 0, "", "")

    with pytest.raises(preflight.PreflightError) as refused:
        preflight.check_plan(events, {"resources": []}, kubectl, STACK, False)
    assert refused.value.problems == [
        "Postgres pgpool-dev/pg names the cert-manager Issuer 'pg-ca' in namespace pgpool-dev for its TLS "
        "certificates (postgresTlsIssuer), but cert-manager is not installed (no such resource type): install "
        "cert-manager and create the issuer first, or leave postgresTlsIssuer empty"]
    answers["Issuer.cert-manager.io"] = (0, "")
    preflight.check_plan(events, {"resources": []}, kubectl, STACK, False)


def test_destroy_refuses_a_stack_with_protected_resources_before_deleting_anything():
    urn = URN + "kubernetes:kubedb.com/v1:Postgres::pg"
    recorded = {"resources": [{"urn": urn, "type": POSTGRES, "protect": True, **state("pg", uid="ours")}]}
    for kubectl in (None, kubectl_with(("Postgres.kubedb.com", "pgpool-dev", "pg", "ours"))):
        with pytest.raises(preflight.PreflightError) as refused:
            preflight.check_destroy(recorded, kubectl)
        assert refused.value.problems[0].startswith("pg is protected")
        assert f"pulumi state unprotect '{urn}'" in refused.value.problems[0]


@pytest.mark.parametrize("mark, says", [
    ("pgpool-k8s/prod", "is stack pgpool-k8s/prod's (its pgpool-k8s/stack annotation): `make up` would take it over"),
    (STACK, "with this stack's mark (pgpool-k8s/stack: pgpool-k8s/dev), but the stack's state does not record it"),
])
def test_the_objects_mark_says_whose_it_is(mark: str, says: str):
    events = [step("create", SECRET, URN + "kubernetes:core/v1:Secret::pg-auth", new=state("pg-auth"))]
    with pytest.raises(preflight.PreflightError) as refused:
        preflight.check_plan(events, {"resources": []}, kubectl_with(("Secret", "pgpool-dev", "pg-auth", "u1"), mark=mark),
                             STACK, False)
    assert says in refused.value.problems[0]
