"""A rolling replacement of two Pgpool-II pods behind a Service, done the way Kubernetes does it, under load.

Two Pgpool-II pods run the generated files behind Debian's HAProxy, a round-robin TCP front standing
in for the Service (no retries, no health checks: like kube-proxy it sends a connection where it
points, and a pod that refuses it fails it). pgbench runs two loads through it all along: short
sessions (`-C`, a connection per transaction) and long sessions (one connection per client for the
whole test). Then, as a Deployment with maxSurge 1 and maxUnavailable 0 rolls: a new pod starts and
joins the front; an old pod is deleted: it leaves the front after ENDPOINT_DELAY_S (the endpoint
controllers and kube-proxy take a moment), while the kubelet runs its preStop hook, then sends
SIGTERM, then SIGKILL when the termination grace period (counted from the deletion) runs out.

The figures printed are what each load saw; the assertion is the one clients need: no short session
fails, and no acknowledged write is lost. A control run without the preStop wait shows the failures
that wait prevents.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Iterator

import pytest

from tests.dataplane.harness import HAProxy, wait_until
from tests.dataplane.installs import PgpoolInstall
from tests.dataplane.load import CREATE_WRITES_TABLE, WRITES_TABLE, PgbenchRun, WriteLoad
from tests.dataplane.local_stack import LocalDevStack, StackPgpool, running_database
from tests.dataplane.stack_files import DevStack, dev_stack

ENDPOINT_DELAY_S = 1.0
"""From a pod's deletion until the front stops sending it new connections: a delay of the cluster's
(endpoint controllers, kube-proxy) that the test reproduces, not an event it waits for."""
SHORT_LANES, LONG_LANES = 4, 2
SHUTDOWN = {"pgpoolPreStopSeconds": "3", "pgpoolTerminationGraceSeconds": "10"}
"""Shorter than the defaults (10 s, 60 s) to keep the test short; 3 s still exceeds ENDPOINT_DELAY_S."""
REPLACEMENTS = itertools.count(1)
MODES = {
    "smart": dict(SHUTDOWN, pgpoolShutdownMode="smart"),
    "fast": dict(SHUTDOWN, pgpoolShutdownMode="fast"),
    "control: smart, no preStop wait": dict(SHUTDOWN, pgpoolShutdownMode="smart", pgpoolPreStopSeconds="0"),
}


@dataclass
class Termination:
    """What happened to one old pod, in seconds from its deletion."""

    pod: str
    out_of_front: float = 0.0
    pre_stop_done: float = 0.0
    exited: float = 0.0
    killed: bool = False
    deleted_at: float = 0.0


@pytest.fixture(scope="module")
def shutdown_database(stack: DevStack, install: PgpoolInstall) -> Iterator[LocalDevStack]:
    with running_database(stack, install) as local:
        user = stack.app_user
        with local.cluster.primary.connect(dbname=user) as conn:
            conn.execute(f"SET ROLE {user}")
            conn.execute(CREATE_WRITES_TABLE)
        yield local


def run_pre_stop(pgpool: StackPgpool, deadline: float) -> None:
    """The preStop hook, in the container: it ends when it is done, when pgpool (the container's
    PID 1) exits and the container with it, or when the grace period is over."""
    command, popen = pgpool.pod.popen("pgpool", pgpool.stack.pre_stop_command, pgpool.stack.probe_env)
    hook = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                            **popen)
    while hook.poll() is None and pgpool.running and time.monotonic() < deadline:
        time.sleep(0.05)
    if hook.poll() is None:
        os.killpg(hook.pid, signal.SIGKILL)
    _, errors = hook.communicate()
    assert hook.returncode in (0, -signal.SIGKILL), errors


def terminate(pgpool: StackPgpool, slot: str, front: HAProxy) -> Termination:
    """Delete a pod as Kubernetes does: out of the endpoints (after a delay) while the kubelet runs the
    preStop hook; SIGTERM after it; SIGKILL when the grace period, counted from the deletion, is over."""
    grace = pgpool.stack.pod["terminationGracePeriodSeconds"]
    record = Termination(slot, deleted_at=time.time())
    start = time.monotonic()

    def leave_front() -> None:
        time.sleep(ENDPOINT_DELAY_S)
        front.remove(slot)
        record.out_of_front = time.monotonic() - start

    leaving = threading.Thread(target=leave_front)
    leaving.start()
    if pgpool.stack.pre_stop_command:
        run_pre_stop(pgpool, start + grace)
    record.pre_stop_done = time.monotonic() - start
    record.killed = not pgpool.stop(signal.SIGTERM, timeout=max(0.0, grace - record.pre_stop_done))
    record.exited = time.monotonic() - start
    leaving.join()
    return record


def rolling_replacement(local: LocalDevStack, stack: DevStack) -> tuple[list[Termination], list[PgbenchRun],
                                                                         list[PgbenchRun], int]:
    """Two pods, a and b, replaced by c and d under both loads; the runs of each load, and the rows present."""
    user, password = stack.app_user, stack.passwords[stack.app_user]
    front = HAProxy(local.workspace, "pods", slots=["a", "b", "c", "d"])
    front.start()
    pods = {"a": local.pgpool("pgpool-a", stack=stack), "b": local.pgpool("pgpool-b", stack=stack)}
    for slot, pgpool in pods.items():
        front.add(slot, pgpool.endpoint.port)
    endpoint = front.endpoint.__class__(front.endpoint.port, pods["a"].endpoint.sslmode)
    base = next(REPLACEMENTS) * 100_000  # run ids of this replacement, apart from any other's
    # The long lanes' sessions last about the whole replacement: two deletions, each within its grace period.
    duration = 2 * (stack.pod["terminationGracePeriodSeconds"] + 6) + 6
    short = WriteLoad(local.workspace, endpoint, user, password, user, lanes=SHORT_LANES, chunk=2,
                      new_connection_per_transaction=True, name=f"short-{base}", first_run=base)
    long = WriteLoad(local.workspace, endpoint, user, password, user, lanes=LONG_LANES, chunk=duration,
                     name=f"long-{base}", first_run=base + 50)
    terminations = []
    short.start()
    long.start()
    try:
        short.wait_for_a_clean_run_per_lane(after=0)
        long.wait_for_a_commit_per_lane(local.cluster.primary, user)
        for old, new in (("a", "c"), ("b", "d")):
            pods[new] = local.pgpool(f"pgpool-{new}", stack=stack)
            front.add(new, pods[new].endpoint.port)
            # The Deployment deletes an old pod once the new one is Ready: its readiness probe answers.
            wait_until(f"pod {new} ready", lambda: pods[new].probe(stack.readiness_command).returncode == 0)
            terminations.append(terminate(pods[old], old, front))
    finally:
        short_runs, long_runs = short.stop(), long.stop()
        front.stop()
        for pgpool in pods.values():
            pgpool.stop()
    rows = dict(local.cluster.primary.query(
        f"SELECT run, count(*) FROM {WRITES_TABLE} WHERE run > %s GROUP BY run", (base,), dbname=user))
    lost = sum(max(0, r.acknowledged - rows.get(r.run, 0)) for r in short_runs + long_runs)
    return terminations, short_runs, long_runs, lost


def describe(runs: list[PgbenchRun], terminations: list[Termination]) -> list[str]:
    """A load's failures by what the client was told, with when, in seconds from the deletion of the
    pod deleted last before it."""
    seen: dict[tuple[str, str], list[float]] = {}
    for run in (r for r in runs if r.failed):
        deleted = [t for t in terminations if t.deleted_at <= run.ended] or terminations[:1]
        seen.setdefault((f"{run.outcome}, pod {deleted[-1].pod}", run.error), []).append(
            run.ended - deleted[-1].deleted_at)
    return [f"      {len(times)} x {what} at +{min(times):.1f}..{max(times):.1f}s: {error}"
            for (what, error), times in sorted(seen.items(), key=lambda item: min(item[1]))]


def report(install: PgpoolInstall, mode: str, stack: DevStack, terminations: list[Termination],
           loads: dict[str, list[PgbenchRun]], lost: int) -> str:
    s = stack.settings.pgpool
    lines = ["", f"shutdown test ({install}), {mode}: shutdown mode {s.shutdown_mode}, preStop {s.pre_stop_seconds}s, "
                 f"grace {s.termination_grace_seconds}s, endpoint removal after {ENDPOINT_DELAY_S:.0f}s",
             "  pod  out of front  preStop done  exited   killed"]
    for t in terminations:
        lines.append(f"  {t.pod:<4} {t.out_of_front:>11.1f}s {t.pre_stop_done:>12.1f}s {t.exited:>7.1f}s   "
                     f"{'yes' if t.killed else 'no'}")
    lines.append("  load                              transactions  failed tx  refused")
    for name, runs in loads.items():
        failed = sum(r.outcome == "aborted" for r in runs)
        refused = sum(r.outcome == "refused" for r in runs)
        lines.append(f"  {name:<33} {sum(r.acknowledged for r in runs):>12} {failed:>10} {refused:>8}")
        lines += describe(runs, terminations)
    lines.append(f"  acknowledged rows lost: {lost}")
    return "\n".join(lines)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.split(":")[0])
def test_rolling_replacement_fails_no_short_session(mode: str, shutdown_database: LocalDevStack,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    stack = dev_stack(pgpoolImage=shutdown_database.install.image, **MODES[mode])
    terminations, short, long, lost = rolling_replacement(shutdown_database, stack)
    with capsys.disabled():
        print(report(shutdown_database.install, mode, stack, terminations,
                     {f"short sessions (-C, {SHORT_LANES} clients)": short,
                      f"long sessions ({LONG_LANES} clients)": long}, lost))
    assert lost == 0
    assert sum(r.acknowledged for r in short) > 0 and sum(r.acknowledged for r in long) > 0
    short_failures = [r for r in short if r.failed]
    if mode.startswith("control"):
        # Without the wait, pgpool stops while the front still sends it clients.
        assert short_failures, "the control run saw no failure: the test would not see one either"
    else:
        assert short_failures == [], [r.error for r in short_failures]
