"""Views of Kubernetes resources as the engine sends them (camelCase, `kubernetes:<group>/<version>:<Kind>`)."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from .values import UNKNOWN, as_dict, as_int, as_list, dig

PGPOOL_IMAGE = "pgpool/pgpool"
EXPORTER_IMAGE = "pgpool/pgpool2_exporter"
EXPORTER_DEFAULT_PORT = 9719
PGPOOL_PROGRAM = "pgpool"
PGPOOL_CONF = "pgpool.conf"
ENTRYPOINT_ENV = re.compile(r"^PGPOOL_(PARAMS_.+|PCP_USER|PCP_PASSWORD|ENABLE_POOL_PASSWD|INSTALL_DIR|CONF_VOLUME)$")
"""Variables only the pgpool/pgpool image's entrypoint reads (the exporter's are PGPOOL_SERVICE*)."""
EXPORTER_ENV = {"PGPOOL_SERVICE", "DATA_SOURCE_URI"}
"""What the pgpool2_exporter image's command (or the exporter itself) reads to find Pgpool-II."""
POD_NAME_LABELS = ("app.kubernetes.io/name", "app", "app.kubernetes.io/component")

_POD_TEMPLATE_PATH = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
    "Pod": (),
}
WORKLOAD_KINDS = frozenset(_POD_TEMPLATE_PATH)


def kind_of(resource_type: str) -> str | None:
    """`kubernetes:apps/v1:Deployment` -> `Deployment`; None for anything not a Kubernetes object."""
    parts = resource_type.split(":")
    if len(parts) != 3 or parts[0] != "kubernetes":
        return None
    return parts[2]


def group_of(resource_type: str) -> str:
    """`kubernetes:kubedb.com/v1:Postgres` -> `kubedb.com`; `core` for the core group."""
    return resource_type.split(":")[1].split("/")[0] if resource_type.count(":") == 2 else ""


def title(kind: str, props: dict, pulumi_name: str) -> str:
    """How messages name a resource: its kind and Kubernetes name (the Pulumi name until that is known)."""
    name = dig(props, "metadata", "name")
    return f'{kind} "{name if isinstance(name, str) else pulumi_name}"'


class Described:
    """`kind` and `title` for a resource record with resource_type, name and props fields."""

    resource_type: str
    name: str
    props: dict

    @property
    def kind(self) -> str | None:
        return kind_of(self.resource_type)

    @property
    def title(self) -> str:
        return title(self.kind or self.resource_type, self.props, self.name)


def labels_of(props: dict) -> dict:
    return as_dict(dig(props, "metadata", "labels"))


def namespace_of(props: dict) -> Any:
    return dig(props, "metadata", "namespace")


def same_namespace(a: Any, b: Any) -> bool:
    """Namespaces equal, or one of them unknown during preview (then assume they match)."""
    return a is UNKNOWN or b is UNKNOWN or (a or None) == (b or None)


def selector_matches(selector: Any, labels: Any) -> bool:
    """A Service-style equality selector (non-empty) selects these labels."""
    if not isinstance(selector, dict) or not selector or not isinstance(labels, dict):
        return False
    return all(labels.get(key) == value for key, value in selector.items())


def parse_image(image: str) -> tuple[str, str, str]:
    """`registry:5000/pgpool/pgpool:4.5.4@sha256:..` -> (`pgpool/pgpool`, `4.5.4`, `sha256:..`)."""
    name, _, digest = image.partition("@")
    slash, colon = name.rfind("/"), name.rfind(":")
    repository, tag = (name[:colon], name[colon + 1:]) if colon > slash else (name, "")
    parts = repository.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]  # drop the registry host
    return "/".join(parts), tag, digest


def _image_is(image: Any, repository: str) -> bool:
    if not isinstance(image, str):
        return False
    path = parse_image(image)[0]
    return path == repository or path.endswith("/" + repository)


@dataclass
class Container:
    spec: dict
    init: bool

    @property
    def name(self) -> str:
        name = self.spec.get("name")
        return name if isinstance(name, str) else "?"

    @property
    def image(self) -> Any:
        return self.spec.get("image")

    @property
    def title(self) -> str:
        return f'{"init container" if self.init else "container"} "{self.name}"'

    @property
    def words(self) -> list[str]:
        """command and args, as far as they are known."""
        return [w for w in as_list(self.spec.get("command")) + as_list(self.spec.get("args")) if isinstance(w, str)]

    @property
    def env_names(self) -> set[str]:
        return {e["name"] for e in self.env if isinstance(e, dict) and isinstance(e.get("name"), str)}

    @property
    def is_exporter(self) -> bool:
        if self.init:
            return False
        return (_image_is(self.image, EXPORTER_IMAGE) or bool(self.env_names & EXPORTER_ENV)
                or any(posixpath.basename(w) == "pgpool2_exporter" for w in self.words))

    @property
    def is_pgpool(self) -> bool:
        """Pgpool-II recognised by what the container runs, whatever its image is called (a mirror, a
        fork, a local build): the pgpool program or its pgpool.conf on the command line, the variables
        only the pgpool/pgpool image's entrypoint reads, a pgpool.conf mounted, or that image itself."""
        if self.init or self.is_exporter:
            return False
        return (_image_is(self.image, PGPOOL_IMAGE)
                or any(posixpath.basename(w) in (PGPOOL_PROGRAM, PGPOOL_CONF) for w in self.words)
                or any(ENTRYPOINT_ENV.match(name) for name in self.env_names)
                or any(posixpath.basename(str(m.get("mountPath", "")).rstrip("/")) == PGPOOL_CONF
                       or m.get("subPath") == PGPOOL_CONF for m in self.mounts))

    @property
    def env(self) -> list:
        return as_list(self.spec.get("env"))

    @property
    def mounts(self) -> list[dict]:
        return [m for m in as_list(self.spec.get("volumeMounts")) if isinstance(m, dict)]

    def ports(self) -> list[dict]:
        return [p for p in as_list(self.spec.get("ports")) if isinstance(p, dict)]


@dataclass
class Workload:
    """Anything with a pod template: Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, Pod."""

    kind: str
    title: str
    template_path: tuple[str, ...]
    """Where the pod template sits in the object (empty for a Pod)."""
    namespace: Any
    labels: dict
    pod_labels: Any
    pod: dict
    replicas: Any
    containers: list[Container] = field(default_factory=list)

    @classmethod
    def of(cls, resource_type: str, name: str, props: dict) -> "Workload | None":
        kind = kind_of(resource_type)
        if kind not in WORKLOAD_KINDS:
            return None
        path = _POD_TEMPLATE_PATH[kind]
        template = dig(props, *path) if path else props
        pod = dig(template, "spec")
        if not isinstance(pod, dict):
            pod = {}
        containers = [Container(c, True) for c in as_list(pod.get("initContainers")) if isinstance(c, dict)]
        containers += [Container(c, False) for c in as_list(pod.get("containers")) if isinstance(c, dict)]
        replicas = dig(props, "spec", "replicas", default=1) if kind in ("Deployment", "StatefulSet", "ReplicaSet") else 1
        return cls(kind, title(kind, props, name), path, namespace_of(props), labels_of(props),
                   dig(template, "metadata", "labels"), pod, replicas, containers)

    @property
    def pgpool(self) -> Container | None:
        """The Pgpool-II container: by what it runs (Container.is_pgpool), else, in a pod labelled as
        Pgpool-II's, the first container that is not its exporter."""
        found = next((c for c in self.containers if c.is_pgpool), None)
        if found is not None or not self._labelled_pgpool():
            return found
        return next((c for c in self.containers if not c.init and not c.is_exporter), None)

    def _labelled_pgpool(self) -> bool:
        labels = self.pod_labels if isinstance(self.pod_labels, dict) else {}
        return any(isinstance(labels.get(key), str) and PGPOOL_PROGRAM in labels[key].lower()
                   and "exporter" not in labels[key].lower() for key in POD_NAME_LABELS)

    @property
    def exporter(self) -> Container | None:
        return next((c for c in self.containers if c.is_exporter), None)

    @property
    def volumes(self) -> dict[str, dict]:
        volumes = [v for v in as_list(self.pod.get("volumes")) if isinstance(v, dict)]
        return {v["name"]: v for v in volumes if isinstance(v.get("name"), str)}

    def replica_count(self) -> int | None:
        return as_int(self.replicas)


@dataclass
class Service:
    title: str
    name: Any
    namespace: Any
    labels: dict
    annotations: Any
    """A dict, or UNKNOWN during preview."""
    type: Any
    selector: Any
    ports: list[dict]
    undecided: bool
    """Its selector or ports are unknown during preview, so which pods and ports it serves is too."""

    @classmethod
    def of(cls, resource_type: str, name: str, props: dict) -> "Service | None":
        if kind_of(resource_type) != "Service" or group_of(resource_type) != "core":
            return None
        selector, ports = dig(props, "spec", "selector"), dig(props, "spec", "ports")
        return cls(title("Service", props, name), dig(props, "metadata", "name"), namespace_of(props),
                   labels_of(props), dig(props, "metadata", "annotations", default={}),
                   dig(props, "spec", "type", default="ClusterIP"), selector,
                   [p for p in as_list(ports) if isinstance(p, dict)], UNKNOWN in (selector, ports))

    def selects(self, workload: Workload) -> bool:
        return same_namespace(self.namespace, workload.namespace) and selector_matches(self.selector, workload.pod_labels)
