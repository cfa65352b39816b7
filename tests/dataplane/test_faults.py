"""Under a steady read/write pgbench load, restart the standby, then crash and restart the primary.

Pgpool-II must keep serving without a restart of its own (backend_flag DISALLOW_TO_FAILOVER and
failover_on_backend_error = off keep it from detaching a node), and no write it acknowledged may
be lost. Failed transactions, refused connections, the longest stretch without a commit and the
time from the backend's return to the load's recovery are printed; timings are never asserted,
except a generous bound that only says the load came back at all.
"""

from __future__ import annotations

import signal
import time
from typing import Iterator

import pytest

from tests.dataplane.installs import PgpoolInstall
from tests.dataplane.load import CREATE_WRITES_TABLE, WRITES_TABLE, FaultWindow, WriteLoad, fault_window
from tests.dataplane.local_stack import LocalDevStack, StackPgpool, running_database
from tests.dataplane.stack_files import DevStack

RECOVERY_BOUND_S = 60
LANES = 4


@pytest.fixture(scope="module")
def fault_stack(stack: DevStack, install: PgpoolInstall) -> Iterator[LocalDevStack]:
    """An own database and Pgpool-II: restarts here must not leave stale pooled connections to others."""
    with running_database(stack, install) as local:
        yield local


def node_status(pgpool: StackPgpool, node: int) -> str:
    """The node's status as Pgpool-II sees it, through PCP (which needs no backend)."""
    result = pgpool.pcp("pcp_node_info", "-v", "-n", str(node))
    for line in result.stdout.splitlines():
        if line.startswith("Status Name"):
            return line.split(":", 1)[1].strip()
    return f"pcp_node_info failed: {result.stderr.strip()}"


def report(pgpool_version: str, windows: list[FaultWindow], acknowledged: int, present: int, in_doubt: int, lost: int,
           statuses: dict[str, str]) -> str:
    lines = ["", f"fault test ({pgpool_version}): {LANES} pgbench lanes of INSERT + load-balanced SELECT through Pgpool-II",
             f"{'fault':<40} {'down':>6} {'failed tx':>9} {'refused':>8} {'longest gap':>11} {'recovery':>9}"
             "  node status while down"]
    for w in windows:
        recovery = f"{w.recovery_s:.2f}s" if w.recovery_s is not None else "never"
        lines.append(f"{w.name:<40} {w.backend_down_s:>5.2f}s {w.failed_transactions:>9} {w.refused_connections:>8} "
                     f"{w.longest_gap_s:>10.2f}s {recovery:>9}  {statuses[w.name]}")
    lines.append("down: stop signal to backend accepting again; recovery: stop signal to the first commit "
                 "after the last failure")
    for w in windows:
        for message, count in w.errors:
            lines.append(f"  {w.name}: {count} x {message}")
    lines.append(f"rows acknowledged {acknowledged}, present {present}, committed but unacknowledged "
                 f"{in_doubt}, lost {lost}")
    return "\n".join(lines)


def test_pgpool_keeps_serving_through_backend_restarts_without_losing_writes(
        stack: DevStack, fault_stack: LocalDevStack, capsys: pytest.CaptureFixture[str]) -> None:
    local = fault_stack
    pgpool = local.pgpool("pgpool-faults")
    pgpool_pid = pgpool.pid
    user, password = stack.app_user, stack.passwords[stack.app_user]
    with pgpool.endpoint.connect(user, password, dbname=user) as conn:
        conn.execute(CREATE_WRITES_TABLE)
    local.cluster.wait_streaming()

    load = WriteLoad(local.workspace, pgpool.endpoint, user, password, dbname=user, lanes=LANES)
    faults = [("standby restart (fast shutdown)", local.cluster.standby, signal.SIGINT, 1),
              ("primary crash (immediate stop) + restart", local.cluster.primary, signal.SIGQUIT, 0)]
    timeline, statuses = [], {}
    load.start()
    try:
        load.wait_for_a_clean_run_per_lane(after=0)  # the load runs before the first fault
        for name, server, how, node in faults:
            began = time.time()
            server.stop(how)
            statuses[name] = node_status(pgpool, node)
            server.start()
            timeline.append((name, began, time.time()))
            # Every lane has reconnected and committed again, and its runs from before the fault have ended.
            load.wait_for_a_clean_run_per_lane(after=timeline[-1][2])
    finally:
        runs = load.stop()
    ends = [began for _, began, _ in timeline[1:]] + [max(r.ended for r in runs)]
    windows = [fault_window(name, runs, began, ready, end) for (name, began, ready), end in zip(timeline, ends)]

    present = dict(local.cluster.primary.query(f"SELECT run, count(*) FROM {WRITES_TABLE} GROUP BY run", dbname=user))
    acknowledged = sum(r.acknowledged for r in runs)
    lost = sum(max(0, r.acknowledged - present.get(r.run, 0)) for r in runs)
    in_doubt = sum(max(0, present.get(r.run, 0) - r.acknowledged) for r in runs)
    with capsys.disabled():
        print(report(str(local.install), windows, acknowledged, sum(present.values()), in_doubt, lost, statuses))

    assert pgpool.running and pgpool.pid == pgpool_pid, "Pgpool-II restarted or died"
    # DISALLOW_TO_FAILOVER: the stopped node is never detached, so it serves again once back
    assert set(statuses.values()) == {"up"}, statuses
    assert acknowledged > 0
    assert lost == 0, f"{lost} acknowledged rows are missing"
    for window in windows:
        assert window.recovery_s is not None and window.recovery_s < RECOVERY_BOUND_S, window
    last_ready = timeline[-1][2]
    lanes_back = {r.lane for r in runs if r.outcome == "completed" and r.started > last_ready}
    assert lanes_back == set(range(LANES)), "some lane never committed again after the last restart"
