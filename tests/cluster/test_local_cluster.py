"""The local stack applied to a real Kubernetes API server (scripts/cluster.py): every object admitted,
the Deployments awaited by the provider, Pod Security "restricted" enforced, RBAC as narrow as discovery
needs, a Pgpool-II config change rolled in place, destroy leaving nothing running.

The cluster's nodes are kwok's simulated ones, started before `up` (which then finds the cluster running):
what the API server admits, the scheduler places and the provider awaits, in seconds and without an image.
tests/e2e runs the same stack on the real node.

The tests of this module share one cluster and one stack and run in order, as a user's commands would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.engine.harness import EngineProject, EngineRun

STACK = "local"
NAMESPACE = "pgpool-local"
PROMETHEUS_ACCOUNT = f"system:serviceaccount:{NAMESPACE}:prometheus"


class Cluster:
    """kubectl on the project copy's local cluster."""

    def __init__(self, project: EngineProject):
        self.project = project
        self.kubeconfig = project.dir / ".state" / "cluster" / "kubeconfig"

    def kubectl(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), *args], input=input,
                              capture_output=True, text=True)

    def get(self, *args: str) -> dict:
        result = self.kubectl("get", "--namespace", NAMESPACE, "--output", "json", *args)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def can(self, verb: str, resource: str, namespace: str = NAMESPACE) -> bool:
        result = self.kubectl("auth", "can-i", verb, resource, "--namespace", namespace, f"--as={PROMETHEUS_ACCOUNT}")
        assert result.stdout.strip() in ("yes", "no"), result.stderr
        return result.stdout.strip() == "yes"

    def script(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(self.project.dir / "scripts" / "cluster.py"), *args],
                              cwd=self.project.dir, env=self.project.env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    base = tmp_path_factory.mktemp("cluster")
    project = EngineProject(base / "project", base / "state")
    started = Cluster(project).script("start", "--nodes", "kwok")
    assert started.returncode == 0, started.stderr
    yield project
    Cluster(project).script("stop")  # whatever happened, nothing keeps running


@pytest.fixture(scope="module")
def cluster(project: EngineProject) -> Cluster:
    return Cluster(project)


@pytest.fixture(scope="module")
def first_up(project: EngineProject) -> EngineRun:
    run = project.engine("up", STACK)
    assert run.returncode == 0, run.output
    return run


def running(pid: int) -> bool:
    """Whether a process runs (an exited one its parent has not reaped yet is a zombie: "Z")."""
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(") ", 1)[1][0] != "Z"


def deployment_ready(deployment: dict) -> bool:
    status = deployment.get("status", {})
    return (status.get("readyReplicas") == deployment["spec"]["replicas"]
            and status.get("updatedReplicas") == deployment["spec"]["replicas"])


def test_up_applies_every_object_and_awaits_the_deployments(cluster: Cluster, first_up: EngineRun):
    creates = [(op, kind, name) for op, kind, name in first_up.steps() if op == "create"]
    assert ("create", "kubernetes:apps/v1:Deployment", "pgpool") in creates
    assert first_up.changes().get("create", 0) >= 20
    # The provider returned from the creates only once the rollouts were complete.
    for name in ("pgpool", "prometheus"):
        assert deployment_ready(cluster.get("deployment", name)), name
    postgres = cluster.get("postgres.kubedb.com", "pg")
    assert postgres["spec"]["standbyMode"] == "Hot"
    assert "What the stack runs in namespace pgpool-local:" in first_up.output
    assert "deployment.apps/pgpool" in first_up.output


def test_second_up_changes_nothing_and_refresh_finds_no_drift(project: EngineProject, first_up: EngineRun):
    again = project.engine("up", STACK)
    assert again.returncode == 0, again.output
    assert set(again.changes()) == {"same"}, again.changes()
    refresh = project.engine("refresh", STACK)
    assert refresh.returncode == 0, refresh.output
    assert set(refresh.changes()) == {"same"}, refresh.changes()


def test_pods_are_admitted_by_pod_security_restricted_without_warning(cluster: Cluster, first_up: EngineRun):
    labels = cluster.get("namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    diagnostics = [event["diagnosticEvent"]["message"] for event in first_up.events if "diagnosticEvent" in event]
    assert not [m for m in diagnostics if "PodSecurity" in m], diagnostics
    pods = cluster.get("pods")["items"]
    for component in ("pgpool", "prometheus"):
        running = [p for p in pods if p["metadata"]["labels"].get("app.kubernetes.io/name") == component]
        assert running and all(p["status"]["phase"] == "Running" for p in running), component
        # The API server's own verdict on the pod as it runs, asked again: admitted, and no warning.
        pod = running[0]
        again = {"apiVersion": "v1", "kind": "Pod", "spec": pod["spec"],
                 "metadata": {"generateName": f"{component}-check-", "namespace": NAMESPACE}}
        again["spec"].pop("nodeName", None)
        result = cluster.kubectl("create", "--dry-run=server", "--filename", "-", "--output", "name",
                                 input=json.dumps(again))
        assert result.returncode == 0, result.stderr
        assert "Warning" not in result.stderr and "PodSecurity" not in result.stderr, result.stderr


def test_prometheus_can_discover_in_its_namespace_and_read_no_secret(cluster: Cluster, first_up: EngineRun):
    for resource in ("endpointslices.discovery.k8s.io", "services", "pods"):
        for verb in ("list", "watch"):
            assert cluster.can(verb, resource), f"{verb} {resource}"
    assert not cluster.can("get", "secrets")
    assert not cluster.can("list", "secrets")
    assert not cluster.can("list", "endpointslices.discovery.k8s.io", namespace="kube-system")
    assert not cluster.can("create", "pods")


def test_pgpool_pods_mount_no_service_account_token(cluster: Cluster, first_up: EngineRun):
    pods = [p for p in cluster.get("pods")["items"] if p["metadata"]["labels"].get("app.kubernetes.io/name") == "pgpool"]
    assert pods
    for pod in pods:
        sources = [source for volume in pod["spec"].get("volumes", []) for source in
                   volume.get("projected", {}).get("sources", [])]
        assert not [s for s in sources if "serviceAccountToken" in s], pod["metadata"]["name"]
        mounts = [m["mountPath"] for c in pod["spec"]["containers"] + pod["spec"].get("initContainers", [])
                  for m in c.get("volumeMounts", [])]
        assert not [m for m in mounts if m.startswith("/var/run/secrets/kubernetes.io")], mounts


def test_pgpool_config_change_rolls_the_pods_in_place(project: EngineProject, cluster: Cluster,
                                                      first_up: EngineRun):
    before = cluster.get("deployment", "pgpool")
    old_sets = {rs["metadata"]["name"] for rs in cluster.get("replicasets")["items"]
                if rs["metadata"]["labels"].get("app.kubernetes.io/name") == "pgpool"}
    project.set_config(STACK, "numInitChildren", "24")
    run = project.engine("up", STACK)
    assert run.returncode == 0, run.output
    after = cluster.get("deployment", "pgpool")
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert deployment_ready(after)
    sets = {rs["metadata"]["name"]: rs for rs in cluster.get("replicasets")["items"]
            if rs["metadata"]["labels"].get("app.kubernetes.io/name") == "pgpool"}
    new = set(sets) - old_sets
    assert len(new) == 1, sorted(sets)
    assert sets[new.pop()]["status"].get("readyReplicas") == after["spec"]["replicas"]
    for name in old_sets:
        assert sets[name]["spec"]["replicas"] == 0, name


def test_up_refuses_to_take_over_a_namespace_it_did_not_create(project: EngineProject, cluster: Cluster,
                                                               first_up: EngineRun):
    """The provider applies on create: without the pre-flight, `team-a` and its ConfigMap would be the
    stack's, and its destroy would delete them."""
    assert cluster.kubectl("create", "namespace", "team-a").returncode == 0
    assert cluster.kubectl("create", "configmap", "precious", "--namespace", "team-a",
                           "--from-literal=keep=me").returncode == 0
    stack_file = yaml.safe_load((project.dir / f"Pulumi.{STACK}.yaml").read_text())
    stack_file["config"]["pgpool-k8s:namespace"] = "team-a"
    (project.dir / "Pulumi.team.yaml").write_text(yaml.safe_dump(stack_file))

    run = project.engine("up", "team")

    assert run.returncode != 0, run.output
    assert "The plan is refused before anything is written" in run.output
    assert "Namespace team-a already exists in the cluster (written by kubectl-create) and is not stack " \
           "pgpool-k8s/team's: `make up` would take it over" in run.output, run.output
    assert "=== up" not in run.output
    assert not json.loads(project.pulumi("stack", "export", "--stack", "team"))["deployment"].get("resources")
    precious = cluster.kubectl("get", "configmap", "precious", "--namespace", "team-a", "--output", "json")
    assert precious.returncode == 0 and json.loads(precious.stdout)["data"] == {"keep": "me"}
    assert "app.kubernetes.io/part-of" not in cluster.get("namespace", "team-a")["metadata"].get("labels", {})
    assert project.engine("destroy", "team", extra=("--keep-cluster",)).returncode == 0
    assert cluster.kubectl("get", "configmap", "precious", "--namespace", "team-a").returncode == 0


def test_up_refuses_another_stacks_objects_naming_that_stack(project: EngineProject, cluster: Cluster,
                                                              first_up: EngineRun):
    """A second stack of the project in the same namespace: every object says it is stack local's."""
    assert cluster.get("namespace", NAMESPACE)["metadata"]["annotations"]["pgpool-k8s/stack"] == f"pgpool-k8s/{STACK}"
    stack_file = yaml.safe_load((project.dir / f"Pulumi.{STACK}.yaml").read_text())
    (project.dir / "Pulumi.twin.yaml").write_text(yaml.safe_dump(stack_file))

    run = project.engine("up", "twin")

    assert run.returncode != 0, run.output
    assert (f"Namespace {NAMESPACE} already exists in the cluster (written by pulumi-kubernetes") in run.output
    assert f"is stack pgpool-k8s/{STACK}'s (its pgpool-k8s/stack annotation)" in run.output, run.output
    assert "=== up" not in run.output


def test_up_refuses_to_take_over_a_secret_it_would_create(project: EngineProject, cluster: Cluster,
                                                          first_up: EngineRun):
    """A new user's credentials Secret already made by someone else in the stack's namespace."""
    assert cluster.kubectl("create", "secret", "generic", "pgpool-user-reporting", "--namespace", NAMESPACE,
                           "--from-literal=password=theirs").returncode == 0
    project.pulumi("config", "set", "--path", "--stack", STACK, "pgpool-k8s:users[1]", "reporting")

    run = project.engine("up", STACK)

    assert run.returncode != 0, run.output
    assert f"Secret {NAMESPACE}/pgpool-user-reporting already exists in the cluster" in run.output
    assert "=== up" not in run.output
    theirs = cluster.get("secret", "pgpool-user-reporting")
    assert theirs["data"] == {"password": "dGhlaXJz"} and "labels" not in theirs["metadata"]
    assert cluster.kubectl("delete", "secret", "pgpool-user-reporting", "--namespace", NAMESPACE).returncode == 0
    project.pulumi("config", "rm", "--path", "--stack", STACK, "pgpool-k8s:users[1]")


def test_up_refuses_a_tls_issuer_the_cluster_cannot_provide(project: EngineProject, cluster: Cluster,
                                                            first_up: EngineRun):
    """No cert-manager on the local cluster: KubeDB would wait for certificates forever, Pgpool-II's pods for
    the CA they mount."""
    project.set_config(STACK, "postgresTlsIssuer", "pg-ca")
    try:
        run = project.engine("up", STACK)
    finally:
        project.pulumi("config", "rm", "--stack", STACK, "pgpool-k8s:postgresTlsIssuer")
    assert run.returncode != 0, run.output
    assert (f"Postgres {NAMESPACE}/pg names the cert-manager Issuer 'pg-ca' in namespace {NAMESPACE} for its TLS "
            "certificates (postgresTlsIssuer), but cert-manager is not installed") in run.output, run.output
    assert "=== up" not in run.output
    assert "tls" not in cluster.get("postgres.kubedb.com", "pg")["spec"]


def test_destroy_refuses_to_delete_an_object_someone_made_again(project: EngineProject, cluster: Cluster,
                                                                first_up: EngineRun):
    budget = ("poddisruptionbudget", "pgpool", "--namespace", NAMESPACE)
    assert cluster.kubectl("delete", *budget).returncode == 0
    assert cluster.kubectl("create", *budget, "--selector=app=theirs", "--min-available=1").returncode == 0

    run = project.engine("destroy", STACK, extra=("--keep-cluster",))

    assert run.returncode != 0, run.output
    assert f"PodDisruptionBudget {NAMESPACE}/pgpool in the cluster is not the one the stack created" in run.output
    assert "=== destroy" not in run.output
    assert cluster.get("namespace", NAMESPACE)["status"]["phase"] == "Active"
    # Theirs stays theirs: the stack forgets it, it is deleted by its owner, the stack makes its own anew.
    [urn] = [r["urn"] for r in json.loads(project.pulumi("stack", "export", "--stack", STACK))["deployment"]["resources"]
             if r["type"] == "kubernetes:policy/v1:PodDisruptionBudget"]
    project.pulumi("state", "delete", "--stack", STACK, "--yes", urn)
    assert cluster.kubectl("delete", *budget).returncode == 0
    again = project.engine("up", STACK)
    assert again.returncode == 0, again.output
    assert cluster.get("poddisruptionbudget", "pgpool")["spec"]["maxUnavailable"] == 1


def test_destroy_leaves_nothing_of_the_stack_and_stop_leaves_nothing_running(project: EngineProject,
                                                                             cluster: Cluster, first_up: EngineRun):
    run = project.engine("destroy", STACK, extra=("--keep-cluster",))
    assert run.returncode == 0, run.output
    assert ("delete", "kubernetes:core/v1:Namespace", NAMESPACE) in run.steps()
    gone = cluster.kubectl("get", "namespace", NAMESPACE)
    assert gone.returncode != 0 and "NotFound" in gone.stderr, gone.stdout
    left = cluster.kubectl("get", "all,configmaps,secrets,serviceaccounts,roles,rolebindings,clusterroles,"
                           "clusterrolebindings,postgreses.kubedb.com", "--all-namespaces",
                           "--selector", "app.kubernetes.io/part-of=pgpool-k8s", "--output", "name")
    assert left.returncode == 0 and left.stdout == "", left.stdout

    saved = json.loads((project.dir / ".state" / "cluster" / "cluster.json").read_text())["processes"]
    assert set(saved) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}
    stopped = cluster.script("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not [name for name, record in saved.items() if running(record["pid"])]
    assert cluster.script("status").returncode == 3
    assert not (project.dir / ".state" / "cluster").exists()
