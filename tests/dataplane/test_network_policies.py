"""The stack's NetworkPolicies in force on the data plane: what must talk still does, nothing else gets in.

Every pod of the dev stack is a network namespace of its own at an address on a bridge
(tests/dataplane/pod_network.py), with the labels its real pod carries: the primary and the standby
with KubeDB's pod labels, Pgpool-II with its Deployment's template labels, Prometheus and the password
Job likewise, an application pod in the stack's namespace and an intruder in another namespace. Each
pod's ingress is filtered by iptables in its own namespace, from the NetworkPolicies the program
generates. Then, on real PostgreSQL, Pgpool-II, postgres_exporter and Prometheus: every user logs in
through Pgpool-II from the application pod, reads spread over both backends by the weights, the
probes pass, the standby streams from the primary, the password Job sets the roles, Prometheus scrapes
KubeDB's exporter port (the node queries Prometheus, as `kubectl port-forward` would); and the
application pod cannot reach PostgreSQL past Pgpool-II nor Prometheus, the intruder nothing. The
figures are printed.
"""

from __future__ import annotations

import socket
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from components.settings import load_settings
from tests.dataplane.harness import Exporter, PostgresExporter, Prometheus, stopping, wait_until
from tests.dataplane.installs import Identity, PgpoolInstall
from tests.dataplane.local_stack import LocalDevStack, StackPgpool
from tests.dataplane.pod_network import Pod, PodNetwork, entered
from tests.dataplane.stack_files import DevStack, awkward_secrets, read_dev_stack
from tests.dataplane.test_metrics import exporter_container
from tests.dataplane.test_password_rotation import generated_job, run_job
from tests.dataplane.test_routing import SAMPLES, TOLERANCE, standby_share
from tests.program_run import ProgramRun, manifest, run_program

KUBEDB_EXPORTER_PORT = 56790
BLOCKED_TIMEOUT = 3
"""Seconds a connection attempt that a policy drops waits before it counts as refused."""
WHICH_SERVER = "SELECT host(inet_server_addr())"
OTHER_NAMESPACE = "other"
KUBEDB_POD_LABELS = {"app.kubernetes.io/name": "postgreses.kubedb.com", "app.kubernetes.io/instance": "pg",
                     "app.kubernetes.io/managed-by": "kubedb.com", "app.kubernetes.io/component": "database",
                     "app.kubernetes.io/part-of": "pgpool-k8s"}
"""The labels KubeDB gives a Postgres' pods (kubedb/apimachinery apis/kubedb/v1/postgres_helpers.go, PodLabels:
its selectors, and the Postgres' own labels but for name, instance and managed-by)."""


def template_labels(run: ProgramRun, type_suffix: str, name_prefix: str) -> dict[str, str]:
    [workload] = [r for r in run.of_type(type_suffix) if r.name.startswith(name_prefix)]
    return dict(workload.props["spec"]["template"]["metadata"]["labels"])


@dataclass
class PolicedStack:
    stack: DevStack
    run: ProgramRun
    network: PodNetwork
    local: LocalDevStack
    pgpool: StackPgpool
    prometheus: Prometheus
    rules: dict[str, list[str]]

    def pod(self, name: str) -> Pod:
        return self.network.pods[name]


@pytest.fixture(scope="module")
def policed(install: PgpoolInstall) -> Iterator[PolicedStack]:
    config, secrets = awkward_secrets()
    config = {**config, "pgpoolImage": install.image}  # the files of the install's release
    run = run_program(config, secrets, "dev")
    stack = read_dev_stack(run, load_settings(config, "dev"))
    namespace = stack.settings.namespace
    network = PodNetwork({ns: {"kubernetes.io/metadata.name": ns} for ns in (namespace, OTHER_NAMESPACE, "kubedb")})
    local = None
    try:
        for ordinal, role in enumerate(("primary", "standby")):
            network.add(f"pg-{ordinal}", namespace, {**KUBEDB_POD_LABELS, "kubedb.com/role": role})
        network.add("pgpool", namespace, template_labels(run, "apps/v1:Deployment", "pgpool"))
        network.add("prometheus", namespace, template_labels(run, "apps/v1:Deployment", "prometheus"))
        network.add("job", namespace, template_labels(run, "batch/v1:Job", "pgpool-passwords"))
        network.add("app", namespace, {"app": "web"})
        network.add("intruder", OTHER_NAMESPACE, {"app": "web"})
        policies = [manifest(r.props) for r in run.of_type("networking.k8s.io/v1:NetworkPolicy")]
        rules = network.enforce(policies)

        database = tuple((network.pods[f"pg-{i}"].address, network.pods[f"pg-{i}"].netns) for i in (0, 1))
        local = LocalDevStack(stack, install, database_pods=database)
        local.start_database()
        pgpool_pod = network.pods["pgpool"]
        pgpool = local.pgpool("pgpool-policed", place=(pgpool_pod.address, pgpool_pod.netns))
        primary = network.pods["pg-0"]
        exporter = PostgresExporter(local.workspace, "postgres-exporter", local.cluster.primary.endpoint,
                                    stack.monitor_user, stack.passwords[stack.monitor_user],
                                    address=primary.address, port=KUBEDB_EXPORTER_PORT)
        exporter.netns = primary.netns
        scrape = {"global": {"scrape_interval": "1s"}, "scrape_configs": [{
            "job_name": "kubedb", "static_configs": [{"targets": [f"{primary.address}:{KUBEDB_EXPORTER_PORT}"]}]}]}
        prometheus_pod = network.pods["prometheus"]
        prometheus = Prometheus(local.workspace, yaml.safe_dump(scrape), prometheus_pod.address, 9090)
        prometheus.netns = prometheus_pod.netns
        with stopping(exporter, prometheus):
            exporter.start()
            prometheus.start()
            yield PolicedStack(stack, run, network, local, pgpool, prometheus, rules)
    finally:
        if local is not None:
            local.close()
        network.close()


def reaches(pod: Pod, address: str, port: int) -> bool:
    """Whether a TCP connection from `pod` to address:port is accepted within BLOCKED_TIMEOUT."""
    with entered(pod.netns):
        probe = socket.socket()
    with probe:
        probe.settimeout(BLOCKED_TIMEOUT)
        try:
            probe.connect((address, port))
            return True
        except OSError:
            return False


def test_postgresql_prometheus_and_pgpool_are_each_selected_by_a_policy(policed: PolicedStack) -> None:
    for pod in ("pg-0", "pg-1", "pgpool", "prometheus"):
        assert pod in policed.rules, f"no NetworkPolicy selects the {pod} pod: it is open to the whole cluster"
    for pod, rules in sorted(policed.rules.items()):
        print(f"{pod}: {len(rules)} iptables rules in its namespace")


def test_what_must_talk_still_does(policed: PolicedStack) -> None:
    stack, app = policed.stack, policed.pod("app")
    started = time.monotonic()
    logins = 0
    with entered(app.netns):
        for user, password in stack.passwords.items():
            with policed.pgpool.endpoint.connect(user, password, require_auth="scram-sha-256") as conn:
                assert conn.pgconn.ssl_in_use and conn.execute("SELECT current_user").fetchone() == (user,)
                logins += 1
        served = []
        user = stack.app_user
        for _ in range(SAMPLES):
            with policed.pgpool.endpoint.connect(user, stack.passwords[user], dbname=user) as conn:
                served.append(conn.execute(WHICH_SERVER).fetchone()[0])
    standby = policed.pod("pg-1").address
    assert set(served) == {policed.pod("pg-0").address, standby}
    share = served.count(standby) / len(served)
    print(f"from the application pod: {logins} users logged in through Pgpool-II, {SAMPLES} sessions in "
          f"{time.monotonic() - started:.1f} s, the standby served {share:.3f} of the reads "
          f"(configured {standby_share(stack):.3f})")
    assert share == pytest.approx(standby_share(stack), abs=TOLERANCE)

    ready = policed.pgpool.probe(stack.readiness_command)
    assert (ready.returncode, ready.stdout.strip()) == (0, "1"), ready.stderr
    policed.local.cluster.wait_streaming()  # the standby's replication connection to the primary

    job, _ = run_job(policed.local, generated_job(stack, policed.run), "job-policed", policed.pod("job").netns)
    assert job.returncode == 0, job.stderr

    def scraped():
        targets = policed.prometheus.api("targets")["activeTargets"]
        return targets if targets and all(t["health"] == "up" for t in targets) else None

    [target] = wait_until("Prometheus scraping KubeDB's exporter port", scraped, timeout=30)
    print(f"Prometheus scraped {target['scrapeUrl']}: {target['health']}")


@pytest.mark.parametrize("source, target, port", [
    ("app", "pg-0", 5432),  # past Pgpool-II's hostssl-only pool_hba.conf, straight to the primary
    ("app", "pg-1", 5432),
    ("app", "pg-0", KUBEDB_EXPORTER_PORT),
    ("intruder", "pgpool", 9999),
    ("intruder", "prometheus", 9090),
    ("intruder", "pg-0", 5432),
    ("app", "prometheus", 9090),  # no client named for Prometheus (prometheusClient*Labels)
    ("pgpool", "prometheus", 9090),
])
def test_nothing_else_gets_in(policed: PolicedStack, source: str, target: str, port: int) -> None:
    assert not reaches(policed.pod(source), policed.pod(target).address, port), f"{source} reached {target}:{port}"


def test_the_refusals_are_the_policies_not_dead_servers(policed: PolicedStack) -> None:
    """Each port refused above answers the pods the policies admit."""
    pods = policed.pod
    assert reaches(pods("pgpool"), pods("pg-0").address, 5432)
    assert reaches(pods("job"), pods("pg-0").address, 5432)
    assert reaches(pods("prometheus"), pods("pg-0").address, KUBEDB_EXPORTER_PORT)
    assert reaches(pods("app"), pods("pgpool").address, 9999)


def test_prometheus_scrapes_pgpool2_exporter_through_the_policy(policed: PolicedStack, exporter_binary: Path) -> None:
    """The exporter sidecar in Pgpool-II's pod, on its container port; Prometheus' pod reads it, the
    application's cannot."""
    stack, pod = policed.stack, policed.pod("pgpool")
    port = stack.settings.pgpool.exporter_port
    context = {**stack.pod["securityContext"], **exporter_container(stack)["securityContext"]}
    exporter = Exporter(policed.local.workspace, exporter_binary, stack.exporter_env,
                        Identity(context["runAsUser"], context["runAsGroup"]), address=pod.address, port=port)
    exporter.netns = pod.netns
    with stopping(exporter):
        exporter.start()
        with entered(policed.pod("prometheus").netns):
            with urllib.request.urlopen(exporter.url, timeout=10) as response:
                metrics = response.read().decode()
        assert "pgpool2_up 1" in metrics
        assert not reaches(policed.pod("app"), pod.address, port)
