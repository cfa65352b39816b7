"""A stand-in for KubeDB's operator on the local cluster, which cannot run KubeDB's own.

    python -m localcluster.standin --server URL --ca FILE --cert FILE --key FILE --image REFERENCE

For every `kubedb.com/v1` Postgres it creates what KubeDB would, under the same names and reading the
same Secrets by name: a StatefulSet `<name>` whose pod `<name>-0` is the primary and the others hot
standbys streaming from it (scripts/localcluster/postgres-start.sh in the postgresql image, Debian's
PostgreSQL), each with postgres_exporter beside it when `spec.monitor` asks; the Services `<name>`
(read-write) and `<name>-standby` (read-only) selecting pods by the `kubedb.com/role` label it keeps on
them, `<name>-pods` (the StatefulSet's) and `<name>-stats` (the exporters, annotated for Prometheus).
Each object is owned by its Postgres, so deleting the Postgres deletes them. What it leaves out: the
PVCs (the data lives in emptyDir volumes: the local node has no volume provisioner), failover, OpsRequests.
It is part of the local cluster, not of the stack: the stack creates the Postgres and its Secrets as for KubeDB.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

MANAGER = "pgpool-k8s-kubedb-standin"
EXPORTER_PORT = 56790
ROLE = "kubedb.com/role"


class Api:
    """The few Kubernetes API calls the stand-in makes, over TLS with its client certificate."""

    def __init__(self, server: str, ca: str, cert: str, key: str):
        self.server = server
        self.context = ssl.create_default_context(cafile=ca)
        self.context.load_cert_chain(cert, key)

    def call(self, method: str, path: str, body: dict | None = None, content_type: str = "application/json") -> dict:
        request = urllib.request.Request(self.server + path, method=method,
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Content-Type": content_type, "Accept": "application/json"})
        with urllib.request.urlopen(request, context=self.context, timeout=30) as response:
            return json.loads(response.read() or b"{}")

    def apply(self, path: str, manifest: dict) -> None:
        """Server-side apply of a whole object, owned by the stand-in."""
        self.call("PATCH", f"{path}?fieldManager={MANAGER}&force=true", manifest, "application/apply-patch+yaml")

    def merge(self, path: str, patch: dict) -> None:
        self.call("PATCH", path, patch, "application/merge-patch+json")


def selector(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "postgreses.kubedb.com", "app.kubernetes.io/instance": name,
            "app.kubernetes.io/managed-by": "kubedb.com"}


def owned(postgres: dict, api_version: str, kind: str, name: str, labels: dict | None = None) -> dict:
    meta = postgres["metadata"]
    owner = {"apiVersion": "kubedb.com/v1", "kind": "Postgres", "name": meta["name"], "uid": meta["uid"],
             "controller": True}
    return {"apiVersion": api_version, "kind": kind, "metadata": {
        "name": name, "namespace": meta["namespace"], "labels": labels or selector(meta["name"]),
        "ownerReferences": [owner]}}


def _volumes(spec: dict) -> list[dict]:
    secret = lambda name: {"secretName": name, "defaultMode": 0o440}  # noqa: E731 (group 70 reads, via fsGroup)
    volumes = [{"name": "data", "emptyDir": {}}, {"name": "run", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
               {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
               {"name": "auth", "secret": secret(spec["authSecret"]["name"])}]
    if spec.get("configSecret"):
        volumes.append({"name": "config", "secret": secret(spec["configSecret"]["name"])})
    init = spec.get("init", {}).get("script", {}).get("secret", {}).get("secretName")
    if init:
        volumes.append({"name": "init", "secret": secret(init)})
    return volumes


def _mounts(volumes: list[dict]) -> list[dict]:
    paths = {"data": "/var/pv", "run": "/var/run/postgresql", "tmp": "/tmp", "auth": "/var/run/kubedb/auth",
             "config": "/etc/config", "init": "/var/initdb"}
    return [{"name": v["name"], "mountPath": paths[v["name"]], "readOnly": "secret" in v} for v in volumes]


_RESTRICTED = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}


def _containers(postgres: dict, image: str, mounts: list[dict]) -> list[dict]:
    meta, spec = postgres["metadata"], postgres["spec"]
    primary_host = f"{meta['name']}.{meta['namespace']}.svc.cluster.local"
    postgres_container = {
        "name": "postgres", "image": image, "command": ["pgpool-k8s-postgres"],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "PRIMARY_HOST", "value": primary_host},
                {"name": "CLIENT_AUTH_MODE", "value": spec.get("clientAuthMode", "scram")}],
        "ports": [{"name": "postgres", "containerPort": 5432}],
        "readinessProbe": {"exec": {"command": ["pg_isready", "--quiet", "--host=/var/run/postgresql"]},
                           "periodSeconds": 2, "timeoutSeconds": 5},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "volumeMounts": mounts, "securityContext": _RESTRICTED,
    }
    containers = [postgres_container]
    if spec.get("monitor"):
        auth = spec["authSecret"]["name"]
        containers.append({
            "name": "exporter", "image": image,
            "command": ["prometheus-postgres-exporter", f"--web.listen-address=:{EXPORTER_PORT}"],
            # As KubeDB's exporter: the superuser of the auth Secret, over the pod's loopback.
            "env": [{"name": "DATA_SOURCE_URI", "value": "localhost:5432/postgres?sslmode=disable"},
                    {"name": "DATA_SOURCE_USER", "valueFrom": {"secretKeyRef": {"name": auth, "key": "username"}}},
                    {"name": "DATA_SOURCE_PASS", "valueFrom": {"secretKeyRef": {"name": auth, "key": "password"}}}],
            "ports": [{"name": "metrics", "containerPort": EXPORTER_PORT}],
            "resources": {"requests": {"cpu": "25m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
            "securityContext": _RESTRICTED,
        })
    return containers


def statefulset(postgres: dict, image: str) -> dict:
    name, spec = postgres["metadata"]["name"], postgres["spec"]
    volumes = _volumes(spec)
    manifest = owned(postgres, "apps/v1", "StatefulSet", name)
    manifest["spec"] = {
        "replicas": spec.get("replicas", 1), "serviceName": f"{name}-pods", "podManagementPolicy": "Parallel",
        "selector": {"matchLabels": selector(name)},
        "template": {"metadata": {"labels": selector(name)}, "spec": {
            "automountServiceAccountToken": False, "enableServiceLinks": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 70, "runAsGroup": 70, "fsGroup": 70,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": _containers(postgres, image, _mounts(volumes)), "volumes": volumes,
        }},
    }
    return manifest


def services(postgres: dict) -> list[dict]:
    name = postgres["metadata"]["name"]

    def service(service_name: str, extra_selector: dict, port: int, port_name: str, **spec) -> dict:
        manifest = owned(postgres, "v1", "Service", service_name)
        manifest["spec"] = {"selector": {**selector(name), **extra_selector},
                            "ports": [{"name": port_name, "port": port, "targetPort": port_name}], **spec}
        return manifest

    found = [service(name, {ROLE: "primary"}, 5432, "postgres"),
             service(f"{name}-standby", {ROLE: "standby"}, 5432, "postgres"),
             service(f"{name}-pods", {}, 5432, "postgres", clusterIP="None", publishNotReadyAddresses=True)]
    if postgres["spec"].get("monitor"):
        stats = service(f"{name}-stats", {}, EXPORTER_PORT, "metrics")
        stats["metadata"]["annotations"] = {"prometheus.io/scrape": "true", "prometheus.io/port": str(EXPORTER_PORT),
                                            "prometheus.io/path": "/metrics"}
        found.append(stats)
    return found


def label_roles(api: Api, postgres: dict) -> tuple[int, int]:
    """Keeps kubedb.com/role on the pods (the first is the primary); returns (pods, ready pods)."""
    name, namespace = postgres["metadata"]["name"], postgres["metadata"]["namespace"]
    query = urllib.parse.urlencode({"labelSelector": ",".join(f"{k}={v}" for k, v in selector(name).items())})
    pods = api.call("GET", f"/api/v1/namespaces/{namespace}/pods?{query}")["items"]
    ready = 0
    for pod in pods:
        role = "primary" if pod["metadata"]["name"] == f"{name}-0" else "standby"
        if pod["metadata"].get("labels", {}).get(ROLE) != role:
            api.merge(f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}",
                      {"metadata": {"labels": {ROLE: role}}})
        conditions = pod.get("status", {}).get("conditions", [])
        ready += any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    return len(pods), ready


def reconcile(api: Api, image: str, applied: dict[str, str]) -> None:
    """One pass over every Postgres: its objects applied when they changed, its pods labelled, its phase set."""
    for postgres in api.call("GET", "/apis/kubedb.com/v1/postgreses")["items"]:
        meta = postgres["metadata"]
        if meta.get("deletionTimestamp"):
            continue
        base = f"/namespaces/{meta['namespace']}"
        for manifest in [statefulset(postgres, image), *services(postgres)]:
            group = "/apis/apps/v1" if manifest["kind"] == "StatefulSet" else "/api/v1"
            path = f"{group}{base}/{manifest['kind'].lower()}s/{manifest['metadata']['name']}"
            text = json.dumps(manifest, sort_keys=True)
            if applied.get(path) != text:
                api.apply(path, manifest)
                applied[path] = text
                print(f"applied {manifest['kind']} {meta['namespace']}/{manifest['metadata']['name']}", flush=True)
        pods, ready = label_roles(api, postgres)
        phase = "Ready" if pods and ready == postgres["spec"].get("replicas", 1) else "Provisioning"
        if postgres.get("status", {}).get("phase") != phase:
            api.merge(f"/apis/kubedb.com/v1{base}/postgreses/{meta['name']}/status", {"status": {"phase": phase}})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for option in ("--server", "--ca", "--cert", "--key", "--image"):
        parser.add_argument(option, required=True)
    parser.add_argument("--interval", type=float, default=2.0)
    args = parser.parse_args(argv)
    api = Api(args.server, args.ca, args.cert, args.key)
    applied: dict[str, str] = {}
    while True:
        try:
            reconcile(api, args.image, applied)
        except (urllib.error.URLError, OSError, KeyError) as error:
            print(f"reconcile failed, retrying: {error}", file=sys.stderr, flush=True)
            applied.clear()
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
