"""pgbench as the load: one measured run, or lanes of numbered writes that survive backend restarts."""

from __future__ import annotations

import re
from collections import Counter
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.dataplane.harness import Endpoint, PostgresServer, Workspace, wait_until


@dataclass(frozen=True)
class PgbenchResult:
    tps: float
    latency_ms: float
    processed: int
    """Transactions that completed (committed or, for a read, answered)."""
    output: str


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text, re.MULTILINE)
    if not match:
        raise ValueError(f"pgbench output lacks {pattern!r}:\n{text}")
    return float(match.group(1))


def parse_pgbench(output: str) -> PgbenchResult:
    return PgbenchResult(
        tps=_number(r"^tps = ([0-9.]+)", output),
        latency_ms=_number(r"^latency average = ([0-9.]+) ms", output),
        processed=int(_number(r"^number of transactions actually processed: ([0-9]+)", output)),
        output=output,
    )


def pgbench(workspace: Workspace, endpoint: Endpoint, user: str, password: str, dbname: str,
            args: list[str], timeout: float = 600) -> PgbenchResult:
    """Run pgbench to completion against `endpoint`; any client error fails the run."""
    result = workspace.run(["pgbench", *args], env=endpoint.libpq_env(user, password, dbname), timeout=timeout,
                           check=False)
    if result.returncode != 0:
        raise RuntimeError(f"pgbench {' '.join(args)} against port {endpoint.port} exited {result.returncode}:\n"
                           f"{result.stdout}\n{result.stderr}")
    return parse_pgbench(result.stdout)


# --- numbered writes under faults ------------------------------------------------------------

WRITES_TABLE = "fault_writes"
WRITE_SCRIPT = f"""\
INSERT INTO {WRITES_TABLE} (run, client) VALUES (:run, :client_id);
SELECT count(*) FROM {WRITES_TABLE} WHERE run = :run;
"""
"""One write (autocommit, so it goes to the primary) and one load-balanced read per transaction."""
CREATE_WRITES_TABLE = (f"CREATE TABLE {WRITES_TABLE} (id bigserial PRIMARY KEY, run integer NOT NULL, "
                       f"client integer NOT NULL); CREATE INDEX ON {WRITES_TABLE} (run)")


@dataclass
class PgbenchRun:
    """One pgbench process of a lane: `acknowledged` rows were reported committed for `run`."""

    lane: int
    run: int
    started: float
    ended: float
    acknowledged: int
    outcome: str
    """completed; aborted (a transaction failed and pgbench's client stopped); refused (no connection)."""
    commit_times: list[float] = field(default_factory=list)
    error: str = ""
    """What the client was told, for a failed run (the first line pgbench printed)."""

    @property
    def failed(self) -> bool:
        return self.outcome != "completed"


class WriteLoad:
    """Lanes of single-client pgbench runs writing rows numbered by run id through `endpoint`.

    A run lasts `chunk` seconds; when its client fails (a backend went away) the lane starts the
    next run at once, so the load keeps going and every failure is counted. pgbench reports the
    transactions it completed, and logs each commit's time, so rows written can be checked
    against rows present and the outage measured. `new_connection_per_transaction` (pgbench -C)
    makes every transaction a session of its own, as short-lived clients do.
    """

    def __init__(self, workspace: Workspace, endpoint: Endpoint, user: str, password: str, dbname: str,
                 lanes: int = 4, chunk: int = 2, new_connection_per_transaction: bool = False, name: str = "writeload",
                 first_run: int = 0):
        self.workspace = workspace
        self.env = endpoint.libpq_env(user, password, dbname)
        self.lanes = lanes
        self.chunk = chunk
        self.options = ["-C"] if new_connection_per_transaction else []
        self.directory = workspace.directory(name)
        self.script = workspace.write(f"{name}/write.sql", WRITE_SCRIPT)
        self.runs: list[PgbenchRun] = []
        """Every run that has ended."""
        self.started: list[tuple[float, int, int]] = []
        """(start time, lane, run id) of every run, running or ended."""
        self._next_run = first_run
        """Run ids (the `run` column) start after this, so loads sharing the table stay apart."""
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for lane in range(self.lanes):
            thread = threading.Thread(target=self._lane, args=(lane,), name=f"{self.directory.name}-{lane}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> list[PgbenchRun]:
        """Let the running chunks finish, then return every run."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(self.chunk + 60)
        return sorted(self.runs, key=lambda r: r.started)

    def wait_for_a_clean_run_per_lane(self, after: float, timeout: float = 120) -> None:
        """Until every lane has ended a run it started after `after` with every transaction committed:
        each lane writes again, and whatever failed before is behind it."""
        def clean() -> bool:
            lanes = {r.lane for r in list(self.runs) if r.started > after and r.outcome == "completed"}
            return lanes == set(range(self.lanes))
        wait_until(f"{self.directory.name}: a clean run on every lane", clean, timeout=timeout, interval=0.2)

    def wait_for_a_commit_per_lane(self, primary: PostgresServer, dbname: str, timeout: float = 60) -> None:
        """Until the primary holds a row of every lane: each lane's session has committed (for lanes whose
        runs outlast the wait, as long sessions do)."""
        def committed() -> bool:
            lanes = {run: lane for _, lane, run in list(self.started)}
            present = primary.query(f"SELECT DISTINCT run FROM {WRITES_TABLE} WHERE run = ANY(%s)",
                                    (list(lanes),), dbname=dbname)
            return {lanes[run] for (run,) in present} == set(range(self.lanes))
        wait_until(f"{self.directory.name}: a commit on every lane", committed, timeout=timeout, interval=0.2)

    def _lane(self, lane: int) -> None:
        while not self._stopping.is_set():
            with self._lock:
                self._next_run += 1
                run = self._next_run
                self.started.append((time.time(), lane, run))
            result = self._run(lane, run)
            self.runs.append(result)
            if result.failed:
                time.sleep(0.05)

    def _run(self, lane: int, run: int) -> PgbenchRun:
        prefix = self.directory / f"run{run}"
        started = time.time()
        result = self.workspace.run(
            ["pgbench", "-n", "-c", "1", "-T", str(self.chunk), *self.options, "-f", str(self.script), "-D", f"run={run}",
             "-l", f"--log-prefix={prefix}"],
            env=self.env, timeout=self.chunk + 120, check=False,
        )
        commit_times = _logged_commit_times(self.directory, f"run{run}")
        processed = re.search(r"^number of transactions actually processed: ([0-9]+)", result.stdout, re.MULTILINE)
        return PgbenchRun(
            lane=lane, run=run, started=started, ended=time.time(),
            # A refused connection prints no summary: nothing was acknowledged.
            acknowledged=int(processed.group(1)) if processed else 0,
            # pgbench exits 1 when it cannot connect, 2 when a client aborted during the run
            outcome={0: "completed", 1: "refused"}.get(result.returncode, "aborted"),
            commit_times=commit_times,
            error=_first_message(result.stderr) if result.returncode != 0 else "",
        )


def _first_message(stderr: str) -> str:
    """The server's (or libpq's) message pgbench printed first, without pgbench's prefix and port."""
    lines = stderr.strip().splitlines() or ["(no message)"]
    return re.sub(r'port [0-9]+', "port N", lines[0].removeprefix("pgbench: error: "))


def _logged_commit_times(directory: Path, prefix: str) -> list[float]:
    """End times of the transactions pgbench logged (-l: `client tx latency script epoch usec`)."""
    times = []
    for log in directory.glob(f"{prefix}.*"):
        for line in log.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 6 and fields[2] not in ("failed", "skipped"):
                times.append(int(fields[4]) + int(fields[5]) / 1e6)
    return sorted(times)


@dataclass(frozen=True)
class FaultWindow:
    """What the load saw from a fault's start until the end of its observation window."""

    name: str
    backend_down_s: float
    """From the stop signal until the backend accepted connections again."""
    failed_transactions: int
    """Runs whose client aborted: each is one transaction that failed mid-way."""
    refused_connections: int
    """Runs that could not connect (the lanes retry every 50 ms, so this counts attempts)."""
    longest_gap_s: float
    """Longest time without any commit, on any lane."""
    recovery_s: float | None
    """From the stop signal to the first commit after the window's last failure: the time until
    the load ran clean again. None if it never did."""
    errors: tuple[tuple[str, int], ...]
    """What clients were told, with how many runs were told it, most frequent first."""


def fault_window(name: str, runs: list[PgbenchRun], start: float, backend_ready: float, end: float) -> FaultWindow:
    failed = [r for r in runs if r.failed and start <= r.ended <= end]
    commits = sorted(t for r in runs for t in r.commit_times if start <= t <= end)
    edges = [start, *commits, end]
    last_failure = max((r.ended for r in failed), default=start)
    after = [t for t in commits if t >= last_failure]
    return FaultWindow(
        name=name,
        backend_down_s=backend_ready - start,
        failed_transactions=sum(r.outcome == "aborted" for r in failed),
        refused_connections=sum(r.outcome == "refused" for r in failed),
        longest_gap_s=max(b - a for a, b in zip(edges, edges[1:])),
        recovery_s=after[0] - start if after else None,
        errors=tuple(Counter(r.error for r in failed).most_common()),
    )
