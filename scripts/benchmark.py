#!/usr/bin/env python3
"""Benchmark (not a test): the same pgbench workloads through Pgpool-II running the program's
generated config, PostgreSQL directly, and PgBouncer in transaction mode; prints one table.

    make bench
    .venv/bin/python scripts/benchmark.py [--duration 8] [--rounds 3] [--clients 8] [--variant ...]

Everything runs on 127.0.0.1 with the data-plane test harness: a PostgreSQL 15 primary with a
streaming hot standby, set up from the program's init.sql and user.conf, scram-sha-256 for every
login. Clients use TLS (sslmode=require) on every path, as the dev stack's pool_hba.conf demands;
the servers accept TLS too, so Pgpool-II (ssl = on covers its backend connections) and PgBouncer
(server_tls_sslmode = require) encrypt their server side as well. --no-tls runs the program with
ssl = false and everything in clear text.

A --variant adds a Pgpool-II row: `LABEL:KEY=VALUE[,KEY=VALUE...]`. A camelCase KEY is a stack
config key (the program is run again with it, so the row is still generated config); a KEY with
an underscore is a pgpool.conf parameter set by hand on the generated file, marked as such. E.g.
    --variant 'statement LB:statementLevelLoadBalance=true'
    --variant 'serialized accept:serialize_accept=on,child_life_time=0'
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.dataplane.harness import Endpoint, PgBouncer, stopping  # noqa: E402
from tests.dataplane.load import PgbenchResult, pgbench  # noqa: E402
from tests.dataplane.local_stack import LocalDevStack  # noqa: E402
from tests.dataplane.stack_files import CONF_LINE, DevStack, dev_stack  # noqa: E402

WORKLOADS = {
    "select-only, persistent connections": ["-S"],
    "select-only, new connection per transaction (-C)": ["-S", "-C"],
}
DIRECT = "PostgreSQL direct"
REPORTED_SETTINGS = ("num_init_children", "max_pool", "statement_level_load_balance", "child_life_time",
                     "connection_life_time", "client_idle_limit", "reserved_connections", "ssl")


@dataclass(frozen=True)
class Variant:
    label: str
    config: dict[str, str]
    """Stack config overrides: the program generates this row's files."""
    conf_edits: dict[str, str]
    """pgpool.conf parameters set by hand on the generated file."""


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=8, help="seconds per pgbench run (default 8)")
    parser.add_argument("--clients", type=int, default=8, help="pgbench clients (default 8)")
    parser.add_argument("--jobs", type=int, default=2, help="pgbench threads (default 2)")
    parser.add_argument("--scale", type=int, default=10, help="pgbench scale factor (default 10)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs of every cell, interleaved; the median is shown (default 3)")
    parser.add_argument("--no-tls", dest="tls", action="store_false", help="run the program with ssl = false")
    parser.add_argument("--variant", type=parse_variant, action="append", default=[],
                        help="another Pgpool-II row, LABEL:KEY=VALUE[,KEY=VALUE...] (see above)")
    args = parser.parse_args()

    base_config = {} if args.tls else {"ssl": "false"}
    stack = dev_stack(**base_config)
    local = LocalDevStack(stack)
    started = time.monotonic()
    try:
        local.start_database(tls=args.tls)
        rows = run(local, stack, base_config, args)
    finally:
        local.close()
    print_table(rows, stack, args, time.monotonic() - started)


def run(local: LocalDevStack, stack: DevStack, base_config: dict[str, str],
        args: argparse.Namespace) -> dict[str, dict[str, list[PgbenchResult]]]:
    user, password = stack.app_user, stack.passwords[stack.app_user]
    sslmode = "require" if args.tls else "disable"
    primary = local.cluster.primary
    direct = Endpoint(primary.endpoint.port, sslmode)
    local.workspace.run(["pgbench", "-i", "-q", "-s", str(args.scale)], env=direct.libpq_env(user, password, user),
                        timeout=600)
    local.cluster.wait_streaming(timeout=300)

    targets: dict[str, Endpoint] = {DIRECT: direct}
    pgpool = local.pgpool("pgpool")
    targets[f"Pgpool-II, generated ({settings_summary(pgpool.files['pgpool.conf'].read_text())})"] = pgpool.endpoint
    for index, variant in enumerate(args.variant):
        variant_stack = dev_stack(**base_config, **variant.config)
        server = local.pgpool(f"pgpool-variant{index}", stack=variant_stack,
                              edit=edit_conf(variant.conf_edits) if variant.conf_edits else None)
        kind = "generated" if not variant.conf_edits else "hand-edited"
        targets[f"Pgpool-II, {variant.label} ({kind}: {describe(variant)})"] = server.endpoint
    scram = dict(primary.query("SELECT rolname, rolpassword FROM pg_authid WHERE rolname = %s", (user,)))
    tls = (stack.secret_files["tls.crt"], stack.secret_files["tls.key"]) if args.tls else None
    bouncer = PgBouncer(local.workspace, primary.endpoint, scram, pool_size=args.clients, tls=tls)
    targets["PgBouncer 1.18, transaction mode"] = bouncer.endpoint

    rows: dict[str, dict[str, list[PgbenchResult]]] = {w: {t: [] for t in targets} for w in WORKLOADS}
    with stopping(bouncer):
        bouncer.start()
        for endpoint in targets.values():  # warm caches: relcache, backend connections, page cache
            pgbench(local.workspace, endpoint, user, password, user, ["-n", "-S", "-c", str(args.clients), "-T", "2"])
        for _ in range(args.rounds):
            for workload, options in WORKLOADS.items():
                for target, endpoint in targets.items():
                    run_args = ["-n", "-c", str(args.clients), "-j", str(args.jobs), "-T", str(args.duration),
                                *options]
                    result = pgbench(local.workspace, endpoint, user, password, user, run_args)
                    rows[workload][target].append(result)
                    print(f"  {workload} | {target}: {result.tps:.0f} tps", file=sys.stderr)
    return rows


def settings_summary(conf: str) -> str:
    values = conf_values(conf)
    return (f"num_init_children {values['num_init_children']}, max_pool {values['max_pool']}, "
            f"statement_level_load_balance {values['statement_level_load_balance']}")


def describe(variant: Variant) -> str:
    return ", ".join(f"{k}={v}" for k, v in {**variant.config, **variant.conf_edits}.items())


def print_table(rows: dict[str, dict[str, list[PgbenchResult]]], stack: DevStack, args: argparse.Namespace,
                elapsed: float) -> None:
    conf = conf_values(stack.config_files["pgpool.conf"])
    pg_version = subprocess.run(["pgbench", "--version"], capture_output=True, text=True).stdout.strip()
    pgpool_version = subprocess.run(["/usr/sbin/pgpool", "--version"], capture_output=True,
                                    text=True).stderr.strip() or "pgpool"
    print()
    print(f"pgbench -c {args.clients} -j {args.jobs} -T {args.duration}, scale {args.scale}, "
          f"median of {args.rounds}; scram-sha-256, TLS {'on every path' if args.tls else 'off'}; "
          f"{os.cpu_count()} CPUs, {platform.machine()}; {pg_version}; {pgpool_version}")
    print("generated pgpool.conf: " + ", ".join(f"{k} = {conf.get(k, '-')}" for k in REPORTED_SETTINGS))
    width = max(len(t) for targets in rows.values() for t in targets)
    header = f"| {'workload':<48} | {'target':<{width}} | {'TPS':>8} | {'latency ms':>10} | {'vs direct':>9} |"
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    for workload, targets in rows.items():
        direct = statistics.median(r.tps for r in targets[DIRECT])
        for target, results in targets.items():
            tps = statistics.median(r.tps for r in results)
            latency = statistics.median(r.latency_ms for r in results)
            print(f"| {workload:<48} | {target:<{width}} | {tps:>8.0f} | {latency:>10.3f} | {tps / direct:>8.2f}x |")
    print(f"({elapsed:.0f} s in all)")


if __name__ == "__main__":
    main()
