#!/usr/bin/env python3
"""Benchmark (not a test): what Pgpool-II on the program's generated files does for read
throughput, and what it costs; prints four tables.

    make bench
    .venv/bin/python scripts/benchmark.py [--duration 6] [--rounds 3] [--backend-cpus 0.1] [--variant ...]

Everything runs on 127.0.0.1 with the data-plane harness: a PostgreSQL 15 primary and two streaming
hot standbys (as postgresReplicas 3 deploys them), set up from the program's init.sql and user.conf,
scram-sha-256 for every login, TLS on every path unless a row says otherwise. The same pgbench
select-only workload runs with persistent connections and with a new connection per transaction (-C).

1. Backend-bound read scaling. Each PostgreSQL server gets a fixed CPU budget (a cgroup v1 CFS
   quota), as if it ran on a node of its own; HAProxy spreads connections over both standbys in
   turn, standing in for the read-only Service (kube-proxy also balances per connection). Pgpool-II
   runs the generated files with node 1 on that front, weights as generated (1 for the primary, 2
   for the read-only Service). Compared with the primary directly and with PgBouncer in front of
   the primary: TPS, the share of SELECTs each server answered against the configured weights, and
   the CPU each server and the proxy used, which shows where the bottleneck is.
2. The proxies' own cost: CPU time per 1,000 transactions of Pgpool-II and PgBouncer, each in a
   cpuacct group of its own, TLS on and off. It does not depend on how busy the machine is.
3. Proxy-bound: no budgets; client, proxy and both servers share the machine's cores (Pgpool-II's
   node 1 is the standby itself), so every CPU cycle the proxy spends is a cycle PostgreSQL lacks.
4. The query cache, under table 1's budgets: pgbench scripts of a few hot SELECTs, then with a tenth of
   the transactions pgbench's tpcb-like, then tpcb-like alone (every transaction writes the tables it
   reads), against the primary directly, Pgpool-II as generated, and Pgpool-II generated with
   queryCache shmem; with the cache's hit ratio and Pgpool-II's CPU per 1,000 transactions.

--pgpool picks the Pgpool-II the rows run (tests/dataplane/installs.py): 4.3, Debian 12's package, by default;
4.6 or 4.7, the pgpool/pgpool image's root for 4.6.1 or 4.7.2. The program renders the files for that release.

A --variant adds a Pgpool-II row to every table: `LABEL:KEY=VALUE[,KEY=VALUE...]`. A camelCase KEY
is a stack config key (the program is run again with it, so the row is still generated config); a
KEY with an underscore is a pgpool.conf parameter set by hand on the generated file, marked as such.
    --variant 'statement LB:statementLevelLoadBalance=true'
    --variant 'no table checks:check_temp_table=none,check_unlogged_table=off'
    --pgpool 4.7 --variant 'dynamic:pgpoolProcessManagementMode=dynamic'

Needs root (the cgroups) and the Debian packages of scripts/install_test_packages.sh.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from psycopg.rows import dict_row  # noqa: E402

from components.settings import DatabaseSettings  # noqa: E402
from tests.dataplane.bench_stack import SERVERS, BenchStack  # noqa: E402
from tests.dataplane.cpu_groups import PERIOD_US, CgroupError, CpuGroups, CpuSample  # noqa: E402
from tests.dataplane.harness import Endpoint, PgBouncer, wait_until  # noqa: E402
from tests.dataplane.installs import INSTALLS  # noqa: E402
from tests.dataplane.load import PgbenchResult, pgbench  # noqa: E402
from tests.dataplane.stack_files import CONF_LINE, DevStack, dev_stack  # noqa: E402

WORKLOADS = {"persistent": ["-S"], "-C": ["-S", "-C"]}
"""pgbench select-only: persistent connections; a new connection per transaction."""
DIRECT, PGPOOL, PGBOUNCER = "PostgreSQL direct", "Pgpool-II", "PgBouncer"
REPORTED_SETTINGS = ("num_init_children", "max_pool", "statement_level_load_balance", "check_temp_table",
                     "check_unlogged_table", "child_life_time", "reserved_connections", "ssl")
STATS_FLUSH_S = 15
"""A PostgreSQL 15 backend that has gone idle publishes its statistics within 10 s (PGSTAT_IDLE_INTERVAL)."""
GOAL_SCALING = 2.5
GOAL_SHARE_POINTS = 3.0
GOAL_NEW_CONNECTIONS = 1.0
GOAL_QUERY_CACHE = 3.0
"""Hot SELECTs through Pgpool-II with the query cache against Pgpool-II without it, backend-bound."""
TABLES = ("scaling", "cost", "proxy", "cache")
HOT_SELECTS = """\\set aid random(1, 1000)
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
\\set tid random(1, 10 * :scale)
SELECT tbalance FROM pgbench_tellers WHERE tid = :tid;
\\set bid random(1, :scale)
SELECT bbalance FROM pgbench_branches WHERE bid = :bid;
"""
"""Three SELECTs on hot rows: 1,000 accounts, every teller, every branch."""
QUERY_CACHE_STALE_S = "30"
"""queryCacheMaxStaleSeconds of the benchmark's cached Pgpool-II."""


@dataclass(frozen=True)
class Variant:
    label: str
    config: dict[str, str]
    """Stack config overrides: the program generates this row's files."""
    conf_edits: dict[str, str]
    """pgpool.conf parameters set by hand on the generated file."""

    def describe(self) -> str:
        kind = "hand-edited" if self.conf_edits else "generated"
        return f"{self.label} ({kind}: {', '.join(f'{k}={v}' for k, v in {**self.config, **self.conf_edits}.items())})"


def parse_variant(text: str) -> Variant:
    label, sep, pairs = text.partition(":")
    if not sep or not label or not pairs:
        raise argparse.ArgumentTypeError(f"--variant {text!r}: use LABEL:KEY=VALUE[,KEY=VALUE...]")
    config, edits = {}, {}
    for pair in pairs.split(","):
        key, sep, value = pair.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", key):
            raise argparse.ArgumentTypeError(f"--variant {text!r}: {pair!r} is not KEY=VALUE")
        (edits if "_" in key else config)[key] = value
    return Variant(label, config, edits)


def edit_conf(edits: dict[str, str]):
    """A files editor setting pgpool.conf parameters (replacing a line, or appending one)."""

    def apply(files: dict[str, str]) -> None:
        lines, done = [], set()
        for line in files["pgpool.conf"].splitlines():
            match = CONF_LINE.match(line)
            if match and match["name"] in edits:
                line = f"{match['name']} = {edits[match['name']]}"
                done.add(match["name"])
            lines.append(line)
        lines += [f"{key} = {value}" for key, value in edits.items() if key not in done]
        files["pgpool.conf"] = "\n".join(lines) + "\n"

    return apply


def conf_values(text: str) -> dict[str, str]:
    return {m["name"]: m["value"].strip("'") for m in map(CONF_LINE.match, text.splitlines()) if m}


# --- measuring -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where pgbench connects, and what runs there."""

    label: str
    kind: str
    """DIRECT, PGPOOL or PGBOUNCER."""
    endpoint: Endpoint
    group: str | None = None
    """The proxy's CPU group (None for direct)."""
    variant: bool = False
    """A --variant row rather than the program's defaults."""
    query_cache: bool = False
    """Pgpool-II with its query cache on (its hit counters are read around each run)."""

    @property
    def tls(self) -> bool:
        return self.endpoint.sslmode != "disable"


@dataclass
class Cell:
    """One pgbench run against one target."""

    result: PgbenchResult
    seconds: float
    cpu: dict[str, CpuSample]
    """CPU used by each group during the run."""
    client_cpu_s: float
    """CPU of pgbench itself."""
    machine_busy_s: float
    """CPU time the whole machine spent busy (every process, neighbours included)."""
    selects: dict[str, int] = field(default_factory=dict)
    """SELECTs each PostgreSQL server answered (Pgpool-II behind the read-only front only)."""
    cache: tuple[float, float] = (0.0, 0.0)
    """Hits and SELECTs the query cache counted during the run (SHOW pool_cache; pgbench's simple protocol
    counts each SELECT once, a hit or not)."""

    def cores(self, group: str) -> float:
        return self.cpu[group].usage_ns / 1e9 / self.seconds

    def ms_per_1000(self, cpu_s: float) -> float:
        return cpu_s * 1e6 / self.result.processed


def machine_busy_jiffies() -> int:
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4]  # all but idle and iowait


class Bench:
    """Runs pgbench against targets and measures every CPU group around each run."""

    def __init__(self, local: BenchStack, args: argparse.Namespace):
        self.local = local
        self.args = args
        self.user = local.stack.app_user
        self.password = local.stack.passwords[self.user]
        self.pending: tuple[Cell, dict[str, int], int] | None = None
        """A Pgpool-II cell waiting for the standbys to publish their statistics."""

    def pgbench(self, target: Target, options: list[str], clients: int, seconds: int) -> PgbenchResult:
        run_args = ["-n", "-c", str(clients), "-j", str(self.args.jobs), "-T", str(seconds), *options]
        return pgbench(self.local.workspace, target.endpoint, self.user, self.password, self.user, run_args)

    def warm(self, target: Target, clients: int) -> None:
        """Relation caches, pooled backend connections, page cache."""
        self.pgbench(target, ["-S"], clients, 2)

    def run(self, target: Target, workload: str, clients: int, count_selects: bool = False,
            options: list[str] | None = None) -> Cell:
        """pgbench `options` (WORKLOADS[workload] unless given) against `target`, measured."""
        groups = self.local.groups.groups
        if count_selects:
            self.settle()
            standbys_before, nodes_before = self.standby_selects(), self.node_selects(target)
        cache_before = self.cache_counts(target)
        before = {name: group.sample() for name, group in groups.items()}
        usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy_before, started = machine_busy_jiffies(), time.monotonic()
        result = self.pgbench(target, options or WORKLOADS[workload], clients, self.args.duration)
        seconds = time.monotonic() - started
        busy = (machine_busy_jiffies() - busy_before) / os.sysconf("SC_CLK_TCK")
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        cell = Cell(
            result=result, seconds=seconds, cpu={name: group.sample() - before[name] for name, group in groups.items()},
            client_cpu_s=(usage.ru_utime + usage.ru_stime) - (usage_before.ru_utime + usage_before.ru_stime),
            machine_busy_s=busy,
            cache=tuple(after - before for after, before in zip(self.cache_counts(target), cache_before)),
        )
        if count_selects:
            nodes = [after - before for after, before in zip(self.node_selects(target), nodes_before)]
            cell.selects["primary"] = nodes[0]
            self.pending = (cell, standbys_before, nodes[1])
        print(f"  {workload:<10} | {target.label}: {result.tps:.0f} tps", file=sys.stderr)
        return cell

    def cache_counts(self, target: Target) -> tuple[float, float]:
        """(num_cache_hits, num_selects) of the query cache of a Pgpool-II that has it on; zeros for others."""
        if not target.query_cache:
            return 0.0, 0.0
        with target.endpoint.connect(self.user, self.password, self.user, prepare_threshold=None) as conn:
            hits, selects = conn.execute("SHOW pool_cache").fetchone()[:2]
        return float(hits), float(selects)

    def node_selects(self, target: Target) -> list[int]:
        """select_cnt of each Pgpool-II node (SHOW pool_nodes), node 0 first."""
        with target.endpoint.connect(self.user, self.password, self.user, row_factory=dict_row) as conn:
            return [int(row["select_cnt"]) for row in conn.execute("SHOW pool_nodes")]

    def standby_selects(self) -> dict[str, int]:
        """pgbench's SELECTs each standby answered so far (index scans of pgbench_accounts)."""
        query = "SELECT idx_scan FROM pg_stat_user_tables WHERE relname = 'pgbench_accounts'"
        return {name: server.query(query, dbname=self.user)[0][0]
                for name, server in self.local.servers.items() if name != "primary"}

    def settle(self) -> None:
        """Complete the pending cell's counts once the standbys' statistics add up to what
        Pgpool-II sent to node 1 (pgbench's one `count(*)` of pgbench_branches aside)."""
        if self.pending is None:
            return
        cell, before, node1 = self.pending
        self.pending = None

        def deltas():
            return {name: count - before[name] for name, count in self.standby_selects().items()}

        try:
            counts = wait_until("standby statistics", lambda: (d := deltas()) and sum(d.values()) >= node1 - 1 and d,
                                timeout=STATS_FLUSH_S, interval=0.5)
        except TimeoutError:
            counts = deltas()
            print(f"  (standbys report {sum(counts.values())} SELECTs, Pgpool-II sent {node1})", file=sys.stderr)
        cell.selects.update(counts)


# --- the run ---------------------------------------------------------------------------------

Rows = dict[str, dict[Target, list[Cell]]]
"""Workload -> target -> one cell per round."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=6, help="seconds per pgbench run (default 6)")
    parser.add_argument("--clients", type=int, default=8, help="pgbench clients (default 8)")
    parser.add_argument("--jobs", type=int, default=2, help="pgbench threads (default 2)")
    parser.add_argument("--scale", type=int, default=10, help="pgbench scale factor (default 10)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs of every cell, interleaved; medians are shown (default 3)")
    parser.add_argument("--backend-cpus", type=float, default=0.1,
                        help="CPU budget of each PostgreSQL server in the backend-bound table (default 0.1)")
    parser.add_argument("--tables", default=",".join(TABLES),
                        help=f"which tables to measure: {', '.join(TABLES)} (default all four)")
    parser.add_argument("--pgpool", choices=sorted(INSTALLS), default="4.3",
                        help="the Pgpool-II series the rows run (default 4.3, Debian 12's package)")
    parser.add_argument("--variant", type=parse_variant, action="append", default=[],
                        help="another Pgpool-II row, LABEL:KEY=VALUE[,KEY=VALUE...] (see above)")
    args = parser.parse_args()
    tables = set(args.tables.split(","))
    if not tables <= set(TABLES):
        parser.error(f"--tables {args.tables}: use {', '.join(TABLES)}")
    if not 0 < args.backend_cpus <= os.cpu_count():
        parser.error(f"--backend-cpus {args.backend_cpus}: use a number above 0 and at most {os.cpu_count()}")

    plan = Plan(args, tables)
    started = time.monotonic()
    # A SIGTERM (a CI timeout) unwinds like Ctrl-C, so the finally blocks stop every server and
    # remove the cgroups.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        groups = CpuGroups()
    except CgroupError as error:
        sys.exit(f"benchmark: {error}")
    with groups:
        local = BenchStack(plan.base, groups, plan.install)
        try:
            local.start_database(tls=True)
            scaling, bound = measure(local, plan)
            cached = measure_query_cache(local, plan) if "cache" in tables else {}
        finally:
            local.close()
    print_header(plan)
    if scaling:
        print_scaling(scaling, plan)
    if "cost" in tables:
        print_cost(bound)
    if "proxy" in tables:
        print_proxy_bound(bound, args)
    if cached:
        print_query_cache(cached, plan)
    print_goals(scaling, bound, plan, cached)
    print(f"({time.monotonic() - started:.0f} s in all)")


@dataclass(frozen=True)
class PgpoolConfig:
    label: str
    stack: DevStack
    edits: dict[str, str]
    """pgpool.conf parameters set by hand on the generated file."""
    variant: bool = True
    """A --variant rather than the program's defaults."""


class Plan:
    """The tables to measure, and the stacks of every Pgpool-II instance they need.

    Every instance may hold numInitChildren * maxPool connections to the primary, so the run raises
    postgresMaxConnections (the database's max_connections; nothing in Pgpool-II's files changes)
    until they all fit, PgBouncer's pools and the direct clients too.
    """

    def __init__(self, args: argparse.Namespace, tables: set[str]):
        self.args = args
        self.tables = tables
        self.load_at_start = os.getloadavg()
        self.install = INSTALLS[args.pgpool]()
        image = {"pgpoolImage": self.install.image}
        overrides = [image, *({**image, **variant.config} for variant in args.variant)]
        instances = [dev_stack(**config).settings.pgpool for config in overrides]
        per_table = sum(p.num_init_children * p.max_pool for p in instances)
        pgpools = per_table * (("scaling" in tables) + bool(tables & {"cost", "proxy"}))
        pgpools += instances[0].num_init_children * instances[0].max_pool * (("cost" in tables) + 2 * ("cache" in tables))
        self.max_connections = max(DatabaseSettings.max_connections,
                                   pgpools + 4 * args.clients + 20)
        common = {**image, "postgresMaxConnections": str(self.max_connections)}
        self.base = dev_stack(**common)
        self.clear = dev_stack(**common, ssl="false")
        self.cache = dev_stack(**common, queryCache="shmem", queryCacheMaxStaleSeconds=QUERY_CACHE_STALE_S)
        self.pgpools = [PgpoolConfig("generated", self.base, {}, variant=False)] + [
            PgpoolConfig(variant.describe(), dev_stack(**common, **variant.config), variant.conf_edits)
            for variant in args.variant]


def measure(local: BenchStack, plan: Plan) -> tuple[Rows, Rows]:
    args, stack = plan.args, plan.base
    user = stack.app_user
    primary = local.cluster.primary
    direct = Endpoint(primary.endpoint.port, "require")
    local.workspace.run(["pgbench", "-i", "-q", "-s", str(args.scale)],
                        env=direct.libpq_env(user, stack.passwords[user], user), timeout=600)
    local.wait_streaming()
    read_only_port = local.read_only.endpoint.port
    scram = dict(primary.query("SELECT rolname, rolpassword FROM pg_authid WHERE rolname = %s", (user,)))
    tls = (stack.secret_files["tls.crt"], stack.secret_files["tls.key"])

    def pgpool(name: str, config: PgpoolConfig, replica_port: int | None = None) -> Target:
        server = local.pgpool(name, stack=config.stack, edit=edit_conf(config.edits) if config.edits else None,
                              replica_port=replica_port)
        local.group(name).add_tree(server.pid)
        return Target(f"{PGPOOL}, {config.label}", PGPOOL, server.endpoint, name, variant=config.variant)

    def bouncer(name: str, label: str, with_tls: bool, pool_size: int) -> Target:
        service = PgBouncer(local.workspace, primary.endpoint, scram, pool_size=pool_size,
                            tls=tls if with_tls else None, name=name)
        local.start(service, name)
        return Target(label, PGBOUNCER, service.endpoint, name)

    bench = Bench(local, args)
    scaling: Rows = {}
    if "scaling" in plan.tables:
        targets = [Target(DIRECT, DIRECT, direct),
                   bouncer("pgbouncer-scaling", f"{PGBOUNCER}, transaction mode, to the primary", True,
                           args.clients)]
        targets += [pgpool(f"pgpool-scaling{i}", config, read_only_port) for i, config in enumerate(plan.pgpools)]
        for server in SERVERS:
            local.group(server).limit(args.backend_cpus)
        try:
            scaling = run_rounds(bench, targets, args.clients, args.rounds, count_selects=True)
        finally:
            for server in SERVERS:
                local.group(server).limit(None)
    bound: Rows = {}
    if plan.tables & {"cost", "proxy"}:
        targets = [Target(DIRECT, DIRECT, direct)]
        targets += [pgpool(f"pgpool{i}", config) for i, config in enumerate(plan.pgpools)]
        targets.append(bouncer("pgbouncer", f"{PGBOUNCER}, transaction mode", True, args.clients))
        if "cost" in plan.tables:
            targets += [Target(DIRECT, DIRECT, Endpoint(primary.endpoint.port, "disable")),
                        pgpool("pgpool-clear", PgpoolConfig("generated", plan.clear, {}, variant=False)),
                        bouncer("pgbouncer-clear", f"{PGBOUNCER}, transaction mode", False, args.clients)]
        bound = run_rounds(bench, targets, args.clients, args.rounds)
    return scaling, bound


def measure_query_cache(local: BenchStack, plan: Plan) -> Rows:
    """Table 4: hot SELECTs, with some writes, and write-heavy, under table 1's budgets, against the primary,
    Pgpool-II as generated and Pgpool-II generated with the query cache (each behind the read-only front)."""
    args, user = plan.args, plan.base.app_user
    hot = local.workspace.write("bench/hot-selects.sql", HOT_SELECTS)
    workloads = {
        "hot SELECTs": ["-f", str(hot)],
        "hot SELECTs + 1/10 tpcb-like": ["-f", f"{hot}@9", "-b", "tpcb-like@1"],
        "tpcb-like": ["-b", "tpcb-like"],
    }
    targets = [Target(DIRECT, DIRECT, Endpoint(local.cluster.primary.endpoint.port, "require"))]
    for name, stack, label in (("pgpool-uncached", plan.base, "generated"),
                               ("pgpool-cached", plan.cache, f"queryCache shmem, {QUERY_CACHE_STALE_S} s")):
        server = local.pgpool(name, stack=stack, replica_port=local.read_only.endpoint.port)
        local.group(name).add_tree(server.pid)
        targets.append(Target(f"{PGPOOL}, {label}", PGPOOL, server.endpoint, name,
                              query_cache=stack.settings.pgpool.query_cache.enabled))
    for server in SERVERS:
        local.group(server).limit(args.backend_cpus)
    try:
        return run_rounds(Bench(local, args), targets, args.clients, args.rounds, workloads=workloads)
    finally:
        for server in SERVERS:
            local.group(server).limit(None)


def run_rounds(bench: Bench, targets: list[Target], clients: int, rounds: int, count_selects: bool = False,
               workloads: dict[str, list[str]] = WORKLOADS) -> Rows:
    """Every target and workload `rounds` times, interleaved so that a busy spell of the machine
    hits every target alike, each round starting one target later. When SELECTs are counted,
    Pgpool-II runs first in every round instead: while the others run (they never reach a
    standby), the standbys publish the statistics its counts come from."""
    order = sorted(targets, key=lambda t: t.kind != PGPOOL)
    rows: Rows = {workload: {target: [] for target in order} for workload in workloads}
    for target in order:
        bench.warm(target, clients)
    for round_ in range(rounds):
        shift = 0 if count_selects else round_ % len(order)
        for workload, options in workloads.items():
            for target in order[shift:] + order[:shift]:
                counted = count_selects and target.kind == PGPOOL
                rows[workload][target].append(bench.run(target, workload, clients, counted, options))
    bench.settle()
    return rows


# --- tables ----------------------------------------------------------------------------------


def median(values) -> float:
    return statistics.median(list(values))


def print_header(plan: Plan) -> None:
    args = plan.args
    conf = conf_values(plan.base.config_files["pgpool.conf"])
    pg_version = subprocess.run(["pgbench", "--version"], capture_output=True, text=True).stdout.strip()
    pgpool_version = plan.install.version
    print()
    print(f"{os.cpu_count()} CPU cores ({platform.machine()}); load average (1, 5, 15 min) "
          f"{load_average(plan.load_at_start)} at the start, {load_average(os.getloadavg())} at the end")
    print(f"{pg_version}; {pgpool_version}; HAProxy {haproxy_version()}")
    print(f"pgbench -S -j {args.jobs} -T {args.duration}, scale {args.scale}, median of {args.rounds} interleaved "
          f"rounds; scram-sha-256; TLS on every path unless the row says otherwise")
    print("generated pgpool.conf: " + ", ".join(f"{k} = {conf.get(k, '(not set)')}" for k in REPORTED_SETTINGS))
    print(f"PostgreSQL max_connections {plan.max_connections} (postgresMaxConnections, so that every Pgpool-II "
          "instance of the run fits; Pgpool-II's files do not change with it)")


def load_average(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.1f}" for v in values)


def haproxy_version() -> str:
    text = subprocess.run(["/usr/sbin/haproxy", "-v"], capture_output=True, text=True).stdout
    match = re.search(r"version (\S+)", text)
    return match[1] if match else "?"


def markdown(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.rjust(w) if c[:1].isdigit() else c.ljust(w) for c, w in zip(row, widths)) + " |")


def weights(stack: DevStack) -> dict[str, float]:
    """Configured share of SELECTs per server: node 0's weight for the primary, node 1's split
    evenly over the standbys behind the read-only front."""
    w0, w1 = stack.settings.pgpool.backend_weight0, stack.settings.pgpool.backend_weight1
    standbys = len(SERVERS) - 1
    return {"primary": w0 / (w0 + w1), **{s: w1 / (w0 + w1) / standbys for s in SERVERS[1:]}}


def shares(cells: list[Cell]) -> dict[str, float]:
    """Share of SELECTs per server over every round."""
    totals = {server: sum(c.selects.get(server, 0) for c in cells) for server in SERVERS}
    return {server: count / max(1, sum(totals.values())) for server, count in totals.items()}


def print_scaling(rows: Rows, plan: Plan) -> None:
    args, stack = plan.args, plan.base
    budget = args.backend_cpus
    print()
    print(f"1. Backend-bound reads: each PostgreSQL server capped at {budget:g} CPU (CFS quota "
          f"{max(1000, round(budget * PERIOD_US))} us per {PERIOD_US} us), pgbench -c {args.clients}. "
          f"Pgpool-II node 1 = HAProxy round robin over standby1 and standby2.")
    target = " / ".join(f"{100 * w:.1f}" for w in weights(stack).values())
    header = ["workload", "target", "TPS", "latency ms", "vs direct", f"SELECTs % P/S1/S2 (weights {target})",
              "servers' CPU % of budget P/S1/S2", "proxy cores", "machine busy cores"]
    table = []
    for workload, targets in rows.items():
        direct = median(c.result.tps for t, cells in targets.items() if t.kind == DIRECT for c in cells)
        for target, cells in targets.items():
            tps = median(c.result.tps for c in cells)
            used = " / ".join(f"{100 * median(c.cores(s) for c in cells) / budget:.0f}" for s in SERVERS)
            share = " / ".join(f"{100 * v:.1f}" for v in shares(cells).values()) if target.kind == PGPOOL else "-"
            proxy = f"{median(c.cores(target.group) for c in cells):.2f}" if target.group else "-"
            busy = f"{median(c.machine_busy_s / c.seconds for c in cells):.2f}"
            table.append([workload, target.label, f"{tps:.0f}", f"{median(c.result.latency_ms for c in cells):.2f}",
                          f"{tps / direct:.2f}x", share, used, proxy, busy])
    markdown(header, table)


def print_cost(rows: Rows) -> None:
    print()
    print("2. CPU per 1,000 transactions (ms), from cpuacct: the proxy's own; PostgreSQL's (all servers) and "
          "pgbench's for scale. Independent of how busy the machine is.")
    header = ["workload", "TLS", "target", "proxy ms", "PostgreSQL ms", "pgbench ms", "TPS"]
    table = []
    for workload, targets in rows.items():
        for target in sorted(targets, key=lambda t: (not t.tls, t.kind != DIRECT)):
            cells = targets[target]
            proxy = f"{median(c.ms_per_1000(c.cpu[target.group].usage_ns / 1e9) for c in cells):.1f}" \
                if target.group else "-"
            postgres = median(c.ms_per_1000(sum(c.cpu[s].usage_ns for s in SERVERS) / 1e9) for c in cells)
            client = median(c.ms_per_1000(c.client_cpu_s) for c in cells)
            table.append([workload, "on" if target.tls else "off", target.label, proxy, f"{postgres:.1f}",
                          f"{client:.1f}", f"{median(c.result.tps for c in cells):.0f}"])
    markdown(header, table)


def print_proxy_bound(rows: Rows, args: argparse.Namespace) -> None:
    print()
    print(f"3. Proxy-bound: no budgets, pgbench -c {args.clients}; client, proxy and PostgreSQL share the cores "
          "(Pgpool-II node 1 = standby1).")
    header = ["workload", "target", "TPS", "latency ms", "vs direct", "proxy cores", "machine busy cores"]
    table = []
    for workload, targets in rows.items():
        tls_targets = {t: cells for t, cells in targets.items() if t.tls}
        direct = median(c.result.tps for t, cells in tls_targets.items() if t.kind == DIRECT for c in cells)
        for target, cells in tls_targets.items():
            tps = median(c.result.tps for c in cells)
            proxy = f"{median(c.cores(target.group) for c in cells):.2f}" if target.group else "-"
            table.append([workload, target.label, f"{tps:.0f}", f"{median(c.result.latency_ms for c in cells):.2f}",
                          f"{tps / direct:.2f}x", proxy, f"{median(c.machine_busy_s / c.seconds for c in cells):.2f}"])
    markdown(header, table)


def hit_ratio(cells: list[Cell]) -> float:
    """Hits over every SELECT the cache saw (pgbench's simple protocol: num_selects counts the misses)."""
    hits, misses = (sum(c.cache[i] for c in cells) for i in (0, 1))
    return hits / (hits + misses) if hits + misses else 0.0


def print_query_cache(rows: Rows, plan: Plan) -> None:
    args = plan.args
    print()
    print(f"4. Query cache, backend-bound: each PostgreSQL server capped at {args.backend_cpus:g} CPU, pgbench -c "
          f"{args.clients}, scale {args.scale}; hot SELECTs: 1,000 accounts, {10 * args.scale} tellers, "
          f"{args.scale} branches. Pgpool-II node 1 = HAProxy round robin over both standbys.")
    header = ["workload", "target", "TPS", "latency ms", "vs direct", "vs Pgpool-II without the cache",
              "cache hit ratio", "servers' CPU % of budget P/S1/S2", "proxy cores", "proxy ms per 1,000"]
    table = []
    for workload, targets in rows.items():
        tps = {t: median(c.result.tps for c in cells) for t, cells in targets.items()}
        direct = next(v for t, v in tps.items() if t.kind == DIRECT)
        uncached = next(v for t, v in tps.items() if t.kind == PGPOOL and not t.query_cache)
        for target, cells in targets.items():
            used = " / ".join(f"{100 * median(c.cores(s) for c in cells) / args.backend_cpus:.0f}" for s in SERVERS)
            proxy = target.group is not None
            table.append([
                workload, target.label, f"{tps[target]:.0f}", f"{median(c.result.latency_ms for c in cells):.2f}",
                f"{tps[target] / direct:.2f}x", f"{tps[target] / uncached:.2f}x" if target.kind == PGPOOL else "-",
                f"{hit_ratio(cells):.3f}" if target.query_cache else "-", used,
                f"{median(c.cores(target.group) for c in cells):.2f}" if proxy else "-",
                f"{median(c.ms_per_1000(c.cpu[target.group].usage_ns / 1e9) for c in cells):.1f}" if proxy else "-"])
    markdown(header, table)


def query_cache_gain(rows: Rows) -> float:
    """Hot SELECTs: Pgpool-II with the query cache against Pgpool-II without it (TPS)."""
    tps = {t.query_cache: median(c.result.tps for c in cells) for t, cells in rows["hot SELECTs"].items()
           if t.kind == PGPOOL}
    return tps[True] / tps[False]


def print_goals(scaling: Rows, bound: Rows, plan: Plan, cached: Rows) -> None:
    stack = plan.base
    print()
    print("Goals (generated Pgpool-II):")

    def generated(rows: Rows, workload: str, tls: bool = True) -> tuple[list[Cell], float]:
        targets = rows[workload]
        pgpool = next(c for t, c in targets.items() if t.kind == PGPOOL and t.tls == tls and not t.variant)
        direct = median(c.result.tps for t, cells in targets.items() if t.kind == DIRECT and t.tls == tls
                        for c in cells)
        return pgpool, median(c.result.tps for c in pgpool) / direct

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    if scaling:
        cells, ratio = generated(scaling, "persistent")
        print(f"- backend-bound, persistent: {ratio:.2f}x direct (goal {GOAL_SCALING}x, ideal 3x): "
              f"{verdict(ratio >= GOAL_SCALING)}")
        got, wanted = shares(cells), weights(stack)
        worst = max(abs(got[s] - wanted[s]) * 100 for s in SERVERS)
        print(f"- SELECT shares {' / '.join(f'{100 * got[s]:.1f}' for s in SERVERS)} % against weights "
              f"{' / '.join(f'{100 * wanted[s]:.1f}' for s in SERVERS)} %: at most {worst:.1f} points off "
              f"(goal {GOAL_SHARE_POINTS:g}): {verdict(worst <= GOAL_SHARE_POINTS)}")
    if bound:
        for workload in WORKLOADS:
            for tls in (True, False):
                if not any(t.tls == tls for t in bound[workload]):
                    continue
                cost = {}
                for kind in (PGPOOL, PGBOUNCER):
                    target, cells = next((t, c) for t, c in bound[workload].items()
                                         if t.kind == kind and t.tls == tls and not t.variant)
                    cost[kind] = median(c.ms_per_1000(c.cpu[target.group].usage_ns / 1e9) for c in cells)
                print(f"- proxy CPU, {workload}, TLS {'on' if tls else 'off'}: Pgpool-II {cost[PGPOOL]:.1f} ms per "
                      f"1,000 transactions, PgBouncer {cost[PGBOUNCER]:.1f} ({cost[PGPOOL] / cost[PGBOUNCER]:.1f}x)")
        _, ratio = generated(bound, "-C")
        print(f"- proxy-bound, -C: {ratio:.2f}x direct (goal {GOAL_NEW_CONNECTIONS:g}x): "
              f"{verdict(ratio >= GOAL_NEW_CONNECTIONS)}")
    if cached:
        gain = query_cache_gain(cached)
        print(f"- query cache, hot SELECTs, backend-bound: {gain:.2f}x Pgpool-II without it (goal "
              f"{GOAL_QUERY_CACHE:g}x): {verdict(gain >= GOAL_QUERY_CACHE)}")


if __name__ == "__main__":
    main()
