"""What the components do for issue 23's findings, under mocks: the NetworkPolicies of the database's
pods and of Prometheus (whose peers select the real pods' labels), production's protection of the
namespace and the database, and TLS from Pgpool-II to KubeDB's PostgreSQL, verified against its CA.
The data plane enforces and exercises the same objects (tests/dataplane/test_network_policies.py,
tests/dataplane/test_security.py)."""

from __future__ import annotations

import pytest

from tests.program_run import production_config
from tests.test_kubedb_component import POSTGRES, postgres
from tests.test_pgpool_component import container, env_of, pgpool_conf, volume

POLICY = "networking.k8s.io/v1:NetworkPolicy"
KUBEDB_PODS = {"app.kubernetes.io/name": "postgreses.kubedb.com", "app.kubernetes.io/instance": "pg",
               "app.kubernetes.io/managed-by": "kubedb.com"}


def policy(run, name: str) -> dict:
    return run.find(POLICY, name).props["spec"]


def template_labels(run, type_suffix: str, name: str) -> dict:
    [found] = [r for r in run.of_type(type_suffix) if r.name == name]
    return found.props["spec"]["template"]["metadata"]["labels"]


def selects(peer: dict, labels: dict) -> bool:
    return peer["podSelector"]["matchLabels"].items() <= labels.items() and "namespaceSelector" not in peer


def test_every_pod_of_the_stack_is_selected_by_a_policy_by_default(dev_run, stack_run):
    assert {r.name for r in dev_run.of_type(POLICY)} == {"pgpool", "pg", "prometheus"}
    assert stack_run(networkPolicy="false").of_type(POLICY) == []
    assert policy(dev_run, "pg")["podSelector"] == {"matchLabels": KUBEDB_PODS}


def test_the_database_admits_pgpool_the_job_itself_its_operator_and_prometheus(dev_run, stack_run):
    rules = policy(dev_run, "pg")["ingress"]
    assert [rule.get("ports") for rule in rules] == [
        [{"port": 5432, "protocol": "TCP"}], None, None, [{"port": 56790, "protocol": "TCP"}]]
    pgpool, job = rules[0]["from"]
    assert selects(pgpool, template_labels(dev_run, "apps/v1:Deployment", "pgpool"))
    assert selects(job, template_labels(dev_run, "batch/v1:Job", "pgpool-passwords"))
    assert not selects(pgpool, {"app": "web"}) and not selects(job, {"app": "web"})
    assert rules[1]["from"] == [{"podSelector": {"matchLabels": KUBEDB_PODS}}]
    assert rules[2]["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubedb"}}}]
    [prometheus] = rules[3]["from"]
    assert selects(prometheus, template_labels(dev_run, "apps/v1:Deployment", "prometheus"))

    other = policy(stack_run(kubedbOperatorNamespace="databases", postgresMonitoring="false"), "pg")["ingress"]
    assert len(other) == 3
    assert other[2]["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "databases"}


def test_another_operators_pods_are_its_own_to_guard(stack_run):
    run = stack_run(operator="zalando", pgpoolMode="env")
    assert {r.name for r in run.of_type(POLICY)} == {"pgpool", "prometheus"}


def test_prometheus_admits_only_the_clients_named(dev_run, stack_run):
    spec = policy(dev_run, "prometheus")
    assert spec["podSelector"]["matchLabels"].items() <= template_labels(
        dev_run, "apps/v1:Deployment", "prometheus").items()
    assert spec["policyTypes"] == ["Ingress"] and spec.get("ingress", []) == []
    named = policy(stack_run(prometheusClientNamespaceLabels='["team=grafana"]',
                             prometheusClientPodLabels='["app=grafana"]'), "prometheus")
    assert named["ingress"] == [{"from": [{"namespaceSelector": {"matchLabels": {"team": "grafana"}},
                                           "podSelector": {"matchLabels": {"app": "grafana"}}}],
                                 "ports": [{"port": 9090, "protocol": "TCP"}]}]


def test_production_protects_the_namespace_and_the_database(stack_run):
    guarded = {("kubernetes:core/v1:Namespace", "pgpool-dev"), (POSTGRES, "pg"),
               ("kubernetes:core/v1:Secret", "pg-auth"), ("kubernetes:core/v1:Secret", "pg-config"),
               ("kubernetes:core/v1:Secret", "pg-init")}
    for overrides, expected in ((production_config(), guarded), ({}, set())):
        run = stack_run(**overrides)
        protected = {(r.type, r.name) for r in run.registrations if r.protect}
        retained = {(r.type, r.name) for r in run.registrations if r.retain_on_delete}
        assert protected == retained == expected, overrides


def test_a_production_database_keeps_its_data_unless_told_how(stack_run):
    """production alone is enough: its deletionPolicy defaults to one KubeDB keeps the data by, even over the dev
    stack's WipeOut; Halt is honoured; outside production KubeDB's own default applies."""
    assert postgres(stack_run(**production_config()))["spec"]["deletionPolicy"] == "DoNotTerminate"
    halted = {**production_config(), "deletionPolicy": "Halt"}
    assert postgres(stack_run(**halted))["spec"]["deletionPolicy"] == "Halt"
    assert postgres(stack_run(deletionPolicy=None))["spec"]["deletionPolicy"] == "Delete"


@pytest.mark.parametrize("kind", ["Issuer", "ClusterIssuer"])
def test_backend_tls_asks_kubedb_for_certificates_and_pgpool_verifies_them(stack_run, kind: str):
    run = stack_run(postgresTlsIssuer="pg-ca", postgresTlsIssuerKind=kind)
    spec = postgres(run)["spec"]
    assert spec["tls"] == {"issuerRef": {"apiGroup": "cert-manager.io", "kind": kind, "name": "pg-ca"}}
    assert spec["sslMode"] == "verify-ca"
    assert pgpool_conf(run)["ssl_ca_cert"] == "/etc/pgpool-postgres-ca/ca.crt"
    assert volume(run, "postgres-ca")["secret"] == {
        "secretName": "pg-client-cert", "items": [{"key": "ca.crt", "path": "ca.crt"}], "defaultMode": 0o444}
    assert {"name": "postgres-ca", "mountPath": "/etc/pgpool-postgres-ca", "readOnly": True} in \
        container(run, "pgpool")["volumeMounts"]


def test_the_password_job_verifies_the_database_with_the_same_ca(stack_run):
    run = stack_run(postgresTlsIssuer="pg-ca")
    [job] = run.of_type("batch/v1:Job")
    pod = job.props["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert (env["PGSSLMODE"], env["PGSSLROOTCERT"]) == ("verify-ca", "/etc/pgpool-k8s/postgres-ca/ca.crt")
    [ca] = [v for v in pod["volumes"] if v["name"] == "postgres-ca"]
    assert ca["secret"]["secretName"] == "pg-client-cert"
    assert {"name": "postgres-ca", "mountPath": "/etc/pgpool-k8s/postgres-ca", "readOnly": True} in \
        container["volumeMounts"]


def test_backend_tls_reaches_the_entrypoint_in_env_mode(stack_run):
    run = stack_run(postgresTlsIssuer="pg-ca", pgpoolMode="env")
    assert env_of(run)["PGPOOL_PARAMS_SSL_CA_CERT"]["value"] == "/etc/pgpool-postgres-ca/ca.crt"


def test_without_an_issuer_nothing_changes(dev_run):
    spec = postgres(dev_run)["spec"]
    assert "tls" not in spec and "sslMode" not in spec
    assert "ssl_ca_cert" not in pgpool_conf(dev_run)
    assert "postgres-ca" not in {v["name"] for v in dev_run.find("apps/v1:Deployment", "pgpool").props["spec"][
        "template"]["spec"]["volumes"]}


def test_every_kubernetes_object_says_whose_it_is(dev_run):
    objects = [r for r in dev_run.kubernetes_objects() if not r.type.startswith("pulumi:providers")]
    assert objects
    for resource in objects:
        assert resource.props["metadata"]["annotations"]["pgpool-k8s/stack"] == "pgpool-k8s/dev", resource.name
