"""pgpool2_exporter scrapes this Pgpool-II as the monitoring user; Prometheus loads the program's
alert rules, scrapes the exporter, and an alert goes pending when Pgpool-II stops.

Debian's Prometheus has no Kubernetes discovery, so the exporter is a static target carrying the
three labels the program's endpoints job (and a ServiceMonitor) gives it: namespace, service, pod.
The rules select on exactly those.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from tests.dataplane.harness import Exporter, Prometheus, stopping, wait_until
from tests.dataplane.local_stack import LocalDevStack, StackPgpool
from tests.dataplane.stack_files import DevStack

SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
EXPORTER_LOCAL_ENV = ("PGPOOL_SERVICE_PORT",)
"""The only exporter variables the local run rewrites (the container's pgpool port is a free one here)."""


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    found = []
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and match["name"] == name:
            found.append((dict(LABEL.findall(match["labels"] or "")), float(match["value"])))
    return found


def target_labels(stack: DevStack) -> dict[str, str]:
    name = stack.settings.pgpool.name
    return {"namespace": stack.settings.namespace, "service": f"{name}-metrics", "pod": f"{name}-local"}


def prometheus_config(exporter: Exporter, rules: Path, labels: dict[str, str]) -> str:
    return yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [{
            "job_name": "pgpool-exporter",
            "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"], "labels": labels}],
        }],
    })


class Monitored:
    def __init__(self, pgpool: StackPgpool, exporter: Exporter, prometheus: Prometheus):
        self.pgpool, self.exporter, self.prometheus = pgpool, exporter, prometheus
        self.api = prometheus.api


@pytest.fixture(scope="module")
def monitored(stack: DevStack, local: LocalDevStack, exporter_binary: Path) -> Iterator[Monitored]:
    """An own Pgpool-II (the alert test stops it), its exporter and a Prometheus."""
    pgpool = local.pgpool("pgpool-monitored")
    image_env = {**stack.exporter_env, "PGPOOL_SERVICE_PORT": str(pgpool.endpoint.port)}
    assert {k for k in image_env if image_env[k] != stack.exporter_env[k]} <= set(EXPORTER_LOCAL_ENV)
    exporter = Exporter(local.workspace, exporter_binary, image_env)
    rules = local.workspace.write("prometheus/rules/pgpool.yml", stack.alert_rules)
    prometheus = Prometheus(local.workspace, prometheus_config(exporter, rules, target_labels(stack)))
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

    def evaluated_rules():
        groups = monitored.api("rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return groups if rules and all(rule["health"] == "ok" for rule in rules) else None

    groups = wait_until("rules evaluated", evaluated_rules, timeout=30)
    assert {group["name"]: [rule["name"] for rule in group["rules"]] for group in groups} == expected_groups

    [target] = wait_until("exporter scraped", lambda: [t for t in monitored.api("targets")["activeTargets"]
                                                       if t["health"] == "up"], timeout=30)
    assert target["labels"].items() >= target_labels(stack).items()
    selector = ",".join(f'{k}="{v}"' for k, v in target_labels(stack).items() if k != "pod")
    result = monitored.api("query", query=f"pgpool2_pool_nodes_status{{{selector}}}")["result"]
    assert sorted(series["metric"]["role"] for series in result) == ["primary", "standby"]
    assert all(series["value"][1] == "1" for series in result)
    # PgpoolDown's absent(up) is pending until the first scrape; once scraped, nothing is active
    wait_until("no active alerts", lambda: monitored.api("alerts")["alerts"] == [], timeout=30)


def test_an_alert_goes_pending_when_pgpool_stops(stack: DevStack, monitored: Monitored) -> None:
    monitored.pgpool.stop()

    def alert_names():
        return {alert["labels"]["alertname"] for alert in monitored.api("alerts")["alerts"]}

    names = wait_until("PgpoolExporterCannotReachPgpool active",
                       lambda: "PgpoolExporterCannotReachPgpool" in alert_names() and alert_names(), timeout=60)
    assert samples(monitored.exporter.metrics(), "pgpool2_up") == [({}, 0.0)]
    print(f"active alerts after Pgpool-II stopped: {sorted(names)}")
