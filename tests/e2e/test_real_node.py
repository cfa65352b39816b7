"""The local stack on the local cluster's real node (scripts/cluster.py --nodes real): containers run from the
images scripts/images.sh builds, the kubelet's probes decide readiness, kube-proxy routes the Services and
CoreDNS resolves them. A client on this machine connects through Pgpool-II's Service as a user would.

The tests share one cluster and one stack and run in order, as a user's commands would; each prints its
figures. They need root (the node's namespaces, cgroups and iptables), like the cluster itself.
"""

from __future__ import annotations

import calendar
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import psycopg
import pytest

from components.query_cache import QueryCache
from tests.dataplane.query_cache import pool_cache
from tests.e2e.harness import NAMESPACE, STACK, RealNodeStack, wait_for
from tests.engine.harness import PROJECT, EngineProject, EngineRun

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the real node needs root (namespaces, cgroups, iptables)")

SELECTS = 1000
CLIENT_THREADS = 4
"""Concurrent clients of the SELECT sessions."""


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    base = tmp_path_factory.mktemp("e2e")
    project = EngineProject(base / "project", base / "state")
    images = subprocess.run([str(project.dir / "scripts" / "images.sh"), "all"], env=project.env,
                            capture_output=True, text=True)
    if images.returncode == 3:  # no ../shared/vendor: as the exporter's tests, skip and say where it looked
        pytest.skip(images.stderr.strip().splitlines()[-1])
    assert images.returncode == 0, images.stderr
    yield project
    subprocess.run([sys.executable, str(project.dir / "scripts" / "cluster.py"), "stop"], cwd=project.dir,
                   env=project.env, capture_output=True)  # whatever happened, nothing keeps running


@pytest.fixture(scope="module")
def stack(project: EngineProject) -> RealNodeStack:
    return RealNodeStack(project)


@pytest.fixture(scope="module")
def show(request) -> Callable[[str], None]:
    """Prints a test's figures on the terminal, past pytest's capture."""
    manager = request.config.pluginmanager.getplugin("capturemanager")

    def show(text: str) -> None:
        with manager.global_and_fixture_disabled():
            print(f"\n[e2e] {text}", flush=True)
    return show


@pytest.fixture(scope="module")
def first_up(project: EngineProject, show) -> EngineRun:
    began = time.monotonic()
    run = project.engine("up", STACK)
    assert run.returncode == 0, run.output
    timings = "; ".join(re.findall(r"\[cluster\] (.*)", run.output))
    show(f"make up STACK=local, the cluster stopped: {time.monotonic() - began:.1f}s ({timings})")
    return run


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def restarts(pods: list[dict]) -> dict[str, int]:
    return {f"{p['metadata']['name']}/{s['name']}": s["restartCount"] for p in pods
            for s in p["status"].get("containerStatuses", []) + p["status"].get("initContainerStatuses", [])
            if s["restartCount"]}


def unready_pods(stack: RealNodeStack) -> dict[str, str]:
    """Pods not Running and Ready, each with the last lines its containers logged."""
    return {p["metadata"]["name"]: stack.kubectl("logs", "--namespace", NAMESPACE, p["metadata"]["name"],
                                                 "--all-containers", "--tail=5", check=False).stdout
            for p in stack.pods() if p["status"]["phase"] != "Succeeded" and not ready(p)}


def test_every_pod_runs_and_is_ready_through_the_kubelets_probes(stack: RealNodeStack, first_up: EngineRun, show):
    # make up awaits what the stack creates; the database's pods are the operator's, and a standby becomes
    # Ready once it has copied the primary.
    began = time.monotonic()
    try:
        wait_for(lambda: not unready_pods(stack), "every pod Ready", timeout=120, interval=0.5)
    except AssertionError as error:
        raise AssertionError(f"{error}: {unready_pods(stack)}") from None
    waited = time.monotonic() - began
    pods = stack.pods()
    running = [p for p in pods if p["status"]["phase"] == "Running"]
    jobs = stack.get("jobs")["items"]
    assert len(jobs) == 1 and jobs[0]["status"].get("succeeded") == 1, jobs
    assert {p["metadata"]["labels"].get("app.kubernetes.io/name") for p in running} >= {
        "pgpool", "prometheus", "postgreses.kubedb.com"}
    assert all(ready(p) for p in running), [p["metadata"]["name"] for p in running if not ready(p)]
    assert len([p for p in running if p["metadata"]["name"].startswith("pgpool-")]) == 2
    assert not restarts(pods), restarts(pods)
    # Ready came from the kubelet running the probes in the containers, not from a simulation.
    node = stack.get("nodes", namespace="")["items"]
    assert [n["status"]["nodeInfo"]["containerRuntimeVersion"] for n in node] == ["containerd://2.4.2"]
    pgpool = next(p for p in running if p["metadata"]["name"].startswith("pgpool-"))
    assert "startupProbe" in pgpool["spec"]["containers"][0] and "readinessProbe" in pgpool["spec"]["containers"][0]
    resolved = stack.exec("pg-1", "postgres", "getent", "hosts", f"pg.{NAMESPACE}.svc.cluster.local")
    assert resolved.split()[0] == stack.service_ip("pg"), resolved
    show(f"{len(running)} pods Running and Ready {waited:.1f}s after make up, 0 restarts; "
         f"Job {jobs[0]['metadata']['name']} Complete; pg.{NAMESPACE}.svc.cluster.local resolves in a pod to {resolved.split()[0]}")


def exporter_select_counts(stack: RealNodeStack) -> Counter:
    """pgpool2_pool_nodes_select_cnt per backend host, summed over the Pgpool-II pods, read from each pod's
    exporter (its busybox wget, inside the pod)."""
    counts: Counter = Counter()
    for pod in stack.pods("pgpool"):
        # The exporter listens only once it has logged in to Pgpool-II (it retries every 5 s), which can be
        # after the pod is Ready: it has no probe of its own.
        metrics = wait_for(lambda: stack.kubectl("exec", "--namespace", NAMESPACE, pod["metadata"]["name"],
                                                 "--container", "exporter", "--", "wget", "-qO-",
                                                 "http://127.0.0.1:9719/metrics", check=False).stdout,
                           f"{pod['metadata']['name']}'s exporter listening", timeout=30)
        for line in metrics.splitlines():
            if line.startswith("pgpool2_pool_nodes_select_cnt{"):
                host = re.search(r'hostname="([^"]+)"', line).group(1).split(".", 1)[0]
                counts[host] += float(line.rsplit(" ", 1)[1])
    return counts


def serving_pgpool_pods(stack: RealNodeStack) -> list[str]:
    """The Pgpool-II pods not being deleted (a rollout's old pods stop after make up returns)."""
    return [p["metadata"]["name"] for p in stack.pods("pgpool") if not p["metadata"].get("deletionTimestamp")]


def exporter_cache_hits(stack: RealNodeStack) -> float:
    """pgpool2_pool_cache_num_cache_hits summed over the serving Pgpool-II pods, read from each pod's exporter."""
    return sum(float(line.rsplit(" ", 1)[1]) for pod in serving_pgpool_pods(stack)
               for line in stack.exec(pod, "exporter", "wget", "-qO-", "http://127.0.0.1:9719/metrics").splitlines()
               if line.startswith("pgpool2_pool_cache_num_cache_hits"))


def scans_per_server(stack: RealNodeStack, table: str = "e2e_reads") -> dict[str, int]:
    """Sequential scans of `table` on each PostgreSQL server, by its own statistics (a standby counts the
    queries it runs itself)."""
    query = f"SELECT coalesce(sum(seq_scan), 0) FROM pg_stat_user_tables WHERE relname = '{table}'"
    return {pod: int(stack.server_sql(pod, query)) for pod in ("pg-0", "pg-1", "pg-2")}


def listeners(*prefix: str) -> list[tuple[str, str]]:
    """(local address, process names) of every listening TCP socket that `ss` shows, run after `prefix`."""
    result = subprocess.run([*prefix, "ss", "--listening", "--tcp", "--numeric", "--processes", "--no-header"],
                            capture_output=True, text=True, check=True)
    return [(line.split()[3], line.split()[-1]) for line in result.stdout.splitlines() if line.strip()]


def test_nothing_listens_beyond_the_loopback_and_the_clusters_own_addresses(stack: RealNodeStack,
                                                                            first_up: EngineRun, show):
    state = stack.state()
    ours = {record["pid"] for record in state["processes"].values()}
    host, node = f"172.30.{state['slot']}.1", f"172.30.{state['slot']}.2"
    on_host = [(address, users) for address, users in listeners()
               if any(f"pid={pid}," in users for pid in ours)]
    in_node = listeners("nsenter", f"--target={state['processes']['node']['pid']}", "--net", "--")
    allowed = ("127.0.0.1:", "[::1]:", f"{host}:", f"{node}:")
    assert on_host and not [a for a, _ in on_host if not a.startswith(allowed)], on_host
    assert in_node and not [a for a, _ in in_node if not a.startswith(allowed)], in_node
    show(f"listening: on the host {sorted(a for a, _ in on_host)}; in the node {sorted(a for a, _ in in_node)}")


def test_reads_spread_over_the_primary_and_both_standbys_by_weight_and_writes_reach_the_primary(
        stack: RealNodeStack, first_up: EngineRun, show, tmp_path: Path):
    user, password = stack.app_credentials()
    servers = {p["status"]["podIP"]: p["metadata"]["name"] for p in stack.pods("postgreses.kubedb.com")}
    with stack.connect(user, password) as connection:
        connection.execute("CREATE TABLE IF NOT EXISTS e2e_reads (id integer); INSERT INTO e2e_reads VALUES (1)")
        written = connection.execute("INSERT INTO e2e_reads VALUES (2) "
                                     "RETURNING inet_server_addr()::text, pg_is_in_recovery()").fetchone()
    assert servers[written[0].split("/")[0]] == "pg-0" and written[1] is False, written
    for standby in ("pg-1", "pg-2"):
        wait_for(lambda: stack.server_sql(standby, "SELECT count(*) FROM e2e_reads") == "2", f"the rows on {standby}",
                 timeout=30)
    scans, counted = scans_per_server(stack), exporter_select_counts(stack)
    script = tmp_path / "select.sql"
    script.write_text("SELECT id FROM e2e_reads WHERE id = 1;\n")
    began = time.monotonic()
    subprocess.run(["pgbench", "--connect", f"--client={CLIENT_THREADS}", "--jobs=2",
                    f"--transactions={SELECTS // CLIENT_THREADS}", "--no-vacuum", f"--file={script}"],
                   env={**os.environ, **stack.libpq(user, password)}, check=True, capture_output=True, timeout=600)
    seconds = time.monotonic() - began
    def scanned() -> dict[str, int] | None:
        now = scans_per_server(stack)
        return {pod: now[pod] - scans[pod] for pod in now} if sum(now.values()) - sum(scans.values()) >= SELECTS else None

    # Each server's statistics reach its shared counters when its backend next goes idle.
    by_pod = wait_for(scanned, "every SELECT in the servers' statistics", timeout=60)
    counted = exporter_select_counts(stack) - counted
    assert sum(by_pod.values()) == SELECTS, by_pod
    # Weights 1 (the primary's Service) and 2 (the standbys' Service, two servers behind it).
    assert 0.23 <= by_pod["pg-0"] / SELECTS <= 0.43, by_pod
    assert min(by_pod["pg-1"], by_pod["pg-2"]) >= 0.10 * SELECTS, by_pod
    # Pgpool-II's own counters agree, give or take the readiness probes' SELECT 1 (each pod, every 10 s).
    probes = 2 * (seconds / 10 + 2)
    assert 0 <= counted["pg"] - by_pod["pg-0"] <= probes, (counted, by_pod)
    assert 0 <= counted["pg-standby"] - (by_pod["pg-1"] + by_pod["pg-2"]) <= probes, (counted, by_pod)
    shares = ", ".join(f"{pod} {count} ({100 * count / SELECTS:.1f}%)" for pod, count in sorted(by_pod.items()))
    show(f"{SELECTS} sessions of one SELECT through Service pgpool (pgbench --connect, {CLIENT_THREADS} clients, "
         f"TLS) in {seconds:.1f}s: {shares}; SHOW pool_nodes select_cnt (exporters) pg {counted['pg']:.0f}, "
         f"pg-standby {counted['pg-standby']:.0f}; the INSERT ran on pg-0 and reached pg-1 and pg-2")


PGBENCH_CHUNK_SECONDS = 5
"""The load runs as consecutive pgbench runs of this length until the rollout is over, then one more."""


class PgbenchLoad:
    """pgbench --connect through the Service, run after run, in a thread: every transaction a new session."""

    def __init__(self, environment: dict[str, str]):
        self.environment = environment
        self.outputs: list[subprocess.CompletedProcess] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.outputs.append(subprocess.run(
                ["pgbench", "--connect", "--client=4", "--jobs=2", f"--time={PGBENCH_CHUNK_SECONDS}"],
                env=self.environment, capture_output=True, text=True, timeout=120))

    def __enter__(self) -> "PgbenchLoad":
        self._thread.start()
        wait_for(lambda: self.outputs, "a first pgbench run", timeout=60, interval=0.2)
        return self

    def __exit__(self, *exc) -> None:
        runs = len(self.outputs)
        wait_for(lambda: len(self.outputs) > runs, "a pgbench run after the rollout", timeout=60, interval=0.2)
        self._stop.set()
        self._thread.join()

    def transactions(self) -> tuple[int, int]:
        """(processed, failed) over every run; a run that failed or aborted a client counts as failures."""
        processed = failed = 0
        for run in self.outputs:
            done = re.search(r"number of transactions actually processed: (\d+)", run.stdout)
            failures = re.search(r"number of failed transactions: (\d+)", run.stdout)
            processed += int(done.group(1)) if done else 0
            failed += int(failures.group(1)) if failures else 0
            if run.returncode != 0 or "aborted" in run.stderr:
                failed += max(1, run.stderr.count("aborted"))
        return processed, failed


def pgpool_replicasets(stack: RealNodeStack) -> dict[str, dict]:
    return {rs["metadata"]["name"]: rs for rs in stack.get("replicasets")["items"]
            if rs["metadata"]["labels"].get("app.kubernetes.io/name") == "pgpool"}


def rolled_out(sets: dict[str, dict], new: str, old: set[str]) -> bool:
    """The new ReplicaSet has both pods ready and every old one is scaled to none."""
    return sets[new]["status"].get("readyReplicas") == 2 and not any(
        sets[name]["spec"]["replicas"] for name in old if name in sets)


def timestamp(text: str) -> float:
    """An API server's time stamp (UTC, seconds) as time.time() counts."""
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


def test_a_setting_change_rolls_pgpool_under_new_connections_without_a_failed_transaction(
        project: EngineProject, stack: RealNodeStack, first_up: EngineRun, show):
    user, password = stack.app_credentials()
    environment = {**os.environ, **stack.libpq(user, password)}
    subprocess.run(["pgbench", "--initialize", "--scale=1", "--quiet"], env=environment, check=True,
                   capture_output=True, timeout=120)
    deployment, old_sets = stack.get("deployment", "pgpool"), set(pgpool_replicasets(stack))
    project.set_config(STACK, "numInitChildren", "24")
    with PgbenchLoad(environment) as load:
        began = time.monotonic()
        run = project.engine("up", STACK)
        up_seconds = time.monotonic() - began
    assert run.returncode == 0, run.output
    processed, failed = load.transactions()
    assert failed == 0, "\n".join(r.stderr[-500:] for r in load.outputs if r.returncode or "aborted" in r.stderr)

    after = stack.get("deployment", "pgpool")
    assert after["metadata"]["uid"] == deployment["metadata"]["uid"]
    sets = pgpool_replicasets(stack)
    [new] = set(sets) - old_sets
    assert rolled_out(sets, new, old_sets), sets
    progressing = next(c for c in after["status"]["conditions"] if c["type"] == "Progressing")
    rollout = timestamp(progressing["lastUpdateTime"]) - timestamp(sets[new]["metadata"]["creationTimestamp"])
    show(f"numInitChildren 32 -> 24 under pgbench --connect (4 clients, TLS, through Service pgpool): {processed} "
         f"transactions, {failed} failed; rollout {rollout:.0f}s (new ReplicaSet to complete), make up {up_seconds:.1f}s")


CACHED_READS = 50
CACHE_STALE_SECONDS = 60
"""queryCacheMaxStaleSeconds here: longer than the test, so a row read after a write is fresh only if the write
removed the cached one."""


def cache_shared_memory(stack: RealNodeStack, pod: str) -> tuple[int, int]:
    """(shared memory charged, memory limit) of the pgpool container's memory cgroup, as the kubelet set it."""
    [memory] = [path for path in stack.container_cgroups(pod, "pgpool") if (path / "memory.stat").exists()]
    stat = dict(line.split() for line in (memory / "memory.stat").read_text().splitlines())
    return int(stat["shmem"]), int((memory / "memory.limit_in_bytes").read_text())


def test_the_query_cache_serves_repeated_reads_from_the_pods_shared_memory(
        project: EngineProject, stack: RealNodeStack, first_up: EngineRun, show):
    """`queryCache shmem` on the real node: the pods roll with it, a repeated SELECT through the Service is
    answered from the pod's cache (the servers scan the table once), a write through the session is read back at
    once (its pod removed the cached row, which would have lived CACHE_STALE_SECONDS), each pod's store is charged
    to its container's memory cgroup within the kubelet's limit, and the exporters report the hits. The cache is
    turned off again after."""
    user, password = stack.app_credentials()
    old_sets = set(pgpool_replicasets(stack))
    with stack.connect(user, password) as connection:
        connection.execute("DROP TABLE IF EXISTS e2e_cached; CREATE TABLE e2e_cached (id integer, v integer); "
                           "INSERT INTO e2e_cached VALUES (1, 0)")
    project.set_config(STACK, "queryCache", "shmem")
    project.set_config(STACK, "queryCacheMaxStaleSeconds", str(CACHE_STALE_SECONDS))
    try:
        run = project.engine("up", STACK)
        assert run.returncode == 0, run.output
        [new] = set(pgpool_replicasets(stack)) - old_sets
        returned = time.monotonic()
        wait_for(lambda: rolled_out(pgpool_replicasets(stack), new, old_sets),
                 f"ReplicaSet {new} alone, with 2 ready pods", timeout=120, interval=0.5)
        rollout_after_up = time.monotonic() - returned

        def replayed(value: int) -> None:  # by both standbys, asked directly (their own scans, not the test's)
            for standby in ("pg-1", "pg-2"):
                wait_for(lambda: stack.server_sql(standby, "SELECT v FROM e2e_cached") == str(value),
                         f"v = {value} on {standby}", timeout=30, interval=0.2)

        replayed(0)
        scans, reported_before = scans_per_server(stack, "e2e_cached"), exporter_cache_hits(stack)

        def reported_hits() -> float | None:
            counted = exporter_cache_hits(stack) - reported_before
            return counted if counted >= CACHED_READS - 1 else None

        with stack.connect(user, password) as connection:
            # Unnamed statements only: psycopg turns a query run five times into a named prepared statement,
            # which Pgpool-II's cache treats apart (tests/dataplane/test_query_cache.py measures that case).
            connection.prepare_threshold = None

            def read() -> int:
                return connection.execute("SELECT v FROM e2e_cached WHERE id = 1").fetchone()[0]

            before = pool_cache(connection)["num_cache_hits"]
            values = [read() for _ in range(CACHED_READS)]
            hits = pool_cache(connection)["num_cache_hits"] - before
            reported = wait_for(reported_hits, "the hits in the exporters' series", timeout=60)
            # The servers' statistics reach their shared counters within seconds of the backend going idle.
            wait_for(lambda: sum(scans_per_server(stack, "e2e_cached").values()) > sum(scans.values()),
                     "the first read in the servers' statistics", timeout=60)
            scanned = sum(scans_per_server(stack, "e2e_cached").values()) - sum(scans.values())
            connection.execute("UPDATE e2e_cached SET v = 1 WHERE id = 1")
            replayed(1)
            after_write = read()
        memory = {pod: cache_shared_memory(stack, pod) for pod in serving_pgpool_pods(stack)}
        store = QueryCache(mode="shmem", max_stale_seconds=CACHE_STALE_SECONDS).shared_memory_bytes
        assert values == [0] * CACHED_READS
        assert hits >= CACHED_READS - 1 and scanned == 1, (hits, scanned)
        assert after_write == 1, "the write left the pod's cached row"
        assert all(store <= shmem < limit for shmem, limit in memory.values()), memory
        show(f"queryCache shmem, queryCacheMaxStaleSeconds {CACHE_STALE_SECONDS} (the new pods Ready "
             f"{rollout_after_up:.1f}s after make up returned): {CACHED_READS} identical SELECTs "
             f"in one session through Service pgpool, {hits:.0f} served from the pod's cache (the exporters: "
             f"{reported:.0f}), {scanned} scan by the servers; after an UPDATE in the session the next read saw it; "
             "shared memory charged to each pgpool container's memory cgroup: "
             + ", ".join(f"{pod} {shmem / 2**20:.0f} MiB of its {limit / 2**20:.0f} MiB limit"
                         for pod, (shmem, limit) in sorted(memory.items())))
    finally:
        for key in ("queryCache", "queryCacheMaxStaleSeconds"):
            project.pulumi("config", "rm", "--stack", STACK, f"{PROJECT}:{key}")
        assert project.engine("up", STACK).returncode == 0


class LoginLoad:
    """Loops of new TLS sessions through the Service, one per password, each attempt recorded."""

    def __init__(self, stack: RealNodeStack, user: str, passwords: dict[str, str]):
        self.stack, self.user, self.passwords = stack, user, passwords
        self.attempts: list[tuple[float, str, bool]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(which,)) for which in passwords]

    def _loop(self, which: str) -> None:
        while not self._stop.is_set():
            try:
                with self.stack.connect(self.user, self.passwords[which]) as connection:
                    connection.execute("SELECT 1")
                ok = True
            except psycopg.OperationalError:
                ok = False
                time.sleep(0.1)
            self.attempts.append((time.time(), which, ok))

    def __enter__(self) -> "LoginLoad":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def count(self, which: str, since: float) -> int:
        return sum(1 for t, w, _ in self.attempts if w == which and t >= since)


def test_password_rotation_runs_the_job_rolls_the_pods_and_swaps_the_accepted_password(
        project: EngineProject, stack: RealNodeStack, first_up: EngineRun, show):
    user, old = stack.app_credentials()
    old_jobs, old_sets = {j["metadata"]["name"] for j in stack.get("jobs")["items"]}, set(pgpool_replicasets(stack))
    rotated = subprocess.run([sys.executable, "scripts/init_stack.py", "--stack", STACK, "--rotate", "userPasswords.app"],
                             cwd=project.dir, env=project.env, capture_output=True, text=True)
    assert rotated.returncode == 0, rotated.stderr
    new = project.secret_values(STACK)["pgpool-k8s:userPasswords.app"]
    assert new != old
    with LoginLoad(stack, user, {"old": old, "new": new}) as load:
        marks = {"load start": time.time()}
        wait_for(lambda: load.count("old", marks["load start"]) >= 3, "logins before the update", timeout=60, interval=0.2)
        marks["up start"] = time.time()
        run = project.engine("up", STACK)
        marks["up done"] = time.time()
        wait_for(lambda: load.count("new", marks["up done"]) >= 5 and load.count("old", marks["up done"]) >= 5,
                 "logins after the update", timeout=60, interval=0.2)
        marks["load end"] = time.time()
    assert run.returncode == 0, run.output
    [job] = [j for j in stack.get("jobs")["items"] if j["metadata"]["name"] not in old_jobs]
    assert job["status"].get("succeeded") == 1, job["status"]
    [new_set] = set(pgpool_replicasets(stack)) - old_sets
    marks.update({"Job start": timestamp(job["status"]["startTime"]),
                  "Job done": timestamp(job["status"]["completionTime"]),
                  "rollout start": timestamp(pgpool_replicasets(stack)[new_set]["metadata"]["creationTimestamp"])})
    phases = [("before the Job", "load start", "Job start"), ("Job running", "Job start", "Job done"),
              ("after the Job, old pods only", "Job done", "rollout start"), ("rollout (old + new pods)",
              "rollout start", "up done"), ("after the rollout", "up done", "load end")]
    counts = Counter((phase, which, ok) for t, which, ok in load.attempts
                     for phase, start, end in phases if marks[start] <= t < marks[end])
    lines = [f"password rotation of app through Service pgpool: Job {job['metadata']['name']}, ReplicaSet {new_set}",
             f"{'phase':<30} {'lasted':>7} {'old ok':>7} {'old refused':>12} {'new ok':>7} {'new refused':>12}"]
    for phase, start, end in phases:
        lines.append(f"{phase:<30} {max(0.0, marks[end] - marks[start]):>6.1f}s {counts[(phase, 'old', True)]:>7} "
                     f"{counts[(phase, 'old', False)]:>12} {counts[(phase, 'new', True)]:>7} "
                     f"{counts[(phase, 'new', False)]:>12}")
    show("\n".join(lines))
    after = [(which, ok) for t, which, ok in load.attempts if t >= marks["up done"]]
    assert after and all(ok == (which == "new") for which, ok in after), Counter(after)
    assert counts[("before the Job", "old", True)] > 0 and not counts[("before the Job", "new", True)]


def firing(stack: RealNodeStack, alert: str, pod: str) -> bool:
    return bool(stack.prometheus(f'ALERTS{{alertname="{alert}",alertstate="firing",pod="{pod}"}}'))


def freeze(stack: RealNodeStack, pod: str, container: str, state: str) -> None:
    """Stops (FROZEN) or resumes (THAWED) every process of one container, through its freezer cgroup."""
    [freezer] = [path for path in stack.container_cgroups(pod, container) if (path / "freezer.state").exists()]
    (freezer / "freezer.state").write_text(state)


def test_prometheus_discovers_the_exporters_and_alerts_when_a_standby_stops(stack: RealNodeStack,
                                                                           first_up: EngineRun, show):
    pgpool_pods = {p["metadata"]["name"] for p in stack.pods("pgpool") if not p["metadata"].get("deletionTimestamp")}

    def scraped() -> list[dict] | None:
        """pgpool2_pool_nodes_status once exactly the running pods' exporters are scraped (the pods of the last
        rollout go from the EndpointSlices when they have stopped)."""
        targets = stack.prometheus('up{namespace="pgpool-local",service="pgpool-metrics"} == 1')
        backends = stack.prometheus('pgpool2_pool_nodes_status{namespace="pgpool-local"}')
        hosts = {(s["metric"]["pod"], s["metric"]["hostname"].split(".")[0]) for s in backends}
        wanted = {(pod, host) for pod in pgpool_pods for host in ("pg", "pg-standby")}
        return backends if {t["metric"]["pod"] for t in targets} == pgpool_pods and hosts == wanted else None

    backends = wait_for(scraped, "the running Pgpool-II pods' exporters scraped, with both backends", timeout=90)
    exporter_up = stack.prometheus('pgpool2_up{namespace="pgpool-local"}')
    assert sorted((s["metric"]["pod"], s["value"][1]) for s in exporter_up) == sorted((p, "1") for p in pgpool_pods)
    wait_for(lambda: len(stack.prometheus('pg_up{namespace="pgpool-local"} == 1')) == 3, "every pg_up 1", timeout=60)

    began = time.monotonic()
    freeze(stack, "pg-2", "postgres", "FROZEN")
    try:
        wait_for(lambda: firing(stack, "PostgresBackendDown", "pg-2"), "PostgresBackendDown for pg-2", timeout=180,
                 interval=2)
        fired = time.monotonic() - began
    finally:
        freeze(stack, "pg-2", "postgres", "THAWED")
    wait_for(lambda: not firing(stack, "PostgresBackendDown", "pg-2"), "the alert resolved", timeout=120, interval=2)
    resolved = time.monotonic() - began - fired
    others = [s["metric"].get("pod") for s in stack.prometheus('ALERTS{alertstate="firing"}')]
    show(f"Prometheus (EndpointSlice discovery): 2 exporter targets up, pgpool2_up 1 on both, "
         f"{len(backends)} pgpool2_pool_nodes_status series (2 backends per pod), pg_up 1 on 3 servers; "
         f"pg-2 frozen: PostgresBackendDown firing after {fired:.0f}s (for: 1m), resolved {resolved:.0f}s after "
         f"thawing; other alerts firing: {others or 'none'}")


def test_a_pod_that_cannot_start_stops_make_up_while_the_old_pods_keep_serving(
        project: EngineProject, stack: RealNodeStack, first_up: EngineRun, show):
    user, password = stack.app_credentials()
    image = stack.get("deployment", "pgpool")["spec"]["template"]["spec"]["containers"][0]["image"]
    # An image without Pgpool-II: the container's command is not there. Its tag names no Pgpool-II release,
    # so the release the files are rendered for is given as a user of such an image gives it.
    project.set_config(STACK, "pgpoolImage", "localhost/pgpool-k8s/postgresql:15")
    project.set_config(STACK, "pgpoolVersion", image.rsplit(":", 1)[1])
    with LoginLoad(stack, user, {"app": password}) as load:
        began = time.monotonic()
        failed = project.engine("up", STACK)
        seconds = time.monotonic() - began
        wait_for(lambda: load.count("app", time.time() - 1) >= 2, "logins after the failed update", timeout=30,
                 interval=0.2)
    finding = re.search(r"pod pgpool-local/(pgpool-\S+) cannot start: (.*)", failed.output)
    assert failed.returncode != 0 and finding, failed.output[-3000:]
    assert "/opt/pgpool-II/bin/pgpool" in finding.group(2) and "no such file or directory" in finding.group(2)
    logins = Counter(ok for _, _, ok in load.attempts)
    assert logins[True] > 0 and not logins[False], logins

    project.set_config(STACK, "pgpoolImage", image)
    project.set_config(STACK, "pgpoolVersion", "")
    restored = project.engine("up", STACK)
    assert restored.returncode == 0, restored.output
    pods = stack.pods("pgpool")
    assert len(pods) == 2 and all(ready(p) and p["spec"]["containers"][0]["image"] == image for p in pods)
    show(f"pgpoolImage without Pgpool-II: make up exited {failed.returncode} after {seconds:.0f}s naming "
         f"{finding.group(1)}: {finding.group(2)[:160]}; {logins[True]} logins through the old pods meanwhile, "
         f"0 refused; the setting restored, make up rolled back")


def processes_in_namespace(kind: str, inode: int) -> list[int]:
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if os.stat(entry / "ns" / kind).st_ino == inode:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def host_iptables_rules() -> set[str]:
    rules = set()
    for command in ("iptables-save", "ip6tables-save"):
        result = subprocess.run([command], capture_output=True, text=True)
        rules |= {line for line in result.stdout.splitlines() if not line.startswith(("#", ":"))}
    return rules


def test_destroy_leaves_no_container_namespace_rule_mount_or_process(project: EngineProject, stack: RealNodeStack,
                                                                      first_up: EngineRun, show):
    state, directory = stack.state(), stack.cluster_dir
    holder = state["processes"]["node"]["pid"]
    namespaces = {kind: os.stat(f"/proc/{holder}/ns/{kind}").st_ino for kind in ("net", "mnt")}
    cgroup_dirs = [h / state["cgroup"] for h in Path("/sys/fs/cgroup").iterdir() if (h / state["cgroup"]).is_dir()]
    containers = {int(pid) for d in cgroup_dirs for procs in d.rglob("cgroup.procs") for pid in procs.read_text().split()}
    assert len(containers) > 20, containers  # the daemons, the shims and every container's processes
    inside = subprocess.run(["nsenter", f"--target={holder}", "--net", "--", "iptables-save"], capture_output=True,
                            text=True).stdout
    assert "KUBE-SERVICES" in inside and "CNI-" in inside, inside[:500]
    rules_before = host_iptables_rules()

    run = project.engine("destroy", STACK)
    assert run.returncode == 0, run.output
    assert not directory.exists()
    assert not [pid for pid in containers if Path(f"/proc/{pid}").exists()
                and str(state["cgroup"]) in Path(f"/proc/{pid}/cgroup").read_text()]
    for kind, inode in namespaces.items():
        assert not processes_in_namespace(kind, inode), kind
    assert not [d for d in cgroup_dirs if d.exists()]
    link = f"pgk8s-{state['slot']}"
    assert not Path("/sys/class/net", link).exists()
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True, check=True).stdout
    assert f"10.96.{state['slot']}.0/24" not in routes and link not in routes, routes
    assert not [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(directory) in line]
    new_rules = host_iptables_rules() - rules_before
    assert not new_rules and not [r for r in host_iptables_rules() if link in r or f"10.96.{state['slot']}." in r]
    show(f"make destroy STACK=local: {len(containers)} node processes (daemons, shims, containers) gone, network "
         f"and mount namespaces gone, {link} and its route gone, no host iptables rule, no mount, no cgroup left")
