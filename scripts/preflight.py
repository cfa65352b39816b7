"""`make up`'s pre-flight: what the plan would do to objects the stack did not create, or to its data.

Run on the events of the policy-checked preview, before anything is written:
- takeover: the provider (v4.25.0, with server-side apply) creates an object by applying it, so an
  object that already exists under the same name is silently taken over, and a later destroy, or a
  change of name, deletes it with everything inside. Every object the plan creates is looked up in
  the cluster; one that exists is refused, naming it, unless it is the stack's own object being
  replaced under the same resource. Newer providers refuse such creates themselves; this check does
  not depend on it.
- data loss: a plan that deletes or replaces the stack's namespace or its KubeDB Postgres (a changed
  `namespace` or `clusterName`) is refused unless the user says so for this one command
  (`--allow-database-replacement`).
And before `destroy`: nothing is protected (a production stack's namespace and database), and every
object the stack would delete is the one it created (same uid): an object someone deleted and created
again under the name is theirs, not the stack's.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from typing import Callable, Iterable

from components.ownership import STACK_ANNOTATION

KUBERNETES = "kubernetes:"
CREATES = ("create", "create-replacement")
LOSSES = ("delete", "delete-replaced", "replace", "discard", "discard-replaced")
DATA_TYPES = {"kubernetes:core/v1:Namespace": "namespace",
              "kubernetes:kubedb.com/v1:Postgres": "database",
              "kubernetes:kubedb.com/v1alpha2:Postgres": "database"}
"""Resource types whose deletion deletes the database's data (a namespace takes its volumes with it)."""
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
"""The engine's placeholder for a value not known until the update."""
REPLACEMENT_FLAG = "--allow-database-replacement"

Kubectl = Callable[..., subprocess.CompletedProcess]


@dataclass(frozen=True)
class ObjectRef:
    """A Kubernetes object by type (`kubernetes:<group>/<version>:<Kind>`), namespace and name."""

    type: str
    namespace: str
    name: str

    @property
    def kind(self) -> str:
        return self.type.rsplit(":", 1)[1]

    @property
    def group(self) -> str:
        group = self.type.split(":")[1].split("/")[0]
        return "" if group == "core" else group

    @property
    def resource(self) -> str:
        """How kubectl names the type: Kind.group (the core group has none)."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"

    @classmethod
    def of(cls, resource_type: str, state: dict | None) -> "ObjectRef | None":
        """The object a step or state entry names, None when its name is not known yet."""
        if not resource_type.startswith(KUBERNETES) or resource_type.count(":") != 2 or not state:
            return None
        metadata = (state.get("outputs") or {}).get("metadata") or (state.get("inputs") or {}).get("metadata") or {}
        name, namespace = metadata.get("name"), metadata.get("namespace") or ""
        if not isinstance(name, str) or UNKNOWN in (name, namespace) or not isinstance(namespace, str):
            return None
        return cls(resource_type, namespace, name)


@dataclass(frozen=True)
class Step:
    op: str
    urn: str
    type: str
    new: ObjectRef | None
    old: ObjectRef | None
    inputs: dict
    """The new state's inputs (the object's manifest), empty when the step deletes."""


def planned_steps(events: Iterable[dict]) -> list[Step]:
    """Every step the preview planned, with the objects it creates and deletes."""
    steps = []
    for event in events:
        metadata = (event.get("resourcePreEvent") or {}).get("metadata")
        if metadata:
            steps.append(Step(metadata["op"], metadata["urn"], metadata["type"],
                              ObjectRef.of(metadata["type"], metadata.get("new")),
                              ObjectRef.of(metadata["type"], metadata.get("old")),
                              (metadata.get("new") or {}).get("inputs") or {}))
    return steps


def state_objects(deployment: dict) -> dict[ObjectRef, dict]:
    """The Kubernetes objects the stack's state records, each with its state entry."""
    found = {}
    for resource in deployment.get("resources") or []:
        ref = ObjectRef.of(resource.get("type", ""), resource)
        if ref is not None and not resource.get("delete"):
            found[ref] = resource
    return found


def live_objects(kubectl: Kubectl, refs: Iterable[ObjectRef]) -> dict[ObjectRef, dict]:
    """The objects among `refs` that exist in the cluster: one kubectl call per type and namespace."""
    groups: dict[tuple[str, str, str], list[ObjectRef]] = {}
    for ref in refs:
        groups.setdefault((ref.type, ref.resource, ref.namespace), []).append(ref)
    found = {}
    for (_, resource, namespace), wanted in sorted(groups.items()):
        scope = ["--namespace", namespace] if namespace else []
        result = kubectl("get", resource, *sorted({r.name for r in wanted}), *scope, "--ignore-not-found",
                         "--show-managed-fields", "--output", "json")
        if result.returncode != 0:
            if "doesn't have a resource type" in result.stderr:
                continue  # the API (a CRD) is not installed: nothing of that type can exist
            raise PreflightError([f"cannot look up {resource} {', '.join(sorted(r.name for r in wanted))} in the "
                                  f"cluster to check that the stack takes over nothing: {result.stderr.strip()}"])
        documents = json.loads(result.stdout) if result.stdout.strip() else {}
        items = documents.get("items", [documents]) if documents else []
        by_name = {item["metadata"]["name"]: item for item in items}
        found.update({ref: by_name[ref.name] for ref in wanted if ref.name in by_name})
    return found


class PreflightError(Exception):
    """The plan would take over or delete what it must not; every problem, each naming the object."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def _managers(live: dict) -> str:
    names = sorted({entry.get("manager", "?") for entry in live.get("metadata", {}).get("managedFields") or []})
    return f" (written by {', '.join(names)})" if names else ""


def _in_the_way(ref: ObjectRef, live: dict, stack: str) -> str:
    """Why an existing object the stack did not record must not be taken over, and what to do."""
    mark = (live.get("metadata", {}).get("annotations") or {}).get(STACK_ANNOTATION)
    if mark == stack:
        return (f"{ref} already exists in the cluster with this stack's mark ({STACK_ANNOTATION}: {mark}), but "
                f"the stack's state does not record it: an interrupted update made it, or the state was lost. "
                f"Import it (`pulumi import`), or delete it if nothing in it is needed, then run make up again")
    owner = f"stack {mark}'s (its {STACK_ANNOTATION} annotation)" if mark else f"not stack {stack}'s"
    return (f"{ref} already exists in the cluster{_managers(live)} and is {owner}: `make up` would take it over, "
            "and a later destroy or rename would delete it with everything in it. Choose another name for it in "
            "the stack's settings, or delete it from the cluster if it is really unused")


def takeovers(steps: list[Step], recorded: dict[ObjectRef, dict], live: dict[ObjectRef, dict],
              stack: str) -> list[str]:
    """Problems for objects the plan creates that already exist and are not the stack's own to replace."""
    deleted = {step.urn for step in steps if step.op in LOSSES}
    problems = []
    for step in steps:
        ref = step.new
        if step.op not in CREATES or ref is None or ref not in live:
            continue
        owner = recorded.get(ref)
        if owner is not None and owner["urn"] == step.urn:
            continue  # the stack replaces its own object under the same resource
        if owner is not None and owner["urn"] in deleted:
            problems.append(f"{ref} is this stack's as {owner['urn']}, which this update deletes after creating "
                            f"{step.urn} under the same name: the object would be deleted. Keep the resource's "
                            f"name (or give the new one `aliases=[...]` naming the old) so it moves instead")
        elif owner is None:
            problems.append(_in_the_way(ref, live[ref], stack))
    return problems


def data_losses(steps: list[Step], allowed: bool) -> list[str]:
    """Problems for steps that delete or replace the stack's namespace or database."""
    if allowed:
        return []
    problems = []
    for step in steps:
        what = DATA_TYPES.get(step.type)
        if what is None or step.op not in LOSSES:
            continue
        ref = step.old or step.new
        problems.append(f"{ref or step.urn} would be {'deleted' if step.op in ('delete', 'discard') else 'replaced'} "
                        f"({step.op}): the {what} goes with its data (KubeDB's deletionPolicy decides what is kept). "
                        f"If that is what you want, run this once with {REPLACEMENT_FLAG} "
                        "(make up ALLOW_DATABASE_REPLACEMENT=yes)")
    return problems


def missing_issuers(steps: list[Step], kubectl: Kubectl) -> list[str]:
    """Problems for a Postgres whose spec.tls names a cert-manager issuer the cluster does not have: KubeDB
    would wait for certificates forever, and so would Pgpool-II's pods for the CA they mount."""
    problems = []
    for step in steps:
        issuer = ((step.inputs.get("spec") or {}).get("tls") or {}).get("issuerRef") or {}
        if DATA_TYPES.get(step.type) != "database" or step.new is None or not isinstance(issuer.get("name"), str):
            continue
        kind = issuer.get("kind", "Issuer")
        scope = ["--namespace", step.new.namespace] if kind == "Issuer" else []
        found = kubectl("get", f"{kind}.cert-manager.io", issuer["name"], *scope, "--output", "name")
        if found.returncode != 0:
            why = ("cert-manager is not installed (no such resource type)" if "doesn't have a resource type"
                   in found.stderr else f"it is not there: {found.stderr.strip()}")
            where = f" in namespace {step.new.namespace}" if kind == "Issuer" else ""
            problems.append(f"{step.new} names the cert-manager {kind} {issuer['name']!r}{where} for its TLS "
                            f"certificates (postgresTlsIssuer), but {why}: install cert-manager and create the "
                            "issuer first, or leave postgresTlsIssuer empty")
    return problems


def check_plan(events: list[dict], deployment: dict, kubectl: Kubectl | None, stack: str,
               allow_database_replacement: bool) -> None:
    """Raise PreflightError with every problem of the previewed plan; kubectl None when the stack renders.
    `stack` is `<project>/<stack>`, as the objects' ownership annotation names it."""
    steps = planned_steps(events)
    problems = data_losses(steps, allow_database_replacement)
    if kubectl is not None:
        creates = {step.new for step in steps if step.op in CREATES and step.new is not None}
        problems += takeovers(steps, state_objects(deployment), live_objects(kubectl, creates), stack)
        problems += missing_issuers(steps, kubectl)
    if problems:
        raise PreflightError(problems)


def check_destroy(deployment: dict, kubectl: Kubectl | None) -> None:
    """Raise PreflightError when the stack holds protected resources (a production stack's namespace and
    database: Pulumi would delete everything else, then stop at them), or, on a cluster (kubectl), for
    recorded objects whose live namesake is not the one the stack created."""
    protected = [r["urn"] for r in deployment.get("resources") or [] if r.get("protect")]
    if protected:
        raise PreflightError([f"{urn.split('::')[-1]} is protected (a production stack's namespace or database): "
                              "destroy would delete everything else and stop there. To really delete it, "
                              f"`pulumi state unprotect '{urn}'` first (its object then stays in the cluster: "
                              "retainOnDelete)" for urn in protected])
    if kubectl is None:
        return
    recorded = state_objects(deployment)
    live = live_objects(kubectl, recorded)
    problems = []
    for ref, resource in sorted(recorded.items(), key=lambda item: str(item[0])):
        uid = ((resource.get("outputs") or {}).get("metadata") or {}).get("uid")
        now = live.get(ref, {}).get("metadata", {}).get("uid")
        if uid and now and uid != now:
            problems.append(f"{ref} in the cluster is not the one the stack created (uid {now}, the stack's was {uid}): "
                            f"someone made it again, and destroy would delete theirs. Leave it to them with "
                            f"`pulumi state delete '{resource['urn']}'`, then destroy")
    if problems:
        raise PreflightError(problems)
