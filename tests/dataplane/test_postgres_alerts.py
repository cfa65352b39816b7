"""postgres_exporter watches the dev stack's PostgreSQL servers as the monitoring user; a real
Prometheus loads the program's alert rules, scrapes the exporters, and PostgresBackendDown goes
pending for the right pod when a server stops and when a pod's exporter goes away.

Debian's postgres_exporter (0.11.1; KubeDB runs 0.15.0, which exports `pg_up` the same way)
logs in as the monitoring user the program's init.sql creates. Debian's Prometheus has no
Kubernetes discovery, so each exporter is a static target carrying the labels the program's
endpoints job gives KubeDB's pods: namespace, service (KubeDB names the Service in front of its
exporters `<clusterName>-stats`) and pod (`<clusterName>-<ordinal>`). The rules file is the
program's, unchanged; only the test's prometheus.yml sets short intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import pytest
import yaml

from tests.dataplane.harness import PostgresExporter, PostgresServer, Prometheus, stopping, wait_until
from tests.dataplane.local_stack import LocalDevStack
from tests.dataplane.installs import debian12
from tests.dataplane.stack_files import DevStack, dev_stack

ALERT = "PostgresBackendDown"
SCRAPE_INTERVAL = "2s"
"""Longer than the second postgres_exporter 0.11.1 waits before it reports a refused connection."""


def target_labels(stack: DevStack, pod: str) -> dict[str, str]:
    settings = stack.settings
    return {"namespace": settings.namespace, "service": f"{settings.database.cluster_name}-stats", "pod": pod}


@dataclass(frozen=True)
class Watched:
    local: LocalDevStack
    servers: dict[str, PostgresServer]
    """By pod name: <clusterName>-0 is the primary, <clusterName>-1 the standby."""
    exporters: dict[str, PostgresExporter]
    prometheus: Prometheus

    def value(self, metric: str, pod: str) -> str:
        """The value of `metric` from the target of `pod`."""
        matchers = ",".join(f'{k}="{v}"' for k, v in target_labels(self.local.stack, pod).items())
        [series] = self.prometheus.api("query", query=f"{metric}{{{matchers}}}")["result"]
        return series["value"][1]

    def alerts(self) -> list[dict]:
        return [a for a in self.prometheus.api("alerts")["alerts"] if a["labels"]["alertname"] == ALERT]

    def alert_for(self, pod: str) -> dict | None:
        found = [a for a in self.alerts() if a["labels"]["pod"] == pod]
        assert len(found) <= 1, found
        return found[0] if found else None


@pytest.fixture(scope="module")
def stack() -> DevStack:
    """No Pgpool-II runs here: one dev stack, not one per series (tests/dataplane/conftest.py's `stack`)."""
    return dev_stack(pgpoolImage=debian12().image)


@pytest.fixture(scope="module")
def watched(stack: DevStack) -> Iterator[Watched]:
    """An own database (the tests stop its standby), an exporter per server and a Prometheus."""
    local = LocalDevStack(stack)
    try:
        local.start_database()
        cluster = stack.settings.database.cluster_name
        servers = {f"{cluster}-0": local.cluster.primary, f"{cluster}-1": local.cluster.standby}
        monitor = stack.monitor_user
        exporters = {pod: PostgresExporter(local.workspace, f"postgres_exporter-{pod}", server.endpoint, monitor,
                                           stack.passwords[monitor])
                     for pod, server in servers.items()}
        rules = local.workspace.write("prometheus/rules/pgpool.yml", stack.alert_rules)
        prometheus = Prometheus(local.workspace, yaml.safe_dump({
            "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [{
                "job_name": "postgres-exporter",
                "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"], "labels": target_labels(stack, pod)}
                                   for pod, exporter in exporters.items()],
            }],
        }))
        with stopping(*exporters.values(), prometheus):
            for exporter in exporters.values():
                exporter.start()
            prometheus.start()
            yield Watched(local, servers, exporters, prometheus)
    finally:
        local.close()


def test_prometheus_evaluates_every_rule_of_the_program_without_error(stack: DevStack, watched: Watched) -> None:
    expected = {group["name"]: [rule["alert"] for rule in group["rules"]]
                for group in yaml.safe_load(stack.alert_rules)["groups"]}

    def evaluated():
        groups = watched.prometheus.api("rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return groups if rules and all(rule["health"] != "unknown" for rule in rules) else None

    groups = wait_until("every rule evaluated", evaluated, timeout=30)
    assert {group["name"]: [rule["name"] for rule in group["rules"]] for group in groups} == expected
    for rule in (rule for group in groups for rule in group["rules"]):
        assert (rule["health"], rule.get("lastError", "")) == ("ok", ""), rule


def test_prometheus_scrapes_every_server_as_the_monitoring_user(watched: Watched) -> None:
    wait_until("every exporter scraped",
               lambda: all(watched.value("up", pod) == "1" for pod in watched.servers), timeout=30)
    for pod, exporter in watched.exporters.items():
        assert watched.value("pg_up", pod) == "1", exporter.log_tail()
    assert watched.alerts() == []


def test_backend_down_goes_pending_for_the_pod_whose_server_stopped(watched: Watched) -> None:
    [primary, standby] = watched.servers
    watched.servers[standby].stop()

    alert = wait_until(f"{ALERT} for {standby}", lambda: watched.alert_for(standby), timeout=30)

    assert alert["state"] == "pending"  # for: 1m
    assert alert["labels"]["severity"] == "critical"
    assert f"Pod {standby}:" in alert["annotations"]["description"]
    # The exporter still answers: pg_up says the server is down.
    assert (watched.value("up", standby), watched.value("pg_up", standby)) == ("1", "0")
    assert watched.alert_for(primary) is None


def test_backend_down_goes_pending_for_the_pod_whose_exporter_is_gone(watched: Watched) -> None:
    [primary, _] = watched.servers
    watched.exporters[primary].stop()

    alert = wait_until(f"{ALERT} for {primary}", lambda: watched.alert_for(primary), timeout=30)

    assert alert["state"] == "pending"
    assert f"Pod {primary}:" in alert["annotations"]["description"]
    # Prometheus cannot scrape the pod: `up` of the program's postgres metrics Service says so.
    assert watched.value("up", primary) == "0"
