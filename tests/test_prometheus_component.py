"""The Prometheus component under mocks: RBAC, scrape config, rules, the server, or the operator's objects."""

from __future__ import annotations

import json
import posixpath
import re

import pytest
import yaml

from tests.test_monitoring_config import EXPECTED_PANELS, EXPECTED_RULES

MONITORING_OPERATOR = "kubernetes:monitoring.coreos.com/v1"


def server_deployment(run) -> dict:
    return run.find("apps/v1:Deployment", "prometheus").props


def server_container(run) -> dict:
    [container] = server_deployment(run)["spec"]["template"]["spec"]["containers"]
    return container


def mount_of(run, volume_name) -> str:
    [path] = [m["mountPath"] for m in server_container(run)["volumeMounts"] if m["name"] == volume_name]
    return path


def volume_of(run, name) -> dict:
    [found] = [v for v in server_deployment(run)["spec"]["template"]["spec"]["volumes"] if v["name"] == name]
    return found


def flag(run, name) -> str:
    [value] = [a.split("=", 1)[1] for a in server_container(run)["args"] if a.startswith(f"--{name}=")]
    return value


def alert_names(groups) -> set[str]:
    return {rule["alert"] for group in groups for rule in group["rules"]}


EXPECTED_ALERTS = set(EXPECTED_RULES)
"""Written by hand in tests/test_monitoring_config.py."""


def backend_down_expr(groups) -> str:
    [expr] = [rule["expr"] for group in groups for rule in group["rules"] if rule["alert"] == "PostgresBackendDown"]
    return expr


def config_map(run, resource_name) -> dict:
    return run.find("core/v1:ConfigMap", resource_name).props


def rules_file_groups(run) -> list:
    [text] = config_map(run, "prometheus-rules")["data"].values()
    return yaml.safe_load(text)["groups"]


# --- RBAC -----------------------------------------------------------------------------------

RBAC = "rbac.authorization.k8s.io/v1"
ENDPOINTSLICE_DISCOVERY_NEEDS = {
    ("discovery.k8s.io", "endpointslices", "list"), ("discovery.k8s.io", "endpointslices", "watch"),
    ("", "services", "list"), ("", "services", "watch"), ("", "pods", "list"), ("", "pods", "watch"),
}
"""Prometheus v3.5.0 discovery/kubernetes/kubernetes.go, role endpointslice: one list/watch informer each
on DiscoveryV1().EndpointSlices, CoreV1().Services and CoreV1().Pods of every namespace it discovers in."""


def grants(role) -> set[tuple[str, str, str]]:
    """(API group, resource, verb) triples a (Cluster)Role grants; AssertionError on anything else."""
    triples = set()
    for rule in role.props["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule  # no resourceNames, no nonResourceURLs
        triples |= {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    return triples


def discovery_config(run) -> list:
    config = yaml.safe_load(config_map(run, "prometheus-config")["data"]["prometheus.yml"])
    [job] = [j for j in config["scrape_configs"] if "kubernetes_sd_configs" in j]
    return job["kubernetes_sd_configs"]


def test_discovery_rbac_is_namespaced_and_exactly_what_endpointslice_discovery_needs(dev_run):
    account = dev_run.find("core/v1:ServiceAccount", "prometheus").props
    assert account["metadata"]["namespace"] == "pgpool-dev"
    assert dev_run.of_type(f"{RBAC}:ClusterRole") == dev_run.of_type(f"{RBAC}:ClusterRoleBinding") == []
    [role] = dev_run.of_type(f"{RBAC}:Role")
    assert role.props["metadata"]["namespace"] == "pgpool-dev"
    assert grants(role) == ENDPOINTSLICE_DISCOVERY_NEEDS
    [binding] = dev_run.of_type(f"{RBAC}:RoleBinding")
    assert binding.props["metadata"]["namespace"] == "pgpool-dev"
    assert binding.props["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                        "name": role.props["metadata"]["name"]}
    assert binding.props["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                          "namespace": "pgpool-dev"}]
    pod = server_deployment(dev_run)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert discovery_config(dev_run) == [{"role": "endpointslice", "namespaces": {"names": ["pgpool-dev"]}}]


def test_cross_namespace_discovery_grants_a_role_in_each_namespace(stack_run):
    run = stack_run(prometheusDiscoveryNamespaces='["team-a", "pgpool-dev", "team-b"]')
    roles = {r.props["metadata"]["namespace"]: r for r in run.of_type(f"{RBAC}:Role")}
    assert sorted(roles) == ["pgpool-dev", "team-a", "team-b"]
    assert all(grants(role) == ENDPOINTSLICE_DISCOVERY_NEEDS for role in roles.values())
    bindings = {b.props["metadata"]["namespace"]: b for b in run.of_type(f"{RBAC}:RoleBinding")}
    assert sorted(bindings) == sorted(roles)
    for namespace, binding in bindings.items():
        assert binding.props["roleRef"]["name"] == roles[namespace].props["metadata"]["name"]
        assert binding.props["subjects"][0]["namespace"] == "pgpool-dev"  # Prometheus' own account
    assert run.of_type(f"{RBAC}:ClusterRole") == []
    assert discovery_config(run) == [
        {"role": "endpointslice", "namespaces": {"names": ["pgpool-dev", "team-a", "team-b"]}}]


def test_every_namespace_takes_a_cluster_role_only_when_asked_for(stack_run):
    run = stack_run(prometheusDiscoveryNamespaces='["*"]')
    assert run.of_type(f"{RBAC}:Role") == []
    [role] = run.of_type(f"{RBAC}:ClusterRole")
    assert grants(role) == ENDPOINTSLICE_DISCOVERY_NEEDS
    [binding] = run.of_type(f"{RBAC}:ClusterRoleBinding")
    assert binding.props["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                        "name": role.props["metadata"]["name"]}
    assert discovery_config(run) == [{"role": "endpointslice"}]


# --- changes roll the server in place ---------------------------------------------------------


def test_config_maps_are_named_by_pulumi_and_mounted_through_their_output_names(dev_run):
    """A changed ConfigMap is then created anew before the old one goes, and only the Deployment's pod
    template changes: the Deployment is updated (rolled), never deleted or replaced."""
    [deployment] = [r for r in dev_run.registrations if r.type == "kubernetes:apps/v1:Deployment" and r.name == "prometheus"]
    for volume, resource_name in (("config", "prometheus-config"), ("rules", "prometheus-rules")):
        config = dev_run.find("core/v1:ConfigMap", resource_name)
        assert config.auto_named
        generated = config.props["metadata"]["name"]
        assert generated.startswith(f"{resource_name}-")
        assert volume_of(dev_run, volume)["configMap"]["name"] == generated
        assert dev_run.registration(config).urn in deployment.property_dependencies["spec"]
    assert "checksum/config" not in server_deployment(dev_run)["spec"]["template"]["metadata"].get("annotations", {})


def test_service_selects_the_pods_by_plain_labels_not_the_deployments_output(dev_run):
    """A selector read back from the Deployment would make the Service wait for every rollout."""
    service = dev_run.find("core/v1:Service", "prometheus")
    deployment = dev_run.find("apps/v1:Deployment", "prometheus")
    selector = service.props["spec"]["selector"]
    assert selector == deployment.props["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment.props["spec"]["template"]["metadata"]["labels"].items()
    deployment_urn = dev_run.registration(deployment).urn
    assert deployment_urn not in dev_run.registration(service).dependencies


# --- configuration --------------------------------------------------------------------------


def test_scrape_config_discovers_annotated_services_of_the_stack_namespace(dev_run):
    config_map = dev_run.find("core/v1:ConfigMap", "prometheus-config").props
    config = yaml.safe_load(config_map["data"]["prometheus.yml"])
    [job] = [j for j in config["scrape_configs"] if "kubernetes_sd_configs" in j]
    assert job["kubernetes_sd_configs"] == [{"role": "endpointslice", "namespaces": {"names": ["pgpool-dev"]}}]
    relabel = {tuple(r.get("source_labels", [])): r for r in job["relabel_configs"]}
    keep = relabel[("__meta_kubernetes_service_annotation_prometheus_io_scrape",)]
    assert (keep["action"], keep["regex"]) == ("keep", "true")
    path = relabel[("__meta_kubernetes_service_annotation_prometheus_io_path",)]
    assert path["target_label"] == "__metrics_path__"
    port = relabel[("__address__", "__meta_kubernetes_service_annotation_prometheus_io_port")]
    assert port["target_label"] == "__address__"
    assert config["global"]["scrape_interval"] == "15s"
    # The server reads the file from where the ConfigMap is mounted.
    assert volume_of(dev_run, "config")["configMap"]["name"] == config_map["metadata"]["name"]
    assert flag(dev_run, "config.file") == posixpath.join(mount_of(dev_run, "config"), "prometheus.yml")


def test_rules_config_map_holds_the_alerts(dev_run):
    rules_map = dev_run.find("core/v1:ConfigMap", "prometheus-rules").props
    [(file_name, text)] = rules_map["data"].items()
    assert alert_names(yaml.safe_load(text)["groups"]) == EXPECTED_ALERTS
    assert {"PgpoolDown", "PostgresBackendDown", "PostgresReplicationLagHigh"} <= EXPECTED_ALERTS
    config = yaml.safe_load(dev_run.find("core/v1:ConfigMap", "prometheus-config").props["data"]["prometheus.yml"])
    [rule_glob] = config["rule_files"]
    assert posixpath.dirname(rule_glob) == mount_of(dev_run, "rules")
    assert file_name.endswith(posixpath.basename(rule_glob).lstrip("*"))
    assert volume_of(dev_run, "rules")["configMap"]["name"] == rules_map["metadata"]["name"]


def test_backend_down_alert_watches_kubedbs_stats_service_when_kubedb_runs_exporters(dev_run, stack_run):
    # KubeDB names the Service in front of its postgres_exporter sidecars <clusterName>-stats.
    assert backend_down_expr(rules_file_groups(dev_run)) == (
        'pg_up{namespace="pgpool-dev"} == 0 or up{namespace="pgpool-dev",service="pg-stats"} == 0')
    renamed = stack_run(clusterName="orders")
    assert 'service="orders-stats"' in backend_down_expr(rules_file_groups(renamed))
    for unknown in (stack_run(postgresMonitoring="false"), stack_run(operator="cloudnativepg", users='["orders"]')):
        assert backend_down_expr(rules_file_groups(unknown)) == 'pg_up{namespace="pgpool-dev"} == 0'


# --- the server -----------------------------------------------------------------------------


def test_server_deployment(stack_run):
    run = stack_run(prometheusImage="prom/prometheus:v3.4.2", prometheusRetention="30d")
    container = server_container(run)
    assert container["image"] == "prom/prometheus:v3.4.2"
    assert flag(run, "storage.tsdb.retention.time") == "30d"
    pod = server_deployment(run)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "web"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "web"}
    assert set(container["resources"]["requests"]) == set(container["resources"]["limits"]) == {"cpu", "memory"}
    assert flag(run, "storage.tsdb.path") == mount_of(run, "data")
    assert server_deployment(run)["spec"]["strategy"] == {"type": "Recreate"}  # one writer per TSDB


def test_storage_empty_dir_or_claim(dev_run, stack_run):
    assert volume_of(dev_run, "data")["emptyDir"] == {"sizeLimit": "2Gi"}
    assert dev_run.of_type("core/v1:PersistentVolumeClaim") == []
    run = stack_run(prometheusStorage="pvc", prometheusStorageSize="10Gi")
    [claim] = run.of_type("core/v1:PersistentVolumeClaim")
    assert claim.props["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert volume_of(run, "data") == {"name": "data",
                                      "persistentVolumeClaim": {"claimName": claim.props["metadata"]["name"]}}


def test_service_on_9090(dev_run):
    service = dev_run.find("core/v1:Service", "prometheus").props["spec"]
    assert service["ports"] == [{"name": "web", "port": 9090, "targetPort": "web"}]
    assert {"name": "web", "containerPort": 9090} in server_container(dev_run)["ports"]
    assert service["selector"] == server_deployment(dev_run)["spec"]["selector"]["matchLabels"]
    assert dev_run.outputs["prometheusUrl"] == "http://prometheus.pgpool-dev.svc.cluster.local:9090"


# --- the Prometheus Operator ------------------------------------------------------------------


def test_operator_mode_emits_service_monitor_and_rule_instead_of_a_server(stack_run):
    run = stack_run(prometheusOperator="true")
    [monitor] = [r for r in run.resources if r.type == f"{MONITORING_OPERATOR}:ServiceMonitor"]
    [rule] = [r for r in run.resources if r.type == f"{MONITORING_OPERATOR}:PrometheusRule"]
    assert alert_names(rule.props["spec"]["groups"]) == EXPECTED_ALERTS
    assert 'service="pg-stats"' in backend_down_expr(rule.props["spec"]["groups"])
    metrics = run.find("core/v1:Service", "pgpool-metrics").props
    spec = monitor.props["spec"]
    assert spec["selector"]["matchLabels"].items() <= metrics["metadata"]["labels"].items()
    assert spec["namespaceSelector"] == {"matchNames": ["pgpool-dev"]}
    [endpoint] = spec["endpoints"]
    assert endpoint["port"] in {p["name"] for p in metrics["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    # A ServiceMonitor must not also select the client Service, which has no metrics port.
    client = run.find("core/v1:Service", "pgpool").props
    assert not spec["selector"]["matchLabels"].items() <= client["metadata"]["labels"].items()
    for absent in ("apps/v1:Deployment", f"{RBAC}:ClusterRole", f"{RBAC}:ClusterRoleBinding", f"{RBAC}:Role",
                   f"{RBAC}:RoleBinding", "core/v1:ServiceAccount"):
        assert [r.name for r in run.of_type(absent) if "prometheus" in r.name] == [], absent
    assert run.outputs["prometheusUrl"] == ""


def test_operator_selection_labels_reach_every_object_the_operator_selects(stack_run):
    """kube-prometheus-stack's Prometheus selects ServiceMonitors and PrometheusRules by release=<release>
    (serviceMonitorSelectorNilUsesHelmValues); without the label they are silently never loaded."""
    run = stack_run(prometheusOperator="true", prometheusOperatorLabels='["release=kube-prometheus-stack"]')
    selected = [r for r in run.resources if r.type in (f"{MONITORING_OPERATOR}:ServiceMonitor",
                                                       f"{MONITORING_OPERATOR}:PrometheusRule")]
    assert len(selected) == 2
    for resource in selected:
        assert resource.props["metadata"]["labels"]["release"] == "kube-prometheus-stack", resource.name
    [postgres] = run.of_type("kubedb.com/v1:Postgres")
    kubedb_monitor = postgres.props["spec"]["monitor"]["prometheus"]["serviceMonitor"]
    assert kubedb_monitor["labels"]["release"] == "kube-prometheus-stack"
    # The stack's own workloads are not relabelled.
    assert "release" not in run.find("apps/v1:Deployment", "pgpool").props["metadata"]["labels"]


def test_no_monitoring_objects_without_prometheus(stack_run):
    run = stack_run(prometheus="false")
    assert [r for r in run.resources if r.type == "pgpool-k8s:index:Prometheus"] == []
    assert [r.name for r in run.kubernetes_objects() if "prometheus" in r.name or "dashboard" in r.name] == []
    assert run.outputs["prometheusUrl"] == ""


# --- Grafana --------------------------------------------------------------------------------


def dashboards(run) -> list:
    """ConfigMaps Grafana's sidecar loads (it watches for the grafana_dashboard label)."""
    return [c for c in run.of_type("core/v1:ConfigMap") if c.props["metadata"]["labels"].get("grafana_dashboard") == "1"]


def pgpool_selectors(board: dict) -> set[str]:
    """The label matchers of every Pgpool-II panel's queries."""
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", []) if "pgpool2_" in t["expr"]]
    return {m for expr in exprs for m in re.findall(r"pgpool2_\w+\{([^}]*)\}", expr)}


@pytest.mark.parametrize("overrides", [{}, {"prometheusOperator": "true"},
                                       {"namespace": "shop-db", "pgpoolName": "pool"}])
def test_grafana_dashboard_shows_this_stacks_pgpool(stack_run, overrides):
    run = stack_run(**overrides)
    [dashboard] = dashboards(run)
    namespace, metrics = run.outputs["namespace"], run.find("core/v1:Service", f"{overrides.get('pgpoolName', 'pgpool')}"
                                                                                "-metrics").props["metadata"]["name"]
    assert dashboard.props["metadata"]["namespace"] == namespace
    [(file_name, text)] = dashboard.props["data"].items()
    assert file_name.endswith(".json")
    # Every Pgpool-II panel reads the series Prometheus labels with this stack's metrics Service.
    board = json.loads(text)
    assert pgpool_selectors(board) == {f'namespace="{namespace}",service="{metrics}"'}
    assert board["title"] == f"Pgpool-II {namespace}/{metrics}"
    assert [p["title"] for p in board["panels"]] == [
        title for row, panels in EXPECTED_PANELS.items() for title in [row, *(panel[0] for panel in panels)]]
    [services] = [v for v in board["templating"]["list"] if v["name"] == "postgres_service"]
    assert services["query"]["query"] == f'label_values(pg_up{{namespace="{namespace}"}}, service)'


def test_no_grafana_dashboard_when_turned_off(stack_run):
    assert dashboards(stack_run(grafanaDashboard="false")) == []
