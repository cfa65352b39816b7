"""pgpool2_exporter, run as its image runs it on the environment of the rendered Deployment and
Secrets, scrapes this Pgpool-II as the monitoring user; a real Prometheus loads the program's alert
rules, scrapes the exporter and evaluates every rule; every pgpool2_* series the rules and the
Grafana dashboard name is one the exporter exposes, with the labels they use; the exporter's login
follows pool_hba.conf and TLS, and a wrong monitor password neither kills it nor hides it.

Debian's Prometheus has no Kubernetes discovery, so the exporter is a static target carrying the
three labels the program's endpoints job (and a ServiceMonitor) gives it: namespace, service, pod.
The rules select on exactly those.
"""

from __future__ import annotations

import math
import re
import urllib.error
from datetime import datetime
from pathlib import Path
from typing import Iterator

import promql_parser
import pytest
import yaml
from psycopg import sql

from tests.dataplane.harness import Exporter, Prometheus, Workspace, stopping, wait_until
from tests.dataplane.installs import Identity
from tests.dataplane.local_stack import LocalDevStack, StackPgpool
from tests.dataplane.stack_files import DevStack, dev_stack

SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
EXPORTER_LOCAL_ENV = ("PGPOOL_SERVICE_PORT",)
"""The only exporter variable the local run rewrites (the container's pgpool port is a free one here)."""
RETRY_LOG = "Sleeping for 5 seconds before trying to connect again"
"""What pgpool2_exporter logs each time its login at start fails; it has not opened its port yet."""
DASHBOARD_VARIABLES = {"$__rate_interval": "1m"}
"""Grafana's values for the variables the dashboard's pgpool2_* queries use."""
COMPARISONS = {"==", "!=", ">", "<", ">=", "<="}
GUARDS = {"and", "unless"}
"""Set operators whose right side only decides which series of the left side an alert keeps."""


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    found = []
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and match["name"] == name:
            found.append((dict(LABEL.findall(match["labels"] or "")), float(match["value"])))
    return found


def target_labels(stack: DevStack, pod: str = "") -> dict[str, str]:
    name = stack.settings.pgpool.name
    return {"namespace": stack.settings.namespace, "service": f"{name}-metrics", "pod": pod or f"{name}-local"}


def prometheus_config(exporter: Exporter, rules: Path, labels: dict[str, str]) -> str:
    return yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [{
            "job_name": "pgpool-exporter",
            "static_configs": [{"targets": [exporter.listen_address], "labels": labels}],
        }],
    })


def watching(workspace: Workspace, stack: DevStack, exporter: Exporter, labels: dict[str, str]) -> Prometheus:
    """A Prometheus (not started) with the program's rules, scraping `exporter` as a target labelled `labels`."""
    rules = workspace.write("prometheus/rules/pgpool.yml", stack.alert_rules)
    return Prometheus(workspace, prometheus_config(exporter, rules, labels))


def exporter_container(stack: DevStack) -> dict:
    [container] = [c for c in stack.pod["containers"] if c["name"] == "exporter"]
    return container


def stack_exporter(stack: DevStack, local: LocalDevStack, pgpool: StackPgpool, binary: Path, name: str,
                   **changed_env: str) -> Exporter:
    """The stack's exporter sidecar for `pgpool`: the rendered container's environment (Secret values
    resolved) and user, its pgpool port the local one; `changed_env` breaks it on purpose."""
    env = {**stack.exporter_env, "PGPOOL_SERVICE_PORT": str(pgpool.endpoint.port)}
    assert {k for k in env if env[k] != stack.exporter_env[k]} <= set(EXPORTER_LOCAL_ENV)
    context = {**stack.pod["securityContext"], **exporter_container(stack)["securityContext"]}
    user = Identity(context["runAsUser"], context["runAsGroup"])
    return Exporter(local.workspace, binary, {**env, **changed_env}, user, name)


def alerts(prometheus: Prometheus, state: str) -> list[dict]:
    return [alert for alert in prometheus.api("alerts")["alerts"] if alert["state"] == state]


class Monitored:
    def __init__(self, pgpool: StackPgpool, exporter: Exporter, prometheus: Prometheus):
        self.pgpool, self.exporter, self.prometheus = pgpool, exporter, prometheus
        self.api = prometheus.api


@pytest.fixture(scope="module")
def monitored(stack: DevStack, local: LocalDevStack, exporter_binary: Path) -> Iterator[Monitored]:
    """An own Pgpool-II (the last tests restart and stop it), its exporter and a Prometheus."""
    pgpool = local.pgpool("pgpool-monitored")
    exporter = stack_exporter(stack, local, pgpool, exporter_binary, "pgpool2_exporter")
    prometheus = watching(local.workspace, stack, exporter, target_labels(stack))
    with stopping(pgpool, exporter, prometheus):
        exporter.start()
        prometheus.start()
        yield Monitored(pgpool, exporter, prometheus)


def test_exporter_reads_pgpool_as_the_monitoring_user(stack: DevStack, local: LocalDevStack,
                                                       monitored: Monitored) -> None:
    assert stack.exporter_env["POSTGRES_USERNAME"] == stack.monitor_user
    text = monitored.exporter.metrics()
    assert samples(text, "pgpool2_up") == [({}, 1.0)], monitored.exporter.log_tail()
    nodes = {(labels["port"], labels["role"]): value for labels, value in samples(text, "pgpool2_pool_nodes_status")}
    assert nodes == {(str(local.cluster.primary.endpoint.port), "primary"): 1.0,
                     (str(local.cluster.standby.endpoint.port), "standby"): 1.0}
    [(_, ratio)] = samples(text, "pgpool2_frontend_used_ratio")
    assert not math.isnan(ratio) and 0 < ratio <= 1  # the exporter's own session is one used child


def test_prometheus_loads_the_rules_and_scrapes_the_exporter(stack: DevStack, monitored: Monitored) -> None:
    expected_groups = {group["name"]: [rule["alert"] for rule in group["rules"]]
                       for group in yaml.safe_load(stack.alert_rules)["groups"]}

    [target] = wait_until("exporter scraped", lambda: [t for t in monitored.api("targets")["activeTargets"]
                                                       if t["health"] == "up"], timeout=30)
    assert target["labels"].items() >= target_labels(stack).items()
    scraped = datetime.fromisoformat(target["lastScrape"])

    def evaluated_since_scrape():  # every rule, evaluated on scraped data without an error
        groups = monitored.api("rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return groups if rules and all(rule["health"] == "ok" and not rule.get("lastError")
                                       and datetime.fromisoformat(rule["lastEvaluation"]) > scraped
                                       for rule in rules) else None

    groups = wait_until("rules evaluated", evaluated_since_scrape, timeout=30)
    assert {group["name"]: [rule["name"] for rule in group["rules"]] for group in groups} == expected_groups
    selector = ",".join(f'{k}="{v}"' for k, v in target_labels(stack).items() if k != "pod")
    result = monitored.api("query", query=f"pgpool2_pool_nodes_status{{{selector}}}")["result"]
    assert sorted(series["metric"]["role"] for series in result) == ["primary", "standby"]
    assert all(series["value"][1] == "1" for series in result)
    # PgpoolDown's absent(up) is pending until the first scrape; once scraped, nothing is active
    wait_until("no active alerts", lambda: monitored.api("alerts")["alerts"] == [], timeout=30)


# --- the series the rules and the dashboard name -------------------------------------------------


def _selectors(node, around: frozenset[str] = frozenset()) -> Iterator[tuple[promql_parser.VectorSelector, frozenset]]:
    """Every vector selector of a parsed expression, with the labels the aggregations (by, without) and
    vector matchings (on, ignoring) around it name."""
    if isinstance(node, promql_parser.VectorSelector):
        yield node, around
    elif isinstance(node, promql_parser.MatrixSelector):
        yield from _selectors(node.vector_selector, around)
    elif isinstance(node, promql_parser.AggregateExpr):
        yield from _selectors(node.expr, around | frozenset(node.modifier.labels if node.modifier else ()))
    elif isinstance(node, promql_parser.BinaryExpr):
        matching = node.modifier.matching if node.modifier else None
        inner = around | frozenset(matching.labels if matching else ())
        yield from _selectors(node.lhs, inner)
        yield from _selectors(node.rhs, inner)
    elif isinstance(node, promql_parser.Call):
        for arg in node.args:
            yield from _selectors(arg, around)
    elif isinstance(node, (promql_parser.ParenExpr, promql_parser.UnaryExpr, promql_parser.SubqueryExpr)):
        yield from _selectors(node.expr, around)


def _value_part(expr: str) -> str:
    """An alert expression without its threshold (`X > 0.9` gives X) and its guards (`X > 0.9 and on (...) Y`
    gives X): what its annotations' labels come from."""
    node = promql_parser.parse(expr)
    while isinstance(node, promql_parser.BinaryExpr) and str(node.op).strip() in GUARDS:
        node = node.lhs
    if (isinstance(node, promql_parser.BinaryExpr) and str(node.op).strip() in COMPARISONS
            and isinstance(node.rhs, promql_parser.NumberLiteral)):
        return str(node.lhs)
    return str(node)


def pgpool2_queries(stack: DevStack) -> list[tuple[str, str, set[str]]]:
    """(where, PromQL, labels its result must carry) of every alert rule and dashboard query that reads a
    pgpool2_* series: the labels its annotations ($labels.x) or legend ({{x}}) show."""
    queries = []
    for group in yaml.safe_load(stack.alert_rules)["groups"]:
        for rule in group["rules"]:
            shown = set(re.findall(r"\$labels\.(\w+)", yaml.safe_dump(rule["annotations"])))
            queries.append((f"alert {rule['alert']}", rule["expr"], shown))
    for panel in stack.dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in DASHBOARD_VARIABLES.items():
                expr = expr.replace(variable, value)
            queries.append((f"panel {panel['title']!r}", expr, set(re.findall(r"\{\{\s*(\w+)\s*\}\}",
                                                                                 target["legendFormat"]))))
    return [(where, expr, shown) for where, expr, shown in queries
            if any(s.name.startswith("pgpool2_") for s, _ in _selectors(promql_parser.parse(expr)))]


def test_every_pgpool2_series_the_rules_and_dashboard_name_is_exposed(stack: DevStack, monitored: Monitored) -> None:
    """Each selector matches series Prometheus scraped from the exporter (name and label matchers), which
    carry every label the expression groups or matches on, and each query's result carries every label its
    annotations or legend show (the exporter's labels plus the target's: namespace, service, pod)."""
    queries = pgpool2_queries(stack)
    names = {s.name for _, expr, _ in queries for s, _ in _selectors(promql_parser.parse(expr))}
    assert {"pgpool2_up", "pgpool2_frontend_used_ratio", "pgpool2_pool_nodes_select_cnt"} <= names  # the parse works
    exposed = {line.split("{")[0].split(" ")[0] for line in monitored.exporter.metrics().splitlines()
               if not line.startswith("#")}
    # rate() over the dashboard's 1m needs two scrapes
    wait_until("two scrapes", lambda: monitored.api("query", query="count_over_time(pgpool2_up[1m]) >= 2")["result"],
               timeout=30)
    missing = []
    for where, expr, shown in queries:
        problems = []
        for selector, grouping in _selectors(promql_parser.parse(expr)):
            if not selector.name.startswith("pgpool2_"):
                continue
            series = monitored.api("series", **{"match[]": str(selector)})
            if selector.name not in exposed or not series:
                problems.append(f"{where}: no series {selector} (the exporter exposes "
                                f"{sorted(n for n in exposed if n.startswith('pgpool2_'))})")
            for label in sorted(grouping):
                if any(label not in labels for labels in series):
                    problems.append(f"{where}: {selector.name} has no label {label!r}: {series}")
        if not problems:
            value = _value_part(expr)
            result = monitored.api("query", query=value)["result"]
            if not result:
                problems.append(f"{where}: {value} gives nothing")
            problems += [f"{where}: {value} gives no label {label!r}: {result}"
                         for label in sorted(shown) if any(label not in item["metric"] for item in result)]
        missing += problems
    assert not missing, "\n".join(missing)


# --- logging in ----------------------------------------------------------------------------------


def refused(exporter: Exporter) -> bool:
    """Whether nothing listens on the exporter's port (raises while something does)."""
    try:
        exporter.metrics()
    except urllib.error.URLError as error:
        return isinstance(error.reason, ConnectionRefusedError)
    raise AssertionError(f"{exporter.name} serves /metrics")


def waiting_on(exporter: Exporter, error: str, rounds: int = 2) -> None:
    """The exporter has failed its login at start `rounds` times with `error` in its log, is still
    running, and has not opened its port."""
    wait_until(f"{exporter.name} retried its login {rounds} times",
               lambda: exporter.log_since_start().count(RETRY_LOG) >= rounds, timeout=5 * rounds + 30)
    log = exporter.log_since_start()
    assert exporter.running, log
    assert error in log, log
    assert refused(exporter)


@pytest.mark.parametrize("ssl", ["true", "false"])
def test_the_exporters_login_follows_pool_hba_and_tls(ssl: str, local: LocalDevStack, pgpool_for,
                                                       exporter_binary: Path) -> None:
    """The rendered SSLMODE is what the rendered pool_hba.conf takes: with ssl only hostssl lines, so the
    exporter's login is TLS and one without TLS is refused; without ssl, Pgpool-II offers no TLS at all."""
    stack, pgpool = dev_stack(ssl=ssl), pgpool_for(ssl=ssl)
    hba_types = {line.split()[0] for line in stack.config_files["pool_hba.conf"].splitlines()
                 if line.strip() and not line.startswith("#")}
    rendered = stack.exporter_env["SSLMODE"]
    assert (hba_types, rendered) == (({"hostssl"}, "require") if ssl == "true" else ({"host"}, "disable"))
    exporter = stack_exporter(stack, local, pgpool, exporter_binary, f"pgpool2_exporter-ssl-{ssl}")
    other = {"require": "disable", "disable": "require"}[rendered]
    other_exporter = stack_exporter(stack, local, pgpool, exporter_binary, f"pgpool2_exporter-ssl-{ssl}-{other}",
                                    SSLMODE=other)
    with stopping(exporter, other_exporter):
        exporter.start()
        assert samples(exporter.metrics(), "pgpool2_up") == [({}, 1.0)], exporter.log_tail()
        other_exporter.start(wait=False)
        if ssl == "true":  # Pgpool-II tells the client little, and logs why
            waiting_on(other_exporter, "pq: client authentication failed", rounds=1)
            assert "no pool_hba.conf entry" in pgpool.log_since_start(), pgpool.log_tail()
        else:
            waiting_on(other_exporter, "pq: SSL is not enabled on the server", rounds=1)


def test_a_wrong_monitor_password_keeps_the_exporter_waiting_not_restarting(
        stack: DevStack, local: LocalDevStack, monitored: Monitored, exporter_binary: Path) -> None:
    """pgpool2_exporter 1.2.2 does not exit when its login at start fails: it retries every 5 s and opens
    its port only once logged in. So the pod gives it no probe (a liveness probe would restart it over and
    over, a readiness probe would take Pgpool-II out of its Service), and PgpoolDown reports it."""
    sidecar = exporter_container(stack)
    assert not {"livenessProbe", "readinessProbe", "startupProbe"} & sidecar.keys()
    monitor = stack.monitor_user
    exporter = stack_exporter(stack, local, monitored.pgpool, exporter_binary, "pgpool2_exporter-wrong-password",
                              POSTGRES_PASSWORD=stack.passwords[monitor] + "-wrong")
    labels = target_labels(stack, pod="pgpool-wrong-password")
    workspace = Workspace(prefix="pgpool-prometheus-")  # the module's Prometheus has the work directory's
    try:
        prometheus = watching(workspace, stack, exporter, labels)
        with stopping(exporter, prometheus):
            exporter.start(wait=False)
            prometheus.start()
            waiting_on(exporter, "pq: authentication failed")
            # (absent(up) is pending, without a pod label, until the first scrape)
            [alert] = wait_until("PgpoolDown pending for the pod",
                                 lambda: [a for a in alerts(prometheus, "pending")
                                          if a["labels"]["alertname"] == "PgpoolDown"
                                          and a["labels"].items() >= labels.items()], timeout=30)
            assert "has not logged in to Pgpool-II as the monitor user" in alert["annotations"]["description"]
    finally:
        workspace.remove()


def set_password(local: LocalDevStack, user: str, password: str) -> None:
    statement = sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(user), sql.Literal(password))
    local.cluster.primary.query(statement)
    local.cluster.wait_streaming()  # the standby, Pgpool-II's node 1, has it too


def test_a_monitor_password_postgresql_no_longer_takes_gives_pgpool2_up_0(stack: DevStack, local: LocalDevStack,
                                                                          monitored: Monitored) -> None:
    """PostgreSQL's monitor password is not the stack's (pool_passwd's) any more: Pgpool-II accepts the
    exporter but cannot log in to the backends for it. Once Pgpool-II restarts, the running exporter says
    pgpool2_up 0, PgpoolExporterCannotReachPgpool goes pending, and all is well again, with no restart of
    the exporter, once the passwords agree."""
    monitor, exporter = stack.monitor_user, monitored.exporter
    pid = exporter.process.pid
    set_password(local, monitor, f"not-the-stacks-{stack.passwords[monitor][-8:]}")
    try:
        monitored.pgpool.stop()  # a new Pgpool-II has no backend connection cached for the monitor user
        monitored.pgpool.start()
        wait_until("pgpool2_up 0", lambda: samples(exporter.metrics(), "pgpool2_up") == [({}, 0.0)], timeout=30)
        assert "pq: backend authentication failed" in exporter.log_since_start(), exporter.log_tail()
        with monitored.pgpool.endpoint.connect(stack.app_user, stack.passwords[stack.app_user], stack.app_user) as app:
            assert app.execute("SELECT 1").fetchone() == (1,)  # Pgpool-II itself serves
        wait_until("PgpoolExporterCannotReachPgpool pending",
                   lambda: any(a["labels"]["alertname"] == "PgpoolExporterCannotReachPgpool"
                               for a in alerts(monitored.prometheus, "pending")), timeout=30)
    finally:
        set_password(local, monitor, stack.passwords[monitor])
    wait_until("pgpool2_up 1", lambda: samples(exporter.metrics(), "pgpool2_up") == [({}, 1.0)], timeout=30)
    assert exporter.process.pid == pid and exporter.running


def test_an_alert_goes_pending_when_pgpool_stops(stack: DevStack, monitored: Monitored) -> None:
    monitored.pgpool.stop()

    def alert_names():
        return {alert["labels"]["alertname"] for alert in monitored.api("alerts")["alerts"]}

    names = wait_until("PgpoolExporterCannotReachPgpool active",
                       lambda: "PgpoolExporterCannotReachPgpool" in alert_names() and alert_names(), timeout=60)
    assert samples(monitored.exporter.metrics(), "pgpool2_up") == [({}, 0.0)]
    print(f"active alerts after Pgpool-II stopped: {sorted(names)}")
