"""Prometheus scrape config, alert rules and Grafana dashboard for Pgpool-II and PostgreSQL.

Pure renderers: no pulumi import, no I/O, deterministic output. YAML is dumped from plain
data with PyYAML and the dashboard with json, so no value is ever pasted into text by hand.

Metric names come from the exporters the stack runs:
- pgpool2_exporter v1.2.2 (`pgpool2_*`). `pool_nodes_*` carry the labels hostname, port and
  role. `pool_nodes_status` is not used: with failover disallowed on both nodes and health
  checks off, Pgpool-II never marks a backend down, so it stays 1 while the server is stopped.
- postgres_exporter v0.15.0, the exporter KubeDB's PostgresVersion catalog ships for 16.x
  (`pg_*`). `pg_up` is 0 when it cannot connect to its server; its default `replication`
  collector exports `pg_replication_lag_seconds`.

Both exporters sit behind Services annotated `prometheus.io/scrape: "true"` (KubeDB creates
`<name>-stats` that way when the monitoring agent is `prometheus.io/builtin`), so one
EndpointSlice job scrapes them all and gives every series `namespace`, `service` and `pod` labels.
The Prometheus Operator's ServiceMonitors give the same three labels, so the alert rules
select on those and never on `job`: they work for both ways of scraping.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Sequence

import yaml

from components.settings import DNS_LABEL, PrometheusSettings

SERVICE_ENDPOINTS_JOB = "kubernetes-service-endpoints"
DISCOVERY_ROLE = "endpointslice"
"""Kubernetes service discovery through discovery.k8s.io/v1 EndpointSlices (v1 Endpoints are
deprecated since Kubernetes 1.33)."""
DISCOVERY_RBAC_RULES = (
    {"api_groups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
    {"api_groups": [""], "resources": ["services", "pods"], "verbs": ["list", "watch"]},
)
"""What the endpointslice role reads: Prometheus runs a list/watch informer on EndpointSlices,
Services and Pods of each namespace it discovers in (discovery/kubernetes/kubernetes.go)."""
PROMETHEUS_SELF_JOB = "prometheus"
PROMETHEUS_ADDRESS = "localhost:9090"
DEFAULT_RULE_FILES = ("/etc/prometheus/rules/*.yml",)

FRONTEND_USED_RATIO_ALERT = 0.9
STANDBY_READS_SHARE_ALERT = 0.05
"""Below this share of a pod's SELECTs on the standbys, load balancing is not working (the weights ask for
backendWeight1 / (backendWeight0 + backendWeight1), two thirds with the defaults)."""
READS_PER_SECOND_TO_JUDGE = 1
"""Fewer SELECTs per second than this on a pod say nothing about where they go."""
QUERY_CACHE_FULL_RATIO = 0.9
"""Share of the query cache's store or hash table in use (at most, over QUERY_CACHE_WINDOW) above which the
cache counts as full: once every block is in use, each new result evicts a whole block of older ones, and
the share then swings by one block, so the window's maximum is what is compared."""
QUERY_CACHE_WINDOW = "10m"

GRAFANA_SCHEMA_VERSION = 39


def _check_name(key: str, value: str) -> None:
    # Names end up inside PromQL string literals: a DNS label cannot break out of one.
    if not isinstance(value, str) or not DNS_LABEL.fullmatch(value):
        raise ValueError(f"{key} {value!r} is not a Kubernetes name: use lower-case letters, digits and '-'")


def _dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=4096)


# --- prometheus.yml -----------------------------------------------------------------


def _annotation(name: str) -> str:
    return f"__meta_kubernetes_service_annotation_prometheus_io_{name}"


def _service_endpoints_relabel_configs() -> list[dict[str, Any]]:
    """Relabelling of the EndpointSlice job: scrape what a Service's prometheus.io/* annotations ask for.

    The endpointslice role attaches the owning Service's and the backing Pod's meta labels exactly
    as the endpoints role did, so the same Services are kept and labelled the same way."""
    return [
        # Only Services that opt in; no restriction by name, so the pgpool metrics Service
        # and KubeDB's <name>-stats Service are both scraped.
        {"source_labels": [_annotation("scrape")], "regex": "true", "action": "keep"},
        {"source_labels": [_annotation("scheme")], "regex": "(https?)", "target_label": "__scheme__", "action": "replace"},
        {"source_labels": [_annotation("path")], "regex": "(.+)", "target_label": "__metrics_path__", "action": "replace"},
        # host[:port] + annotated port -> host:annotated port. The lazy host group also keeps
        # bracketed IPv6 hosts whole, where the usual ([^:]+) does not match at all.
        {
            "source_labels": ["__address__", _annotation("port")],
            "regex": r"(.+?)(?::\d+)?;(\d+)",
            "replacement": "$1:$2",
            "target_label": "__address__",
            "action": "replace",
        },
        # Service labels first, so the three labels below win over a Service label of the same name.
        {"regex": "__meta_kubernetes_service_label_(.+)", "action": "labelmap"},
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace", "action": "replace"},
        {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service", "action": "replace"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod", "action": "replace"},
    ]


def render_prometheus_yml(
    settings: PrometheusSettings,
    namespaces: Sequence[str] | None,
    rule_files: Sequence[str] = DEFAULT_RULE_FILES,
) -> str:
    """prometheus.yml: scrape annotated Services in `namespaces` and Prometheus itself.

    `namespaces` must be non-empty, or None for every namespace, which needs a ClusterRole: an
    empty list would silently mean every namespace too.
    """
    if namespaces is not None and (isinstance(namespaces, str) or not namespaces):
        raise ValueError(f"namespaces {namespaces!r} must list at least one namespace to discover Services in, "
                         "or be None for every namespace")
    for namespace in namespaces or ():
        _check_name("namespace", namespace)
    discovery: dict[str, Any] = {"role": DISCOVERY_ROLE}
    if namespaces is not None:
        discovery["namespaces"] = {"names": list(dict.fromkeys(namespaces))}
    config = {
        "global": {
            "scrape_interval": settings.scrape_interval,
            "evaluation_interval": settings.scrape_interval,
        },
        "rule_files": list(rule_files),
        "scrape_configs": [
            {
                "job_name": PROMETHEUS_SELF_JOB,
                "static_configs": [{"targets": [PROMETHEUS_ADDRESS]}],
            },
            {
                "job_name": SERVICE_ENDPOINTS_JOB,
                "kubernetes_sd_configs": [discovery],
                "relabel_configs": _service_endpoints_relabel_configs(),
            },
        ],
    }
    return _dump_yaml(config)


# --- alert rules --------------------------------------------------------------------


def _selector(metric: str, **labels: str) -> str:
    matchers = ",".join(f'{name}="{value}"' for name, value in labels.items())
    return f"{metric}{{{matchers}}}"


def _alert(name: str, expr: str, duration: str, severity: str, summary: str, description: str) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": duration,
        "labels": {"severity": severity},
        "annotations": {"summary": summary, "description": description},
    }


def alert_rule_groups(settings: PrometheusSettings, pgpool_service: str, namespace: str,
                      postgres_metrics_service: str, query_cache: bool = False) -> list[dict[str, Any]]:
    """Alert rule groups as data: the rules file's `groups` and a PrometheusRule's `spec.groups`.

    `pgpool_service` is the Service in front of the pgpool2_exporter sidecars (the one the
    scrape annotations or ServiceMonitor select); `namespace` is where it and the database run.
    `postgres_metrics_service` is the Service in front of the postgres_exporter sidecars
    (KubeDB's `<name>-stats`), or "" when the stack does not know one: a PostgreSQL pod whose
    exporter is gone then goes unnoticed, one whose server is down still alerts. `query_cache`: the stack
    runs Pgpool-II's query cache, whose alert exists only then.
    """
    _check_name("pgpool_service", pgpool_service)
    _check_name("namespace", namespace)
    if postgres_metrics_service:
        _check_name("postgres_metrics_service", postgres_metrics_service)
    return [
        {"name": "pgpool", "rules": _pgpool_rules(settings, pgpool_service, namespace)
         + (_query_cache_rules(pgpool_service, namespace) if query_cache else [])},
        {"name": "postgres", "rules": _postgres_rules(settings, namespace, postgres_metrics_service)},
    ]


def _pgpool_rules(settings: PrometheusSettings, pgpool_service: str, namespace: str) -> list[dict[str, Any]]:
    """Pgpool-II's pods and their pgpool2_exporter sidecars."""
    pgpool = {"namespace": namespace, "service": pgpool_service}
    target_up = _selector("up", **pgpool)
    delay_bytes = settings.replication_delay_alert_bytes
    return [
        _alert(
            "PgpoolDown",
            f"{target_up} == 0 or absent({target_up})",
            "2m", "critical",
            "Pgpool-II {{ $labels.namespace }}/{{ $labels.service }} is down",
            "{{ if $labels.pod }}Prometheus cannot scrape pod {{ $labels.pod }}: the pod is not running, or "
            "its pgpool2_exporter sidecar has not logged in to Pgpool-II as the monitor user (it opens its "
            "port only then; its log says why it cannot).{{ else }}The Service has no endpoints to scrape: "
            "no Pgpool-II pod is running.{{ end }}",
        ),
        _alert(
            "PgpoolExporterCannotReachPgpool",
            f"{_selector('pgpool2_up', **pgpool)} == 0",
            "1m", "critical",
            "pgpool2_exporter in {{ $labels.namespace }}/{{ $labels.pod }} cannot reach Pgpool-II",
            "The exporter answers but its connection to Pgpool-II fails: Pgpool-II does not accept "
            "connections, or the monitor user's password in pool_passwd is wrong.",
        ),
        _alert(
            "PgpoolFrontendsNearlyExhausted",
            f"{_selector('pgpool2_frontend_used_ratio', **pgpool)} > {FRONTEND_USED_RATIO_ALERT}",
            "5m", "warning",
            "Pgpool-II {{ $labels.namespace }}/{{ $labels.pod }} is running out of child processes",
            "{{ $value | humanizePercentage }} of the child processes (num_init_children) are in use; "
            "new clients wait or are refused. Raise numInitChildren within the backends' "
            "max_connections, or add Pgpool-II replicas.",
        ),
        _standby_reads_alert(pgpool),
        _alert(
            "PgpoolReplicationDelayHigh",
            f"{_selector('pgpool2_pool_nodes_replication_delay', **pgpool)} > {delay_bytes}",
            "5m", "warning",
            "Standby {{ $labels.hostname }} is far behind the primary",
            "Pgpool-II in {{ $labels.namespace }}/{{ $labels.pod }} measures a replication delay of "
            f"{{{{ $value | humanize1024 }}}}B on {{{{ $labels.hostname }}}}, above {delay_bytes} bytes. "
            "Pgpool-II measures it only when srCheckPeriod > 0; with 0 it stays 0 and this never fires.",
        ),
    ]


def _standby_reads_alert(pgpool: dict[str, str]) -> dict[str, Any]:
    """Users' most frequent complaint: every SELECT goes to the primary ("load balancing does not work")."""
    by_pod = "sum by (namespace, service, pod)"
    selects = f"rate({_selector('pgpool2_pool_nodes_select_cnt', **pgpool)}[10m])"
    on_standbys = f"rate({_selector('pgpool2_pool_nodes_select_cnt', **pgpool, role='standby')}[10m])"
    return _alert(
        "PgpoolStandbyGetsNoReads",
        f"{by_pod} ({on_standbys}) / {by_pod} ({selects}) < {STANDBY_READS_SHARE_ALERT} "
        f"and on (namespace, service, pod) {by_pod} ({selects}) > {READS_PER_SECOND_TO_JUDGE}",
        "15m", "warning",
        "Pgpool-II {{ $labels.namespace }}/{{ $labels.pod }} sends almost every SELECT to the primary",
        "Over 10 minutes {{ $value | humanizePercentage }} of its SELECTs went to the read-only Service. Reads "
        "stay on the primary inside a transaction that wrote (disableLoadBalanceOnWrite), in sessions that never "
        "end their transaction, or when Pgpool-II sees node 1 down or its weight is 0 (SHOW POOL_NODES).",
    )


def _query_cache_rules(pgpool_service: str, namespace: str) -> list[dict[str, Any]]:
    """The query cache full while it keeps taking new results: it evicts, or stops caching."""
    def cache(name: str) -> str:
        return _selector(f"pgpool2_pool_cache_{name}", namespace=namespace, service=pgpool_service)

    window = QUERY_CACHE_WINDOW
    store = (f"max_over_time({cache('used_cache_entries_size')}[{window}]) / ({cache('used_cache_entries_size')} "
             f"+ {cache('free_cache_entries_size')} + {cache('fragment_cache_entries_size')})")
    hash_table = f"max_over_time({cache('used_hash_entries')}[{window}]) / {cache('num_hash_entries')}"
    caching = f"rate({cache('num_selects')}[{window}]) > 0"  # counters, though the exporter says gauges
    return [_alert(
        "PgpoolQueryCacheFull",
        f"({store} > {QUERY_CACHE_FULL_RATIO} or {hash_table} > {QUERY_CACHE_FULL_RATIO}) and {caching}",
        window, "warning",
        "Query cache of Pgpool-II {{ $labels.namespace }}/{{ $labels.pod }} is full",
        "{{ $value | humanizePercentage }} of the query cache's store or hash table is in use while new results "
        "keep coming: each new result evicts a whole block of older ones, or is not cached once the hash table "
        "is full, so fewer reads are hits. Raise queryCacheTotalSize (and the pod's memory) or "
        "queryCacheMaxEntries, or keep rarely repeated tables out with queryCacheUnsafeTables.",
    )]


def _postgres_rules(settings: PrometheusSettings, namespace: str, postgres_metrics_service: str) -> list[dict[str, Any]]:
    """The PostgreSQL servers, through their postgres_exporter sidecars."""
    lag = _selector("pg_replication_lag_seconds", namespace=namespace)
    # The lag is the age of the last replayed transaction, so it also grows on an idle cluster;
    # drop standbys the primary reports as fully replayed (application_name is the pod name).
    caught_up = (
        f'label_replace({_selector("pg_stat_replication_pg_wal_lsn_diff", namespace=namespace)} == 0, '
        '"pod", "$1", "application_name", "(.+)")'
    )
    # Either part gives the series of one pod the same labels, so the alert stays one alert
    # (and keeps its pending time) when a dead server's pod then loses its exporter too.
    backend_down = f'{_selector("pg_up", namespace=namespace)} == 0'
    if postgres_metrics_service:
        backend_down += f' or {_selector("up", namespace=namespace, service=postgres_metrics_service)} == 0'
    return [
        _alert(
            "PostgresBackendDown",
            backend_down,
            "1m", "critical",
            "PostgreSQL {{ $labels.namespace }}/{{ $labels.pod }} is down",
            "Pod {{ $labels.pod }}: postgres_exporter cannot connect to PostgreSQL, or Prometheus cannot "
            "scrape the pod's exporter. Pgpool-II does not detach the backend (failover is off), so "
            "sessions it routes to this server fail until it is back.",
        ),
        _alert(
            "PostgresReplicationLagHigh",
            f"{lag} > {settings.replication_lag_alert_seconds} unless on (namespace, pod) {caught_up}",
            "5m", "warning",
            "PostgreSQL standby {{ $labels.namespace }}/{{ $labels.pod }} lags behind the primary",
            "The standby last replayed a transaction {{ $value | humanizeDuration }} ago while the "
            "primary has WAL it has not replayed, or it is not connected to the primary.",
        ),
    ]


def render_alert_rules(settings: PrometheusSettings, pgpool_service: str, namespace: str,
                       postgres_metrics_service: str, query_cache: bool = False) -> str:
    """A Prometheus rules file holding alert_rule_groups()."""
    return _dump_yaml({"groups": alert_rule_groups(settings, pgpool_service, namespace, postgres_metrics_service,
                                                   query_cache)})


# --- Grafana dashboard --------------------------------------------------------------

_DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
_PANEL_HEIGHT = 8
_PANEL_WIDTH = 12


def _target(expr: str, legend: str, ref: str) -> dict[str, Any]:
    return {"datasource": _DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref}


def _panel(kind: str, title: str, unit: str, targets: Sequence[tuple[str, str]],
           defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """A panel of `kind` plotting (expr, legend) targets; `defaults` adds field settings."""
    return {
        "type": kind,
        "title": title,
        "datasource": _DATASOURCE,
        "fieldConfig": {"defaults": {"unit": unit, **(defaults or {})}, "overrides": []},
        "targets": [_target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(targets)],
    }


def _up_down_mappings() -> dict[str, Any]:
    return {
        "mappings": [
            {"type": "value", "options": {"0": {"text": "DOWN", "color": "red"}, "1": {"text": "UP", "color": "green"}}}
        ],
        "thresholds": {"mode": "absolute", "steps": [{"color": "red", "value": None}, {"color": "green", "value": 1}]},
    }


def _layout(sections: Sequence[tuple[str, Sequence[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Give every panel an id and a place: a row header per section, then two panels a line."""
    laid_out: list[dict[str, Any]] = []
    y = 0
    for title, panels in sections:
        laid_out.append({"type": "row", "title": title, "collapsed": False, "panels": [],
                         "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})
        y += 1
        for i, panel in enumerate(panels):
            panel["gridPos"] = {"h": _PANEL_HEIGHT, "w": _PANEL_WIDTH, "x": (i % 2) * _PANEL_WIDTH,
                                "y": y + (i // 2) * _PANEL_HEIGHT}
            laid_out.append(panel)
        y += -(-len(panels) // 2) * _PANEL_HEIGHT
    for panel_id, panel in enumerate(laid_out, start=1):
        panel["id"] = panel_id
    return laid_out


def render_grafana_dashboard(pgpool_service: str, namespace: str, query_cache: bool = False) -> str:
    """Grafana dashboard JSON for one Pgpool-II and the PostgreSQL servers in its namespace; with
    `query_cache`, a section for Pgpool-II's query cache."""
    _check_name("pgpool_service", pgpool_service)
    _check_name("namespace", namespace)
    dashboard = {
        "uid": "pgpool-" + hashlib.sha256(f"{namespace}/{pgpool_service}".encode()).hexdigest()[:16],
        "title": f"Pgpool-II {namespace}/{pgpool_service}",
        "tags": ["pgpool", "postgresql"],
        "schemaVersion": GRAFANA_SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "browser",
        "templating": {"list": _variables(namespace)},
        "annotations": {"list": []},
        "panels": _layout(_sections(f'namespace="{namespace}",service="{pgpool_service}"',
                                    f'namespace="{namespace}",service=~"$postgres_service"', query_cache)),
    }
    return json.dumps(dashboard, sort_keys=True, indent=2) + "\n"


def _sections(pgpool: str, postgres: str, query_cache: bool) -> list[tuple[str, list[dict[str, Any]]]]:
    cache = [("Pgpool-II query cache", _query_cache_panels(pgpool))] if query_cache else []
    return [("Pgpool-II", _pgpool_panels(pgpool)), *cache, ("PostgreSQL", _postgres_panels(postgres))]


def _query_cache_panels(pgpool: str) -> list[dict[str, Any]]:
    """Hits against the SELECTs Pgpool-II counted, and how full the store and the hash table are."""
    def cache(name: str) -> str:
        return f"pgpool2_pool_cache_{name}{{{pgpool}}}"

    rate = "$__rate_interval"
    hits, selects = f"rate({cache('num_cache_hits')}[{rate}])", f"rate({cache('num_selects')}[{rate}])"
    return [
        # Pgpool-II's own cache_hit_ratio counts since its start; this one follows the traffic.
        _panel("timeseries", "Query cache hit ratio (hits / (hits + SELECTs not served from it))", "percentunit",
               [(f"{hits} / ({hits} + {selects})", "{{pod}}")]),
        _panel("timeseries", "Query cache fullness: store and hash table in use", "percentunit", [
            (f"{cache('used_cache_entries_size')} / ({cache('used_cache_entries_size')} + "
             f"{cache('free_cache_entries_size')} + {cache('fragment_cache_entries_size')})", "store {{pod}}"),
            (f"{cache('used_hash_entries')} / {cache('num_hash_entries')}", "hash table {{pod}}"),
        ]),
        _panel("timeseries", "Query cache hits per second", "ops", [(hits, "{{pod}}")]),
    ]


def _pgpool_panels(pgpool: str) -> list[dict[str, Any]]:
    """Panels of the pgpool2_exporter series selected by `pgpool` (label matchers)."""
    rate = "$__rate_interval"
    return [
        _panel("stat", "Pgpool-II up", "none", [(f"pgpool2_up{{{pgpool}}}", "{{pod}}")],
               defaults=_up_down_mappings()),
        # pgpool2_frontend_used has a series per user and database in use, none when idle;
        # ratio * total is the same number and always present.
        _panel("timeseries", "Frontends (child processes) used / total", "short", [
            (f"pgpool2_frontend_used_ratio{{{pgpool}}} * pgpool2_frontend_total{{{pgpool}}}", "used {{pod}}"),
            (f"pgpool2_frontend_total{{{pgpool}}}", "total {{pod}}"),
        ]),
        _panel("timeseries", "Frontend used ratio", "percentunit",
               [(f"pgpool2_frontend_used_ratio{{{pgpool}}}", "{{pod}}")]),
        _panel("timeseries", "SELECTs per second per backend (load-balance spread)", "ops",
               [(f"sum by (hostname, role) (rate(pgpool2_pool_nodes_select_cnt{{{pgpool}}}[{rate}]))",
                 "{{hostname}} ({{role}})")]),
        _panel("timeseries", "Backend connection slots used ratio", "percentunit",
               [(f"pgpool2_backend_used_ratio{{{pgpool}}}", "{{pod}}")]),
        _panel("timeseries", "Replication delay seen by Pgpool-II (needs srCheckPeriod > 0)", "bytes",
               [(f"max by (hostname) (pgpool2_pool_nodes_replication_delay{{{pgpool}}})", "{{hostname}}")]),
    ]


def _postgres_panels(postgres: str) -> list[dict[str, Any]]:
    """Panels of the postgres_exporter series selected by `postgres` (label matchers)."""
    rate = "$__rate_interval"
    return [
        # Per pod from its own exporter: Pgpool-II's node status stays up while a server is down.
        _panel("stat", "PostgreSQL up", "none", [(f"pg_up{{{postgres}}}", "{{pod}}")],
               defaults=_up_down_mappings()),
        _panel("timeseries", "Connections by state", "short",
               [(f"sum by (pod, state) (pg_stat_activity_count{{{postgres}}})", "{{pod}} {{state}}")]),
        _panel("timeseries", "Commits per second", "ops",
               [(f"sum by (pod) (rate(pg_stat_database_xact_commit{{{postgres}}}[{rate}]))", "{{pod}}")]),
        _panel("timeseries", "Standby replication lag", "s",
               [(f"max by (pod) (pg_replication_lag_seconds{{{postgres}}})", "{{pod}}")]),
        _panel("timeseries", "Bytes not yet replayed by each standby (primary's view)", "bytes",
               [(f"max by (application_name) (pg_stat_replication_pg_wal_lsn_diff{{{postgres}}})",
                 "{{application_name}}")]),
    ]


def _variables(namespace: str) -> list[dict[str, Any]]:
    """The data source, and the PostgreSQL metrics Services of the namespace to show."""
    services_query = f'label_values(pg_up{{namespace="{namespace}"}}, service)'
    return [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0, "options": [], "refresh": 1, "regex": ""},
        {"name": "postgres_service", "label": "PostgreSQL metrics Service", "type": "query",
         "datasource": _DATASOURCE, "definition": services_query,
         "query": {"query": services_query, "refId": "PostgresServices"},
         "current": {}, "hide": 0, "includeAll": True, "allValue": ".+", "multi": True,
         "options": [], "refresh": 2, "regex": "", "sort": 1},
    ]
