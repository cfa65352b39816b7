"""Every Kubernetes object the stack produces validates against the real schemas.

Built-in kinds: the Kubernetes OpenAPI schemas shipped by kubernetes-validate (strict: unknown
fields are errors, as with `kubectl apply --validate=strict`). KubeDB's Postgres: the
openAPIV3Schema of the real CustomResourceDefinition in scripts/crds/, made strict the same
way. Pods are also checked for what the schemas cannot see: references that resolve and mount
points the container runtime can create.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.program_run import ROOT, manifest, production_config

KUBERNETES_VERSION = "1.37"
"""The newest release whose schemas kubernetes-validate 1.37.0 ships."""
KUBEDB_CRD = ROOT / "scripts" / "crds" / "kubedb.com_postgreses.yaml"
"""The copy the local cluster installs (scripts/crds/README.md says where it comes from)."""
NO_SCHEMA_OFFLINE = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
"""Prometheus Operator kinds: kubernetes-validate ships no CRD schemas and none is stored here."""

VARIANTS = [
    {},
    {"pgpoolMode": "env"},
    {"ssl": "false"},
    {"tlsSecretName": "company-cert"},
    {"networkPolicy": "true", "networkPolicyClientNamespaceLabels": '["team=web"]',
     "networkPolicyClientPodLabels": '["app=shop"]'},
    {"prometheusStorage": "pvc", "storageClass": "fast-ssd", **production_config(), "deletionPolicy": "Halt",
     "postgresTlsIssuer": "pg-ca", "postgresTlsIssuerKind": "ClusterIssuer",
     "prometheusClientNamespaceLabels": '["team=grafana"]', "prometheusClientPodLabels": '["app=grafana"]'},
    {"networkPolicy": "false"},
    {"prometheusOperator": "true", "networkPolicy": "true"},
    {"postgresMonitoring": "false", "grafanaDashboard": "false", "prometheus": "false"},
    {"operator": "zalando", "pgpoolMode": "env"},
    {"operator": "external", "externalPrimaryHost": "db-rw.example.internal",
     "externalReplicaHost": "db-ro.example.internal", "externalCredentialsSecret": "db-admin"},
    {"pgpoolServiceType": "LoadBalancer", "allowLoadBalancer": "true", "srCheckPeriod": "10", "srCheckUser": "monitor"},
    {"queryCache": "shmem", "queryCacheMaxStaleSeconds": "5", "queryCacheUnsafeTables": '["orders"]'},
    {"queryCache": "shmem", "queryCacheMaxStaleSeconds": "5", "pgpoolMode": "env", "prometheusOperator": "true"},
]
VARIANT_IDS = [",".join(f"{k}={v}" for k, v in variant.items()) or "dev" for variant in VARIANTS]


def validate_builtin(obj: dict) -> None:
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def validate_object_meta(metadata: dict) -> None:
    """ObjectMeta of a custom resource, through a kind whose schema holds the same ObjectMeta."""
    validate_builtin({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata})


def strict(schema: dict) -> dict:
    """The schema with unknown fields refused, as the API server's strict field validation does."""
    schema = dict(schema)
    if "properties" in schema:
        schema["properties"] = {name: strict(sub) for name, sub in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
    if isinstance(schema.get("additionalProperties"), dict):
        schema["additionalProperties"] = strict(schema["additionalProperties"])
    if isinstance(schema.get("items"), dict):
        schema["items"] = strict(schema["items"])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:
            schema[key] = [strict(sub) for sub in schema[key]]
    return schema


def with_defaults(value: Any, schema: dict) -> Any:
    """The value with the schema's defaults filled in, as the API server does before validating."""
    if isinstance(value, dict) and "properties" in schema:
        value = dict(value)
        for name, sub in schema["properties"].items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = with_defaults(value[name], sub)
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        value = {key: with_defaults(item, schema["additionalProperties"]) for key, item in value.items()}
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        value = [with_defaults(item, schema["items"]) for item in value]
    return value


@lru_cache(maxsize=None)
def kubedb_postgres_schema() -> dict:
    assert KUBEDB_CRD.is_file(), f"{KUBEDB_CRD} is missing: restore it with git checkout -- scripts/crds"
    crd = yaml.safe_load(KUBEDB_CRD.read_text())
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
    original_metadata = schema["properties"]["metadata"]
    schema = strict(schema)
    schema["properties"]["metadata"] = original_metadata  # ObjectMeta: validated on its own
    jsonschema.Draft7Validator.check_schema(schema)
    return schema


def validate_custom(obj: dict) -> None:
    if (obj["apiVersion"], obj["kind"]) == ("kubedb.com/v1", "Postgres"):
        schema = kubedb_postgres_schema()
        jsonschema.Draft7Validator(schema).validate(with_defaults(obj, schema))
    else:
        assert (obj["apiVersion"], obj["kind"]) in NO_SCHEMA_OFFLINE, f"no schema for {obj['apiVersion']} {obj['kind']}"
    validate_object_meta(obj["metadata"])


@pytest.mark.parametrize("overrides", VARIANTS, ids=VARIANT_IDS)
def test_every_object_validates_against_its_schema(stack_run, overrides):
    run = stack_run(**overrides)
    problems = []
    for resource in run.kubernetes_objects():
        obj = manifest(resource.props)
        custom = resource.type.startswith("kubernetes:") and obj["apiVersion"].split("/")[0] in (
            "kubedb.com", "monitoring.coreos.com")
        try:
            validate_custom(obj) if custom else validate_builtin(obj)
        except (jsonschema.ValidationError, kubernetes_validate.SchemaNotFoundError) as error:
            where = "/".join(str(p) for p in getattr(error, "absolute_path", []))
            problems.append(f"{obj['kind']} {resource.name}: {getattr(error, 'message', error)} at {where}")
    assert problems == []


def test_the_validators_refuse_a_bad_object(dev_run):
    deployment = manifest(dev_run.find("apps/v1:Deployment", "pgpool").props)
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonroot"] = True
    with pytest.raises(jsonschema.ValidationError):
        validate_builtin(deployment)
    postgres = manifest([r for r in dev_run.resources if r.type == "kubernetes:kubedb.com/v1:Postgres"][0].props)
    postgres["spec"]["standbyMode"] = "Lukewarm"
    with pytest.raises(jsonschema.ValidationError):
        validate_custom(postgres)
    postgres["spec"]["standbyMode"] = "Hot"
    postgres["spec"]["terminationPolicy"] = "Delete"  # the v1alpha2 name, unknown in v1
    with pytest.raises(jsonschema.ValidationError):
        validate_custom(postgres)


# --- what a schema cannot see ---------------------------------------------------------------


def pod_templates(run):
    for deployment in run.of_type("apps/v1:Deployment"):
        yield deployment.name, manifest(deployment.props)["spec"]["template"]["spec"]


def every_pod(run):
    """(kind and name, pod spec) of every workload: the Deployments and the password Job."""
    for kind in ("apps/v1:Deployment", "batch/v1:Job"):
        for workload in run.of_type(kind):
            yield f"{kind.split(':')[1]} {workload.name}", manifest(workload.props)["spec"]["template"]["spec"]


@pytest.mark.parametrize("overrides", VARIANTS, ids=VARIANT_IDS)
def test_every_pod_is_restricted_the_same_way(stack_run, overrides):
    """Non-root with RuntimeDefault seccomp, no Service links, an API token only with a service account;
    every container without privileges, capabilities or a writable root."""
    pods = dict(every_pod(stack_run(**overrides)))
    assert {"Deployment pgpool", "Job pgpool-passwords"} <= set(pods)
    for name, pod in pods.items():
        assert pod["enableServiceLinks"] is False, name
        assert pod["automountServiceAccountToken"] is ("serviceAccountName" in pod), name
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] > 0, name
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in pod["containers"] + pod.get("initContainers", []):
            restricted = container["securityContext"]
            assert restricted["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert restricted["capabilities"] == {"drop": ["ALL"]}, (name, container["name"])
            assert restricted["readOnlyRootFilesystem"] is True, (name, container["name"])
            assert restricted["runAsNonRoot"] is True, (name, container["name"])


API_DATA_VOLUMES = {"configMap", "secret", "downwardAPI", "projected"}
"""Volumes in which the kubelet creates the mount points of nested mounts (Kubernetes PR #60342)."""


@pytest.mark.parametrize("overrides", VARIANTS, ids=VARIANT_IDS)
def test_no_mount_point_inside_a_read_only_mount(stack_run, overrides):
    # The runtime creates each mount point inside the mounts before it; a read-only one refuses,
    # unless the kubelet made the directory when it wrote an API data volume.
    for name, pod in pod_templates(stack_run(**overrides)):
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"] + pod.get("initContainers", []):
            mounts = container.get("volumeMounts", [])
            for outer in mounts:
                if not outer.get("readOnly") or outer.get("subPath") or API_DATA_VOLUMES & set(volumes[outer["name"]]):
                    continue
                for inner in mounts:
                    inside = inner["mountPath"].startswith(outer["mountPath"].rstrip("/") + "/")
                    assert not inside, f"{name}/{container['name']}: {inner['mountPath']} inside {outer['mountPath']}"


EXTERNAL_SECRETS = {
    "tlsSecretName": "company-cert",
    "operator=zalando": "postgres.pg.credentials.postgresql.acid.zalan.do",
    "operator=external": "db-admin",
    "postgresTlsIssuer=pg-ca": "pg-client-cert",  # KubeDB's, with the CA cert-manager issued its certificates from
}


@pytest.mark.parametrize("overrides", VARIANTS, ids=VARIANT_IDS)
def test_every_reference_of_a_pod_resolves(stack_run, overrides):
    run = stack_run(**overrides)
    config_maps = {r.props["metadata"]["name"] for r in run.of_type("core/v1:ConfigMap")}
    secrets = {r.props["metadata"]["name"]: set(r.props.get("stringData", {})) for r in run.of_type("core/v1:Secret")}
    claims = {r.props["metadata"]["name"] for r in run.of_type("core/v1:PersistentVolumeClaim")}
    accounts = {r.props["metadata"]["name"] for r in run.of_type("core/v1:ServiceAccount")}
    # Secrets the settings name but the stack does not own: the user's certificate, the operator's credentials.
    foreign = {name for key, name in EXTERNAL_SECRETS.items()
               if overrides.get(key.split("=")[0]) == (key.split("=")[1] if "=" in key else name)}
    for name, pod in pod_templates(run):
        volumes = {v["name"]: v for v in pod["volumes"]}
        if "serviceAccountName" in pod:
            assert pod["serviceAccountName"] in accounts, name
        for volume in volumes.values():
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps, (name, volume)
            if "secret" in volume:
                assert volume["secret"]["secretName"] in set(secrets) | foreign, (name, volume)
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, (name, volume)
        for container in pod["containers"] + pod.get("initContainers", []):
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, (name, container["name"], mount)
            named_ports = {p["name"] for p in container.get("ports", [])}
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                port = container.get(probe, {}).get("httpGet", container.get(probe, {}).get("tcpSocket", {})).get("port")
                assert port is None or port in named_ports or isinstance(port, int), (name, probe)
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["name"] not in foreign:
                    assert ref["key"] in secrets.get(ref["name"], set()), (name, env["name"], ref)


@pytest.mark.parametrize("overrides", VARIANTS, ids=VARIANT_IDS)
def test_services_select_pods_and_name_their_ports(stack_run, overrides):
    run = stack_run(**overrides)
    templates = [(manifest(d.props)["spec"]["template"]) for d in run.of_type("apps/v1:Deployment")]
    for service in run.of_type("core/v1:Service"):
        spec = manifest(service.props)["spec"]
        [template] = [t for t in templates if spec["selector"].items() <= t["metadata"]["labels"].items()]
        ports = {p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
        for port in spec["ports"]:
            assert port["targetPort"] in ports, (service.name, port)


def test_kubedb_crd_is_the_real_postgres_crd_and_its_absence_fails(monkeypatch, tmp_path):
    crd = yaml.safe_load(KUBEDB_CRD.read_text())
    assert (crd["kind"], crd["spec"]["group"], crd["spec"]["names"]["kind"]) == (
        "CustomResourceDefinition", "kubedb.com", "Postgres")
    assert kubedb_postgres_schema()["properties"]["spec"]["additionalProperties"] is False
    # Without the CRD the schema tests fail, never skip.
    monkeypatch.setattr(f"{__name__}.KUBEDB_CRD", tmp_path / "missing.yaml")
    kubedb_postgres_schema.cache_clear()
    try:
        with pytest.raises(AssertionError, match="missing.yaml is missing: restore it with git checkout"):
            kubedb_postgres_schema()
    finally:
        kubedb_postgres_schema.cache_clear()
