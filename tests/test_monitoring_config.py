"""Monitoring renderers: prometheus.yml, alert rules and the Grafana dashboard.

The rendered files are checked by the real promtool (`scripts/tools.sh promtool`, built from the
Prometheus Go module because Debian's build rejects kubernetes_sd_configs), and the alert
expressions are proved with `promtool test rules`: input series in, expected alerts out.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.monitoring_config import (
    SERVICE_ENDPOINTS_JOB,
    alert_rule_groups,
    render_alert_rules,
    render_grafana_dashboard,
    render_prometheus_yml,
)
from components.settings import PrometheusSettings
from tests.built_tools import built_tool
from tests.golden import GOLDEN_DIR, assert_matches_golden

GOLDEN = GOLDEN_DIR / "monitoring"

NAMESPACE = "demo"
PGPOOL_SERVICE = "pgpool-metrics"
POSTGRES_SERVICE = "pg-stats"

# Metric names as the exporters define them (pgpool2_exporter v1.2.2 pgpool2_exporter.go,
# postgres_exporter v0.15.0 collector/ and cmd/postgres_exporter/); `up` is Prometheus' own.
PGPOOL2_EXPORTER_METRICS = {
    "pgpool2_up", "pgpool2_last_scrape_duration_seconds", "pgpool2_scrapes_total", "pgpool2_last_scrape_error",
    "pgpool2_frontend_total", "pgpool2_frontend_used", "pgpool2_frontend_used_ratio",
    "pgpool2_backend_total", "pgpool2_backend_used", "pgpool2_backend_used_ratio",
    "pgpool2_backend_by_process_total", "pgpool2_backend_by_process_used", "pgpool2_backend_by_process_used_ratio",
    "pgpool2_pool_nodes_status", "pgpool2_pool_nodes_select_cnt", "pgpool2_pool_nodes_replication_delay",
    *(f"pgpool2_pool_cache_{column}" for column in (
        "num_cache_hits", "num_selects", "cache_hit_ratio", "num_hash_entries", "used_hash_entries",
        "num_cache_entries", "used_cache_entries_size", "free_cache_entries_size", "fragment_cache_entries_size")),
}
POSTGRES_EXPORTER_METRICS = {
    "pg_up", "pg_stat_activity_count", "pg_stat_activity_max_tx_duration",
    "pg_stat_database_numbackends", "pg_stat_database_xact_commit", "pg_stat_database_xact_rollback",
    "pg_replication_lag_seconds", "pg_replication_is_replica",
    "pg_stat_replication_pg_wal_lsn_diff", "pg_stat_replication_pg_current_wal_lsn_bytes",
}
KNOWN_METRICS = PGPOOL2_EXPORTER_METRICS | POSTGRES_EXPORTER_METRICS | {"up"}


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of a promtool built from the Prometheus Go module (built on first use)."""
    return str(built_tool("promtool"))


def run_promtool(promtool: str, *args: str, cwd: Path) -> str:
    result = subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


def expressions_metrics(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers followed by a label selector."""
    return set(re.findall(r"(?<![\w$])([a-zA-Z_:][\w:]*)\{", expr))


# --- prometheus.yml -----------------------------------------------------------------


def relabel_rule(config: dict[str, Any], target: str) -> dict[str, Any]:
    job = next(j for j in config["scrape_configs"] if j["job_name"] == SERVICE_ENDPOINTS_JOB)
    (rule,) = [r for r in job["relabel_configs"] if r.get("target_label") == target]
    return rule


def test_prometheus_yml_global_settings_and_jobs() -> None:
    config = yaml.safe_load(render_prometheus_yml(PrometheusSettings(scrape_interval="5s"), ["demo", "db", "demo"]))

    assert config["global"] == {"scrape_interval": "5s", "evaluation_interval": "5s"}
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs["prometheus"]["static_configs"] == [{"targets": ["localhost:9090"]}]
    # EndpointSlices: the v1 Endpoints API is deprecated since Kubernetes 1.33.
    assert jobs[SERVICE_ENDPOINTS_JOB]["kubernetes_sd_configs"] == [
        {"role": "endpointslice", "namespaces": {"names": ["demo", "db"]}}
    ]


def test_every_namespace_is_asked_for_explicitly() -> None:
    """None is every namespace (the one case that takes a ClusterRole); there is no implicit way to it."""
    config = yaml.safe_load(render_prometheus_yml(PrometheusSettings(), None))
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == SERVICE_ENDPOINTS_JOB]
    assert job["kubernetes_sd_configs"] == [{"role": "endpointslice"}]


def test_endpoints_job_keeps_every_annotated_service_whatever_its_name() -> None:
    config = yaml.safe_load(render_prometheus_yml(PrometheusSettings(), [NAMESPACE]))
    rules = next(j for j in config["scrape_configs"] if j["job_name"] == SERVICE_ENDPOINTS_JOB)["relabel_configs"]

    filters = [r for r in rules if r["action"] in ("keep", "drop")]
    assert filters == [{
        "source_labels": ["__meta_kubernetes_service_annotation_prometheus_io_scrape"],
        "regex": "true",
        "action": "keep",
    }]


def test_endpoints_job_honours_scheme_path_and_port_annotations() -> None:
    config = yaml.safe_load(render_prometheus_yml(PrometheusSettings(), [NAMESPACE]))

    scheme = relabel_rule(config, "__scheme__")
    assert scheme["source_labels"] == ["__meta_kubernetes_service_annotation_prometheus_io_scheme"]
    assert scheme["regex"] == "(https?)"
    path = relabel_rule(config, "__metrics_path__")
    assert path["source_labels"] == ["__meta_kubernetes_service_annotation_prometheus_io_path"]
    assert path["regex"] == "(.+)"
    address = relabel_rule(config, "__address__")
    assert address["source_labels"] == ["__address__", "__meta_kubernetes_service_annotation_prometheus_io_port"]
    assert address["replacement"] == "$1:$2"
    # Prometheus joins the sources with ';' and anchors the regex; $1:$2 then gives the new address.
    for joined, wanted in (("10.0.3.7:9999;9719", "10.0.3.7:9719"), ("10.0.3.7;9719", "10.0.3.7:9719"),
                           ("[fd00::7]:9999;9719", "[fd00::7]:9719")):
        match = re.fullmatch(address["regex"], joined)
        assert match and f"{match[1]}:{match[2]}" == wanted, joined


def test_endpoints_job_labels_namespace_service_pod_after_service_labels() -> None:
    config = yaml.safe_load(render_prometheus_yml(PrometheusSettings(), [NAMESPACE]))
    rules = next(j for j in config["scrape_configs"] if j["job_name"] == SERVICE_ENDPOINTS_JOB)["relabel_configs"]

    sources = {r.get("target_label"): r.get("source_labels") for r in rules}
    assert sources["namespace"] == ["__meta_kubernetes_namespace"]
    assert sources["service"] == ["__meta_kubernetes_service_name"]
    assert sources["pod"] == ["__meta_kubernetes_pod_name"]
    labelmap = next(i for i, r in enumerate(rules) if r["action"] == "labelmap")
    assert rules[labelmap]["regex"] == "__meta_kubernetes_service_label_(.+)"
    named = [i for i, r in enumerate(rules) if r.get("target_label") in ("namespace", "service", "pod")]
    assert min(named) > labelmap, "a Service label named namespace/service/pod must not override ours"


@pytest.mark.parametrize("namespaces", [[NAMESPACE, "db"], None], ids=["namespaced", "every-namespace"])
def test_prometheus_yml_and_its_rule_files_pass_promtool_check_config(promtool: str, tmp_path: Path,
                                                                       namespaces: list[str] | None) -> None:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "pgpool.yml").write_text(render_alert_rules(PrometheusSettings(), PGPOOL_SERVICE, NAMESPACE,
                                                                   POSTGRES_SERVICE))
    config = tmp_path / "prometheus.yml"
    config.write_text(render_prometheus_yml(PrometheusSettings(scrape_interval="5s"), namespaces,
                                            rule_files=[str(rules_dir / "*.yml")]))

    output = run_promtool(promtool, "check", "config", str(config), cwd=tmp_path)

    assert "SUCCESS: 7 rules found" in output


@pytest.mark.parametrize("namespaces, bad", [
    ([], "[]"),
    ("demo", "'demo'"),
    (["demo", 'x"}'], "'x\"}'"),
    (["Demo"], "'Demo'"),
])
def test_prometheus_yml_rejects_bad_namespaces(namespaces: Any, bad: str) -> None:
    with pytest.raises(ValueError) as error:
        render_prometheus_yml(PrometheusSettings(), namespaces)
    assert bad in str(error.value)


# --- alert rules --------------------------------------------------------------------

EXPECTED_ALERTS = {
    "PgpoolDown": "critical",
    "PgpoolExporterCannotReachPgpool": "critical",
    "PgpoolFrontendsNearlyExhausted": "warning",
    "PgpoolReplicationDelayHigh": "warning",
    "PgpoolStandbyGetsNoReads": "warning",
    "PostgresBackendDown": "critical",
    "PostgresReplicationLagHigh": "warning",
}


PGPOOL = 'namespace="demo",service="pgpool-metrics"'
EXPECTED_RULES = {
    "PgpoolDown": ("2m", f"up{{{PGPOOL}}} == 0 or absent(up{{{PGPOOL}}})"),
    "PgpoolExporterCannotReachPgpool": ("1m", f"pgpool2_up{{{PGPOOL}}} == 0"),
    "PgpoolFrontendsNearlyExhausted": ("5m", f"pgpool2_frontend_used_ratio{{{PGPOOL}}} > 0.9"),
    "PgpoolReplicationDelayHigh": ("5m", f"pgpool2_pool_nodes_replication_delay{{{PGPOOL}}} > 16777216"),  # 16 MiB
    "PgpoolStandbyGetsNoReads": ("15m", f"""
        sum by (namespace, service, pod) (rate(pgpool2_pool_nodes_select_cnt{{{PGPOOL},role="standby"}}[10m]))
          / sum by (namespace, service, pod) (rate(pgpool2_pool_nodes_select_cnt{{{PGPOOL}}}[10m])) < 0.05
        and on (namespace, service, pod)
        sum by (namespace, service, pod) (rate(pgpool2_pool_nodes_select_cnt{{{PGPOOL}}}[10m])) > 1"""),
    "PostgresBackendDown": ("1m", 'pg_up{namespace="demo"} == 0 or up{namespace="demo",service="pg-stats"} == 0'),
    "PostgresReplicationLagHigh": ("5m", """
        pg_replication_lag_seconds{namespace="demo"} > 60
          unless on (namespace, pod)
        label_replace(pg_stat_replication_pg_wal_lsn_diff{namespace="demo"} == 0,
                      "pod", "$1", "application_name", "(.+)")"""),
}
"""Every alert of the demo stack with the default thresholds, written by hand from what each alert
means; compared as promtool itself parses and prints them."""


def promql(promtool: str, expr: str) -> str:
    """`expr` as promtool parses it and prints it back: the same text for the same expression."""
    result = subprocess.run([promtool, "--experimental", "promql", "format", expr], capture_output=True, text=True)
    assert result.returncode == 0, f"promtool cannot parse {expr!r}: {result.stderr}"
    return result.stdout


def test_alert_expressions_are_the_hand_written_ones(promtool: str) -> None:
    rules = {r["alert"]: r for g in alert_rule_groups(PrometheusSettings(), PGPOOL_SERVICE, NAMESPACE,
                                                      POSTGRES_SERVICE) for r in g["rules"]}
    assert set(rules) == set(EXPECTED_RULES)
    for name, (duration, expr) in EXPECTED_RULES.items():
        assert rules[name]["for"] == duration, name
        assert promql(promtool, rules[name]["expr"]) == promql(promtool, expr), name


def test_rules_file_and_rule_groups_share_one_source() -> None:
    settings = PrometheusSettings(replication_delay_alert_bytes=1234)
    for postgres_service in (POSTGRES_SERVICE, ""):
        rendered = yaml.safe_load(render_alert_rules(settings, PGPOOL_SERVICE, NAMESPACE, postgres_service))

        assert rendered == {"groups": alert_rule_groups(settings, PGPOOL_SERVICE, NAMESPACE, postgres_service)}


def test_every_alert_has_severity_summary_description_and_known_metrics() -> None:
    rules = [r for g in alert_rule_groups(PrometheusSettings(), PGPOOL_SERVICE, NAMESPACE, POSTGRES_SERVICE)
             for r in g["rules"]]

    assert {r["alert"]: r["labels"]["severity"] for r in rules} == EXPECTED_ALERTS
    for rule in rules:
        assert set(rule["annotations"]) == {"summary", "description"}
        assert "$labels." in rule["annotations"]["summary"] + rule["annotations"]["description"]
        assert expressions_metrics(rule["expr"]) <= KNOWN_METRICS, rule["expr"]
        assert f'namespace="{NAMESPACE}"' in rule["expr"]


def test_replication_delay_threshold_comes_from_settings() -> None:
    groups = alert_rule_groups(PrometheusSettings(replication_delay_alert_bytes=4096), PGPOOL_SERVICE, NAMESPACE,
                               POSTGRES_SERVICE)
    (rule,) = [r for g in groups for r in g["rules"] if r["alert"] == "PgpoolReplicationDelayHigh"]

    assert rule["expr"].endswith("> 4096")
    assert "srCheckPeriod > 0" in rule["annotations"]["description"]


@pytest.mark.parametrize("postgres_service", [POSTGRES_SERVICE, ""])
def test_rules_pass_promtool_check_rules(promtool: str, tmp_path: Path, postgres_service: str) -> None:
    (tmp_path / "rules.yml").write_text(
        render_alert_rules(PrometheusSettings(), PGPOOL_SERVICE, NAMESPACE, postgres_service))

    output = run_promtool(promtool, "check", "rules", "rules.yml", cwd=tmp_path)

    assert "SUCCESS: 7 rules found" in output


def backend_down_expr(postgres_service: str) -> str:
    groups = alert_rule_groups(PrometheusSettings(), PGPOOL_SERVICE, NAMESPACE, postgres_service)
    (rule,) = [r for g in groups for r in g["rules"] if r["alert"] == "PostgresBackendDown"]
    return rule["expr"]


def test_backend_down_watches_the_exporters_service_only_when_it_is_known() -> None:
    assert backend_down_expr(POSTGRES_SERVICE) == (
        f'pg_up{{namespace="{NAMESPACE}"}} == 0 or up{{namespace="{NAMESPACE}",service="{POSTGRES_SERVICE}"}} == 0')
    assert backend_down_expr("") == f'pg_up{{namespace="{NAMESPACE}"}} == 0'


@pytest.mark.parametrize("service, namespace, postgres_service", [
    ('pgpool"} or vector(1) #', NAMESPACE, POSTGRES_SERVICE),
    (PGPOOL_SERVICE, "demo\n", POSTGRES_SERVICE),
    (PGPOOL_SERVICE, NAMESPACE, 'pg-stats"} == 0 or vector(0'),
])
def test_rules_reject_names_that_could_break_out_of_a_label_matcher(service: str, namespace: str,
                                                                     postgres_service: str) -> None:
    with pytest.raises(ValueError, match="is not a Kubernetes name"):
        render_alert_rules(PrometheusSettings(), service, namespace, postgres_service)


PGPOOL_POD = {"namespace": NAMESPACE, "service": PGPOOL_SERVICE, "pod": "pgpool-7d9c-x1",
              "job": SERVICE_ENDPOINTS_JOB, "instance": "10.0.3.7:9719"}
STANDBY_NODE = {"hostname": "pg-standby.demo.svc.cluster.local", "port": "5432", "role": "standby"}
PRIMARY_NODE = {"hostname": "pg.demo.svc.cluster.local", "port": "5432", "role": "primary"}
POSTGRES_POD = {"namespace": NAMESPACE, "service": POSTGRES_SERVICE, "pod": "pg-0",
                "job": SERVICE_ENDPOINTS_JOB, "instance": "10.0.4.10:56790"}
STANDBY_POD = {**POSTGRES_POD, "pod": "pg-1", "instance": "10.0.4.11:56790"}


def series(metric: str, labels: dict[str, str], values: str) -> dict[str, str]:
    matchers = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{metric}{{{matchers}}}", "values": values}


def alert(labels: dict[str, str], summary: str, description: str) -> dict[str, Any]:
    return {"exp_labels": labels, "exp_annotations": {"summary": summary, "description": description}}


def backend_down(pod: dict[str, str]) -> dict[str, Any]:
    return alert({**pod, "severity": "critical"}, f"PostgreSQL demo/{pod['pod']} is down",
                 f"Pod {pod['pod']}: postgres_exporter cannot connect to PostgreSQL, or Prometheus cannot scrape "
                 "the pod's exporter. Pgpool-II does not detach the backend (failover is off), so sessions it "
                 "routes to this server fail until it is back.")


ALERT_SCENARIOS = {
    "frontends-nearly-exhausted": (
        [series("pgpool2_frontend_used_ratio", PGPOOL_POD, "0.95x15"),
         series("pgpool2_frontend_used_ratio", {**PGPOOL_POD, "pod": "pgpool-7d9c-x2"}, "0.5x15")],
        [{"eval_time": "4m", "alertname": "PgpoolFrontendsNearlyExhausted", "exp_alerts": []},
         {"eval_time": "10m", "alertname": "PgpoolFrontendsNearlyExhausted", "exp_alerts": [alert(
             {**PGPOOL_POD, "severity": "warning"},
             "Pgpool-II demo/pgpool-7d9c-x1 is running out of child processes",
             "95% of the child processes (num_init_children) are in use; new clients wait or are refused. "
             "Raise numInitChildren within the backends' max_connections, or add Pgpool-II replicas.")]}],
    ),
    "postgres-server-down": (
        # pg-1's exporter answers but cannot connect from 1m on; pg-0 stays up.
        [series("pg_up", POSTGRES_POD, "1x5"), series("up", POSTGRES_POD, "1x5"),
         series("pg_up", STANDBY_POD, "1 0x4"), series("up", STANDBY_POD, "1x5")],
        [{"eval_time": "1m", "alertname": "PostgresBackendDown", "exp_alerts": []},
         {"eval_time": "2m", "alertname": "PostgresBackendDown", "exp_alerts": [backend_down(STANDBY_POD)]}],
    ),
    "postgres-exporter-not-scraped": (
        [series("pg_up", POSTGRES_POD, "1x5"), series("up", POSTGRES_POD, "1x5"),
         series("pg_up", STANDBY_POD, "1 stale"), series("up", STANDBY_POD, "1 0x4")],
        [{"eval_time": "1m", "alertname": "PostgresBackendDown", "exp_alerts": []},
         {"eval_time": "2m", "alertname": "PostgresBackendDown", "exp_alerts": [backend_down(STANDBY_POD)]}],
    ),
    "postgres-server-then-exporter-down": (
        # The server stops at 1m, its pod's exporter at 2m: one alert, pending since 1m, firing at 2m.
        [series("pg_up", STANDBY_POD, "1 0 stale"), series("up", STANDBY_POD, "1 1 0x3")],
        [{"eval_time": "2m", "alertname": "PostgresBackendDown", "exp_alerts": [backend_down(STANDBY_POD)]}],
    ),
    "postgres-up": (
        [series("pg_up", POSTGRES_POD, "1x5"), series("up", POSTGRES_POD, "1x5"),
         series("pg_up", STANDBY_POD, "1x5"), series("up", STANDBY_POD, "1x5")],
        [{"eval_time": "4m", "alertname": "PostgresBackendDown", "exp_alerts": []}],
    ),
    "postgres-down-in-another-namespace-or-service": (
        [series("pg_up", {**STANDBY_POD, "namespace": "other"}, "0x5"),
         series("up", {**STANDBY_POD, "namespace": "other"}, "0x5"),
         series("up", {**STANDBY_POD, "service": "other-metrics"}, "0x5")],
        [{"eval_time": "4m", "alertname": "PostgresBackendDown", "exp_alerts": []}],
    ),
    "pod-not-scraped": (
        [series("up", PGPOOL_POD, "0x5"), series("up", {**PGPOOL_POD, "pod": "pgpool-7d9c-x2"}, "1x5")],
        [{"eval_time": "3m", "alertname": "PgpoolDown", "exp_alerts": [alert(
            {**PGPOOL_POD, "severity": "critical"},
            "Pgpool-II demo/pgpool-metrics is down",
            "Prometheus cannot scrape pod pgpool-7d9c-x1: the pod is not running, or its pgpool2_exporter "
            "sidecar has not logged in to Pgpool-II as the monitor user (it opens its port only then; its log "
            "says why it cannot).")]}],
    ),
    "no-endpoints": (
        [series("up", {**PGPOOL_POD, "service": "other-metrics"}, "1x5")],
        [{"eval_time": "1m", "alertname": "PgpoolDown", "exp_alerts": []},
         {"eval_time": "3m", "alertname": "PgpoolDown", "exp_alerts": [alert(
             {"namespace": NAMESPACE, "service": PGPOOL_SERVICE, "severity": "critical"},
             "Pgpool-II demo/pgpool-metrics is down",
             "The Service has no endpoints to scrape: no Pgpool-II pod is running.")]}],
    ),
    "exporter-cannot-reach-pgpool": (
        [series("up", PGPOOL_POD, "1x5"), series("pgpool2_up", PGPOOL_POD, "0x5")],
        [{"eval_time": "3m", "alertname": "PgpoolDown", "exp_alerts": []},
         {"eval_time": "3m", "alertname": "PgpoolExporterCannotReachPgpool", "exp_alerts": [alert(
             {**PGPOOL_POD, "severity": "critical"},
             "pgpool2_exporter in demo/pgpool-7d9c-x1 cannot reach Pgpool-II",
             "The exporter answers but its connection to Pgpool-II fails: Pgpool-II does not accept connections, "
             "or the monitor user's password in pool_passwd is wrong.")]}],
    ),
    "pgpool-replication-delay": (
        [series("pgpool2_pool_nodes_replication_delay", {**PGPOOL_POD, **STANDBY_NODE}, "2097152x10"),
         series("pgpool2_pool_nodes_replication_delay", {**PGPOOL_POD, **PRIMARY_NODE}, "0x10")],
        [{"eval_time": "8m", "alertname": "PgpoolReplicationDelayHigh", "exp_alerts": [alert(
            {**PGPOOL_POD, **STANDBY_NODE, "severity": "warning"},
            "Standby pg-standby.demo.svc.cluster.local is far behind the primary",
            "Pgpool-II in demo/pgpool-7d9c-x1 measures a replication delay of 2MiB on "
            "pg-standby.demo.svc.cluster.local, above 1048576 bytes. Pgpool-II measures it only when "
            "srCheckPeriod > 0; with 0 it stays 0 and this never fires.")]}],
    ),
    # 10 SELECTs per second: 5% or fewer on the standby for 15 minutes fires; a third does not; 0.2 per second
    # all on the primary says nothing.
    "standby-gets-no-reads": (
        [series("pgpool2_pool_nodes_select_cnt", {**PGPOOL_POD, **PRIMARY_NODE}, "0+594x40"),
         series("pgpool2_pool_nodes_select_cnt", {**PGPOOL_POD, **STANDBY_NODE}, "0+6x40"),
         series("pgpool2_pool_nodes_select_cnt", {**PGPOOL_POD, "pod": "pgpool-7d9c-x2", **PRIMARY_NODE}, "0+200x40"),
         series("pgpool2_pool_nodes_select_cnt", {**PGPOOL_POD, "pod": "pgpool-7d9c-x2", **STANDBY_NODE}, "0+400x40"),
         series("pgpool2_pool_nodes_select_cnt", {**PGPOOL_POD, "pod": "pgpool-7d9c-x3", **PRIMARY_NODE}, "0+12x40"),
         series("pgpool2_pool_nodes_select_cnt", {**PGPOOL_POD, "pod": "pgpool-7d9c-x3", **STANDBY_NODE}, "0x40")],
        [{"eval_time": "12m", "alertname": "PgpoolStandbyGetsNoReads", "exp_alerts": []},
         {"eval_time": "30m", "alertname": "PgpoolStandbyGetsNoReads", "exp_alerts": [alert(
             {"namespace": NAMESPACE, "service": PGPOOL_SERVICE, "pod": "pgpool-7d9c-x1", "severity": "warning"},
             "Pgpool-II demo/pgpool-7d9c-x1 sends almost every SELECT to the primary",
             "Over 10 minutes 1% of its SELECTs went to the read-only Service. Reads stay on the primary inside a "
             "transaction that wrote (disableLoadBalanceOnWrite), in sessions that never end their transaction, "
             "or when Pgpool-II sees node 1 down or its weight is 0 (SHOW POOL_NODES).")]}],
    ),
    "postgres-replication-lag": (
        # pg-1 is behind, pg-2 is idle but fully replayed, pg-3 lost its connection to the primary.
        [series("pg_replication_lag_seconds", {"namespace": NAMESPACE, "service": "pg-stats", "pod": pod}, values)
         for pod, values in (("pg-0", "0x10"), ("pg-1", "120+60x10"), ("pg-2", "120+60x10"), ("pg-3", "600x10"))]
        + [series("pg_stat_replication_pg_wal_lsn_diff",
                  {"namespace": NAMESPACE, "service": "pg-stats", "pod": "pg-0", "application_name": name,
                   "client_addr": addr, "state": "streaming", "slot_name": ""}, values)
           for name, addr, values in (("pg-1", "10.0.4.1", "8192x10"), ("pg-2", "10.0.4.2", "0x10"))],
        [{"eval_time": "8m", "alertname": "PostgresReplicationLagHigh", "exp_alerts": [
            alert({"namespace": NAMESPACE, "service": "pg-stats", "pod": "pg-1", "severity": "warning"},
                  "PostgreSQL standby demo/pg-1 lags behind the primary",
                  "The standby last replayed a transaction 10m 0s ago while the primary has WAL it has not "
                  "replayed, or it is not connected to the primary."),
            alert({"namespace": NAMESPACE, "service": "pg-stats", "pod": "pg-3", "severity": "warning"},
                  "PostgreSQL standby demo/pg-3 lags behind the primary",
                  "The standby last replayed a transaction 10m 0s ago while the primary has WAL it has not "
                  "replayed, or it is not connected to the primary."),
        ]}],
    ),
}


@pytest.mark.parametrize("scenario", ALERT_SCENARIOS)
def test_alert_expressions_fire_on_the_right_series(promtool: str, tmp_path: Path, scenario: str) -> None:
    input_series, alert_tests = ALERT_SCENARIOS[scenario]
    settings = PrometheusSettings(replication_delay_alert_bytes=1048576)
    (tmp_path / "rules.yml").write_text(render_alert_rules(settings, PGPOOL_SERVICE, NAMESPACE, POSTGRES_SERVICE))
    unit_test = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": input_series, "alert_rule_test": alert_tests}],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(unit_test, sort_keys=False))

    output = run_promtool(promtool, "test", "rules", "test.yml", cwd=tmp_path)

    assert "SUCCESS" in output


def cache_series(**values: str) -> list[dict[str, str]]:
    return [series(f"pgpool2_pool_cache_{name}", PGPOOL_POD, text) for name, text in values.items()]


QUERY_CACHE_FULL_EXPR = f"""
    (
        max_over_time(pgpool2_pool_cache_used_cache_entries_size{{{PGPOOL}}}[10m])
          / (pgpool2_pool_cache_used_cache_entries_size{{{PGPOOL}}} + pgpool2_pool_cache_free_cache_entries_size{{{PGPOOL}}}
             + pgpool2_pool_cache_fragment_cache_entries_size{{{PGPOOL}}}) > 0.9
      or
        max_over_time(pgpool2_pool_cache_used_hash_entries{{{PGPOOL}}}[10m]) / pgpool2_pool_cache_num_hash_entries{{{PGPOOL}}}
          > 0.9
    )
    and rate(pgpool2_pool_cache_num_selects{{{PGPOOL}}}[10m]) > 0"""
"""The store (blocks: used, free, freed but not reused) or the hash table over 90% in use at some point of
the last 10 minutes, while Pgpool-II still counts SELECTs it did not serve from the cache."""
CACHE_FULL_ALERT = alert(
    {**PGPOOL_POD, "severity": "warning"}, "Query cache of Pgpool-II demo/pgpool-7d9c-x1 is full",
    "{value} of the query cache's store or hash table is in use while new results keep coming: each new result "
    "evicts a whole block of older ones, or is not cached once the hash table is full, so fewer reads are hits. "
    "Raise queryCacheTotalSize (and the pod's memory) or queryCacheMaxEntries, or keep rarely repeated tables out "
    "with queryCacheUnsafeTables.")
CACHE_SCENARIOS = {
    # 64 blocks full: evicting one frees 1/64, so the share stays high; SELECTs keep missing.
    "store-full": (cache_series(used_cache_entries_size="66000000x20", free_cache_entries_size="1108864x20",
                                fragment_cache_entries_size="0x20", used_hash_entries="1000x20",
                                num_hash_entries="131072x20", num_selects="0+100x20"), "98.35%"),
    # A two-block store swings by half at each eviction: its highest share still counts.
    "small-store-evicting": (cache_series(used_cache_entries_size=" ".join(["2000000", "1400000"] * 11),
                                          free_cache_entries_size=" ".join(["97152", "697152"] * 11),
                                          fragment_cache_entries_size="0x20", used_hash_entries="200x20",
                                          num_hash_entries="131072x20", num_selects="0+100x20"), "95.37%"),
    "hash-table-full": (cache_series(used_cache_entries_size="1000000x20", free_cache_entries_size="66108864x20",
                                     fragment_cache_entries_size="0x20", used_hash_entries="131072x20",
                                     num_hash_entries="131072x20", num_selects="0+100x20"), "100%"),
    # Full but no result missed since: nothing is evicted.
    "full-and-idle": (cache_series(used_cache_entries_size="66000000x20", free_cache_entries_size="1108864x20",
                                   fragment_cache_entries_size="0x20", used_hash_entries="1000x20",
                                   num_hash_entries="131072x20", num_selects="500x20"), None),
    "half-full": (cache_series(used_cache_entries_size="33554432x20", free_cache_entries_size="33554432x20",
                               fragment_cache_entries_size="0x20", used_hash_entries="65536x20",
                               num_hash_entries="131072x20", num_selects="0+100x20"), None),
}


def test_the_query_cache_alert_exists_only_with_the_cache_on(promtool: str) -> None:
    def alerts(query_cache: bool) -> dict[str, dict]:
        return {r["alert"]: r for g in alert_rule_groups(PrometheusSettings(), PGPOOL_SERVICE, NAMESPACE,
                                                          POSTGRES_SERVICE, query_cache) for r in g["rules"]}

    assert set(alerts(True)) - set(alerts(False)) == {"PgpoolQueryCacheFull"} and set(alerts(False)) == set(EXPECTED_RULES)
    rule = alerts(True)["PgpoolQueryCacheFull"]
    assert (rule["for"], rule["labels"]["severity"]) == ("10m", "warning")
    assert promql(promtool, rule["expr"]) == promql(promtool, QUERY_CACHE_FULL_EXPR)
    assert expressions_metrics(rule["expr"]) <= KNOWN_METRICS


@pytest.mark.parametrize("scenario", CACHE_SCENARIOS)
def test_the_query_cache_alert_fires_when_the_cache_is_full_and_evicting(promtool: str, tmp_path: Path,
                                                                          scenario: str) -> None:
    input_series, share = CACHE_SCENARIOS[scenario]
    (tmp_path / "rules.yml").write_text(render_alert_rules(PrometheusSettings(), PGPOOL_SERVICE, NAMESPACE,
                                                           POSTGRES_SERVICE, query_cache=True))
    expected = [] if share is None else [{**CACHE_FULL_ALERT, "exp_annotations": {
        **CACHE_FULL_ALERT["exp_annotations"],
        "description": CACHE_FULL_ALERT["exp_annotations"]["description"].replace("{value}", share)}}]
    unit_test = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": input_series,
        "alert_rule_test": [{"eval_time": "5m", "alertname": "PgpoolQueryCacheFull", "exp_alerts": []},
                            {"eval_time": "16m", "alertname": "PgpoolQueryCacheFull", "exp_alerts": expected}]}]}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(unit_test, sort_keys=False))

    assert "SUCCESS" in run_promtool(promtool, "test", "rules", "test.yml", cwd=tmp_path)


# --- Grafana dashboard --------------------------------------------------------------


def dashboard_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_dashboard_is_deterministic_json_with_stable_uid() -> None:
    text = render_grafana_dashboard(PGPOOL_SERVICE, NAMESPACE)
    dashboard = json.loads(text)

    assert text == render_grafana_dashboard(PGPOOL_SERVICE, NAMESPACE)
    assert text == json.dumps(dashboard, sort_keys=True, indent=2) + "\n"
    assert dashboard["schemaVersion"] == 39
    assert dashboard["uid"] != json.loads(render_grafana_dashboard("other-metrics", NAMESPACE))["uid"]
    assert len(dashboard["uid"]) <= 40


def test_dashboard_panels_use_the_datasource_variable_and_unique_ids() -> None:
    dashboard = json.loads(render_grafana_dashboard(PGPOOL_SERVICE, NAMESPACE))

    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard_panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_dashboard_panels_do_not_overlap() -> None:
    dashboard = json.loads(render_grafana_dashboard(PGPOOL_SERVICE, NAMESPACE))

    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24
        covered = {(x, y) for x in range(box["x"], box["x"] + box["w"]) for y in range(box["y"], box["y"] + box["h"])}
        assert not covered & cells, panel["title"]
        cells |= covered


def test_dashboard_covers_pgpool_and_postgres_metrics_that_exist() -> None:
    dashboard = json.loads(render_grafana_dashboard(PGPOOL_SERVICE, NAMESPACE))

    used: set[str] = set()
    for panel in dashboard_panels(dashboard):
        for target in panel["targets"]:
            metrics = expressions_metrics(target["expr"])
            assert metrics and metrics <= KNOWN_METRICS, target["expr"]
            used |= metrics
    (services,) = [v for v in dashboard["templating"]["list"] if v["name"] == "postgres_service"]
    assert services["query"]["query"] == f'label_values(pg_up{{namespace="{NAMESPACE}"}}, service)'
    assert {
        "pgpool2_up", "pgpool2_frontend_total", "pgpool2_frontend_used_ratio",
        "pgpool2_pool_nodes_select_cnt", "pgpool2_pool_nodes_replication_delay",
        "pgpool2_backend_used_ratio", "pg_up", "pg_stat_activity_count", "pg_stat_database_xact_commit",
        "pg_replication_lag_seconds",
    } <= used
    # Pgpool-II reports a stopped backend as up (no failover, no health check): no panel may say otherwise.
    assert "pgpool2_pool_nodes_status" not in used
    for expr in (t["expr"] for p in dashboard_panels(dashboard) for t in p["targets"]):
        if "pgpool2_" in expr:
            assert f'namespace="{NAMESPACE}",service="{PGPOOL_SERVICE}"' in expr


POSTGRES = 'namespace="demo",service=~"$postgres_service"'
EXPECTED_PANELS = {
    "Pgpool-II": [
        ("Pgpool-II up", "none", [f"pgpool2_up{{{PGPOOL}}}"]),
        ("Frontends (child processes) used / total", "short",
         [f"pgpool2_frontend_used_ratio{{{PGPOOL}}} * pgpool2_frontend_total{{{PGPOOL}}}",
          f"pgpool2_frontend_total{{{PGPOOL}}}"]),
        ("Frontend used ratio", "percentunit", [f"pgpool2_frontend_used_ratio{{{PGPOOL}}}"]),
        ("SELECTs per second per backend (load-balance spread)", "ops",
         [f"sum by (hostname, role) (rate(pgpool2_pool_nodes_select_cnt{{{PGPOOL}}}[$__rate_interval]))"]),
        ("Backend connection slots used ratio", "percentunit", [f"pgpool2_backend_used_ratio{{{PGPOOL}}}"]),
        ("Replication delay seen by Pgpool-II (needs srCheckPeriod > 0)", "bytes",
         [f"max by (hostname) (pgpool2_pool_nodes_replication_delay{{{PGPOOL}}})"]),
    ],
    "PostgreSQL": [
        ("PostgreSQL up", "none", [f"pg_up{{{POSTGRES}}}"]),
        ("Connections by state", "short", [f"sum by (pod, state) (pg_stat_activity_count{{{POSTGRES}}})"]),
        ("Commits per second", "ops",
         [f"sum by (pod) (rate(pg_stat_database_xact_commit{{{POSTGRES}}}[$__rate_interval]))"]),
        ("Standby replication lag", "s", [f"max by (pod) (pg_replication_lag_seconds{{{POSTGRES}}})"]),
        ("Bytes not yet replayed by each standby (primary's view)", "bytes",
         [f"max by (application_name) (pg_stat_replication_pg_wal_lsn_diff{{{POSTGRES}}})"]),
    ],
}
"""The demo stack's dashboard, row by row, written by hand: each panel's title, unit and queries."""
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$postgres_service": ".+"}
"""What Grafana puts in place of its variables before it queries; promtool parses the result."""


def test_dashboard_panels_are_the_hand_written_ones(promtool: str) -> None:
    dashboard = json.loads(render_grafana_dashboard(PGPOOL_SERVICE, NAMESPACE))
    rows: dict[str, list[tuple[str, str, list[str]]]] = {}
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            row = rows.setdefault(panel["title"], [])
            continue
        row.append((panel["title"], panel["fieldConfig"]["defaults"]["unit"], [t["expr"] for t in panel["targets"]]))
    assert {title: [(t, unit) for t, unit, _ in panels] for title, panels in rows.items()} == \
        {title: [(t, unit) for t, unit, _ in panels] for title, panels in EXPECTED_PANELS.items()}

    def grafana(expr: str) -> str:
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        return promql(promtool, expr)

    for title, panels in EXPECTED_PANELS.items():
        for (name, _, exprs), (_, _, rendered) in zip(panels, rows[title]):
            assert [grafana(e) for e in rendered] == [grafana(e) for e in exprs], name


CACHE_HITS = f"rate(pgpool2_pool_cache_num_cache_hits{{{PGPOOL}}}[$__rate_interval])"
CACHE_PANELS = [
    ("Query cache hit ratio (hits / (hits + SELECTs not served from it))", "percentunit",
     [f"{CACHE_HITS} / ({CACHE_HITS} + rate(pgpool2_pool_cache_num_selects{{{PGPOOL}}}[$__rate_interval]))"]),
    ("Query cache fullness: store and hash table in use", "percentunit",
     [f"pgpool2_pool_cache_used_cache_entries_size{{{PGPOOL}}} / (pgpool2_pool_cache_used_cache_entries_size"
      f"{{{PGPOOL}}} + pgpool2_pool_cache_free_cache_entries_size{{{PGPOOL}}} + "
      f"pgpool2_pool_cache_fragment_cache_entries_size{{{PGPOOL}}})",
      f"pgpool2_pool_cache_used_hash_entries{{{PGPOOL}}} / pgpool2_pool_cache_num_hash_entries{{{PGPOOL}}}"]),
    ("Query cache hits per second", "ops", [CACHE_HITS]),
]


def test_the_query_cache_has_a_dashboard_row_only_with_the_cache_on(promtool: str) -> None:
    rows: dict[str, list[tuple[str, str, list[str]]]] = {}
    for panel in json.loads(render_grafana_dashboard(PGPOOL_SERVICE, NAMESPACE, query_cache=True))["panels"]:
        if panel["type"] == "row":
            row = rows.setdefault(panel["title"], [])
            continue
        row.append((panel["title"], panel["fieldConfig"]["defaults"]["unit"], [t["expr"] for t in panel["targets"]]))
    assert list(rows) == ["Pgpool-II", "Pgpool-II query cache", "PostgreSQL"]

    def grafana(expr: str) -> str:
        return promql(promtool, expr.replace("$__rate_interval", "1m"))

    assert [(title, unit) for title, unit, _ in rows["Pgpool-II query cache"]] == \
        [(title, unit) for title, unit, _ in CACHE_PANELS]
    for (name, _, exprs), (_, _, rendered) in zip(CACHE_PANELS, rows["Pgpool-II query cache"]):
        assert [grafana(e) for e in rendered] == [grafana(e) for e in exprs], name
    off = json.loads(render_grafana_dashboard(PGPOOL_SERVICE, NAMESPACE))
    assert "pgpool2_pool_cache" not in json.dumps(off)


def test_dashboard_expressions_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    dashboard = json.loads(render_grafana_dashboard(PGPOOL_SERVICE, NAMESPACE))
    # Grafana replaces its variables before querying; do the same, then let promtool parse each one.
    grafana_values = {"$__rate_interval": "1m", "$postgres_service": ".+"}
    exprs = [t["expr"] for p in dashboard_panels(dashboard) for t in p["targets"]]
    for name, value in grafana_values.items():
        exprs = [e.replace(name, value) for e in exprs]
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr_{i}", "expr": expr} for i, expr in enumerate(exprs)
    ]}]}
    (tmp_path / "dashboard-exprs.yml").write_text(yaml.safe_dump(rules))

    output = run_promtool(promtool, "check", "rules", "dashboard-exprs.yml", cwd=tmp_path)

    assert f"SUCCESS: {len(exprs)} rules found" in output


# --- golden files -------------------------------------------------------------------


GOLDEN_RENDERINGS = {
    "prometheus.yml": lambda: render_prometheus_yml(PrometheusSettings(), [NAMESPACE]),
    "rules.yml": lambda: render_alert_rules(PrometheusSettings(), PGPOOL_SERVICE, NAMESPACE, POSTGRES_SERVICE),
    "dashboard.json": lambda: render_grafana_dashboard(PGPOOL_SERVICE, NAMESPACE),
}


@pytest.mark.parametrize("name", GOLDEN_RENDERINGS)
def test_rendering_matches_golden_file(name: str) -> None:
    """Review changes to the golden files; regenerate them with UPDATE_GOLDEN=1."""
    assert_matches_golden(GOLDEN_RENDERINGS[name](), GOLDEN / name)
