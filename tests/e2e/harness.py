"""The local stack of a project copy on its local cluster's real node, as a user reaches it from this machine:
kubectl with the cluster's kubeconfig, and the Services' ClusterIPs, which the host routes to the node."""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable

import psycopg

from tests.engine.harness import EngineProject

STACK = "local"
NAMESPACE = "pgpool-local"


def wait_for(condition: Callable[[], object], what: str, timeout: float = 180, interval: float = 1.0):
    """The first true value `condition` returns; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {timeout}s")
        time.sleep(interval)


class RealNodeStack:
    def __init__(self, project: EngineProject):
        self.project = project
        self.cluster_dir = project.dir / ".state" / "cluster"
        self.kubeconfig = self.cluster_dir / "kubeconfig"

    def kubectl(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        result = subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), *args], capture_output=True,
                                text=True, timeout=timeout)
        if check:
            assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result

    def get(self, *args: str, namespace: str = NAMESPACE) -> dict:
        return json.loads(self.kubectl("get", "--namespace", namespace, "--output", "json", *args).stdout)

    def pods(self, component: str | None = None) -> list[dict]:
        pods = self.get("pods")["items"]
        return [p for p in pods if component is None or p["metadata"]["labels"].get("app.kubernetes.io/name") == component]

    def state(self) -> dict:
        return json.loads((self.cluster_dir / "cluster.json").read_text())

    def service_ip(self, name: str) -> str:
        return self.get("service", name)["spec"]["clusterIP"]

    def secret(self, name: str) -> dict[str, str]:
        data = self.get("secret", name)["data"]
        return {key: base64.b64decode(value).decode() for key, value in data.items()}

    def exec(self, pod: str, container: str, *command: str, timeout: float = 60) -> str:
        return self.kubectl("exec", "--namespace", NAMESPACE, pod, "--container", container, "--", *command,
                            timeout=timeout).stdout

    def libpq(self, user: str, password: str) -> dict[str, str]:
        """libpq's environment for Pgpool-II's Service, over TLS, as `user` (whose database has its name)."""
        return {"PGHOST": self.service_ip("pgpool"), "PGPORT": "9999", "PGUSER": user, "PGPASSWORD": password,
                "PGDATABASE": user, "PGSSLMODE": "require", "PGCONNECT_TIMEOUT": "10"}

    def connect(self, user: str, password: str) -> psycopg.Connection:
        settings = self.libpq(user, password)
        return psycopg.connect(host=settings["PGHOST"], port=9999, user=user, password=password, dbname=user,
                               sslmode="require", connect_timeout=10, autocommit=True)

    def app_credentials(self) -> tuple[str, str]:
        secret = self.secret("pgpool-user-app")
        return secret["username"], secret["password"]

    def prometheus(self, query: str) -> list[dict]:
        url = f"http://{self.service_ip('prometheus')}:9090/api/v1/query?" + urllib.parse.urlencode({"query": query})
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.loads(response.read())
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def server_sql(self, pod: str, query: str) -> str:
        """A query run on one PostgreSQL server itself, as its superuser over the pod's socket."""
        return self.exec(pod, "postgres", "psql", "-X", "-qtA", "--host=/var/run/postgresql", "--username=postgres",
                         "--dbname=app", "-c", query).strip()

    def container_cgroups(self, pod: str, container: str) -> list[Path]:
        """The container's cgroup directories, one per hierarchy, under the node's cgroup."""
        status = next(s for s in self.get("pod", pod)["status"]["containerStatuses"] if s["name"] == container)
        container_id = status["containerID"].split("://", 1)[1]
        node_cgroup = self.state()["cgroup"]
        return [path for hierarchy in Path("/sys/fs/cgroup").iterdir() if (hierarchy / node_cgroup).is_dir()
                for path in (hierarchy / node_cgroup).rglob(container_id)]
