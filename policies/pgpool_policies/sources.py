"""Where a Pgpool-II's settings come from, for one resource or across a whole stack.

Three ways a pgpool/pgpool container gets its pgpool.conf:
- env mode: the image's entrypoint copies pgpool.conf.sample and appends one line per PGPOOL_PARAMS_* env;
- file mode through the entrypoint: a pgpool.conf mounted at /config (the guide's ConfigMap);
- file mode without it: `command` runs pgpool itself with `-f <file>`, the file mounted from a ConfigMap.
A ConfigMap holding `pgpool.conf` is checked on its own (with Pgpool-II's defaults only, since the
resource alone does not say whether the entrypoint runs); env mode is checked on the workload.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Iterable

from .kube import Container, Described, Service, Workload, group_of, kind_of, labels_of, namespace_of, same_namespace, title
from .pgpool_conf import ENV_PREFIX, PgpoolConfig, Referenced, parse_pgpool_conf
from .values import UNKNOWN, as_dict, as_list, dig, plain

CONF_KEY = "pgpool.conf"
HBA_KEY = "pool_hba.conf"
IMAGE_CONFIG_DIR = "/config"
IMAGE_TLS_DIR = "/config/tls"
PGPOOL_DEFAULT_CONF = "/opt/pgpool-II/etc/pgpool.conf"  # pgpool's -f default under the image's prefix
POSTGRES_KINDS = ("kubedb.com",)


def configmap_config(resource_title: str, props: dict, key: str = CONF_KEY, entrypoint: bool = False,
                     forced: dict | None = None) -> PgpoolConfig | None:
    text = dig(props, "data", key)
    if not isinstance(text, str):
        return None
    parsed = parse_pgpool_conf(text)
    return PgpoolConfig(f"{resource_title} {key}", False, parsed.params, entrypoint=entrypoint,
                        forced=forced or {}, lines=parsed.lines, errors=parsed.errors)


def runs_entrypoint(container: Container) -> bool | None:
    """Whether the image's entrypoint.sh runs (a `command` replaces it); None when unknown."""
    command = container.spec.get("command")
    if command is UNKNOWN or (isinstance(command, list) and command and command[0] is UNKNOWN):
        return None
    if not command:
        return True
    return isinstance(command[0], str) and command[0].endswith("entrypoint.sh")


def literal_env(container: Container, name: str) -> Any:
    """The literal value of an env var; UNKNOWN when unknown or set by reference; None when absent."""
    for item in container.env:
        if isinstance(item, dict) and item.get("name") == name:
            return item.get("value", "") if not item.get("valueFrom") else UNKNOWN
    return None


def _mount_for(workload: Workload, container: Container, path: str) -> tuple[dict | None, str | None] | None:
    """(volume, file inside it) of the deepest mount covering path; None when nothing is mounted there."""
    best = None
    for mount in container.mounts:
        mount_path = mount.get("mountPath")
        if not isinstance(mount_path, str):
            continue
        base = mount_path.rstrip("/")
        sub = mount.get("subPath") if isinstance(mount.get("subPath"), str) else ""
        if path == base:
            inner = sub or None
        elif path.startswith(base + "/"):
            inner = "/".join(p for p in (sub, path[len(base) + 1:]) if p)
        else:
            continue
        if best is None or len(base) > best[0]:
            best = (len(base), workload.volumes.get(mount.get("name")), inner)
    return None if best is None else (best[1], best[2])


def _configmap_key(volume: dict | None, inner: str | None) -> tuple[Any, str] | None:
    """(ConfigMap name, key) a file inside a configMap or projected volume comes from."""
    if volume is None or inner is None:
        return None
    sources = [volume["configMap"]] if isinstance(volume.get("configMap"), dict) else [
        s["configMap"] for s in as_list(dig(volume, "projected", "sources")) if isinstance(dig(s, "configMap"), dict)]
    for source in sources:
        items = [i for i in as_list(source.get("items")) if isinstance(i, dict)]
        if not items:
            if "/" not in inner:
                return source.get("name"), inner
            continue
        for item in items:
            if item.get("path") == inner and isinstance(item.get("key"), str):
                return source.get("name"), item["key"]
    return None


def _config_file(container: Container, entrypoint: bool) -> str:
    if entrypoint:
        return f"{IMAGE_CONFIG_DIR}/{CONF_KEY}"
    words = [w for w in as_list(container.spec.get("command")) + as_list(container.spec.get("args")) if isinstance(w, str)]
    for index, word in enumerate(words):
        if word in ("-f", "--config-file") and index + 1 < len(words):
            return words[index + 1]
        if word.startswith("--config-file="):
            return word.split("=", 1)[1]
    return PGPOOL_DEFAULT_CONF


def forced_by_entrypoint(workload: Workload, container: Container) -> dict[str, tuple[str, str]]:
    """Settings entrypoint.sh appends last: TLS files under /config/tls, or pool_passwd turned off."""
    forced = {}
    tls_mounts = {m.get("mountPath", "").rstrip("/") for m in container.mounts if isinstance(m.get("mountPath"), str)}
    if IMAGE_TLS_DIR in tls_mounts or f"{IMAGE_TLS_DIR}/tls.key" in tls_mounts:
        forced["ssl"] = ("on", f"the image turns it on for the certificate mounted at {IMAGE_TLS_DIR}")
    pool_passwd = literal_env(container, "PGPOOL_ENABLE_POOL_PASSWD")
    if isinstance(pool_passwd, str) and pool_passwd not in ("yes", "true", "on"):
        why = "the image turns it on because PGPOOL_ENABLE_POOL_PASSWD is not true"
        forced["ssl"] = ("on", why)
        forced["enable_pool_hba"] = ("on", why)
    return forced


def env_config(workload: Workload, container: Container) -> PgpoolConfig:
    """Settings of an env-mode container: PGPOOL_PARAMS_* on top of the image's and Pgpool-II's defaults."""
    params: dict[str, Any] = {}
    errors: list[tuple[int, str]] = []
    complete = not as_list(container.spec.get("envFrom")) and container.spec.get("env") is not UNKNOWN
    for item in container.env:
        name = item.get("name") if isinstance(item, dict) else UNKNOWN
        if not isinstance(name, str):
            complete = False
            continue
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX):].lower()
        reference = as_dict(item.get("valueFrom"))
        if reference:
            ref = as_dict(reference.get("secretKeyRef") or reference.get("configMapKeyRef"))
            params[key] = Referenced(f"{'Secret' if 'secretKeyRef' in reference else 'ConfigMap'} "
                                     f"{ref.get('name')} key {ref.get('key')}")
            continue
        value = item.get("value", "")
        params[key] = value
        if isinstance(value, str) and ("'" in value or "\n" in value or "=" in value):
            errors.append((0, name))  # no line number: the line is the env var
    return PgpoolConfig(f"{workload.title} {container.title}", True, params, complete=complete, entrypoint=True,
                        forced=forced_by_entrypoint(workload, container), errors=errors)


def workload_env_config(workload: Workload) -> PgpoolConfig | None:
    """The workload's own Pgpool-II settings when it runs in env mode, else None."""
    container = workload.pgpool
    if container is None or runs_entrypoint(container) is not True:
        return None
    if _mount_for(workload, container, f"{IMAGE_CONFIG_DIR}/{CONF_KEY}") is not None:
        return None
    return env_config(workload, container)


def resource_configs(resource_type: str, name: str, props: dict) -> list[PgpoolConfig]:
    """Pgpool-II settings one resource carries by itself: a ConfigMap's pgpool.conf or an env-mode pod."""
    kind = kind_of(resource_type)
    if kind == "ConfigMap" and group_of(resource_type) == "core":
        config = configmap_config(title(kind, props, name), props)
        return [config] if config else []
    workload = Workload.of(resource_type, name, props)
    config = workload_env_config(workload) if workload else None
    return [config] if config else []


def secret_text(props: dict, key: str) -> Any:
    """A Secret's value from stringData or (base64) data; UNKNOWN or None when unreadable or absent."""
    text = dig(props, "stringData", key)
    if text is UNKNOWN or isinstance(text, str):
        return text
    data = dig(props, "data", key)
    if not isinstance(data, str):
        return data if data is UNKNOWN else None
    try:
        return base64.b64decode(data, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


@dataclass
class StackResource(Described):
    resource_type: str
    name: str
    props: dict
    urn: str


@dataclass
class PgpoolInstance:
    """A Pgpool-II workload and the settings it runs with, as far as the stack shows them."""

    workload: Workload
    config: PgpoolConfig | None
    """None when its pgpool.conf comes from outside the stack or from an emptyDir an init container fills."""
    config_urn: str
    """The resource its settings live in (the ConfigMap, or the workload in env mode): violations point there."""


class StackView:
    """Plain copies of every resource of a stack, with the joins the stack policies need."""

    def __init__(self, resources: Iterable[Any]):
        self.resources = [StackResource(r.resource_type, r.name, plain(r.props), r.urn) for r in resources]
        self.workloads = [(w, r.urn) for r in self.resources
                          if (w := Workload.of(r.resource_type, r.name, r.props)) is not None]
        self.services = [(s, r.urn) for r in self.resources
                         if (s := Service.of(r.resource_type, r.name, r.props)) is not None]

    def of_kind(self, kind: str, group: str = "core") -> list[StackResource]:
        return [r for r in self.resources if r.kind == kind and group_of(r.resource_type) == group]

    def find(self, kind: str, name: Any, namespace: Any, group: str = "core") -> StackResource | None:
        for resource in self.of_kind(kind, group):
            if dig(resource.props, "metadata", "name") == name and same_namespace(namespace_of(resource.props), namespace):
                return resource
        return None

    def postgres(self) -> list[StackResource]:
        return [r for r in self.resources if r.kind == "Postgres" and group_of(r.resource_type) in POSTGRES_KINDS]

    def production(self, production_labels: dict, stack_tags: Any) -> bool:
        """Production when the stack tags or any resource's labels carry every production label."""
        if production_labels and all(dict(stack_tags or {}).get(k) == v for k, v in production_labels.items()):
            return True
        return bool(production_labels) and any(
            all(labels_of(r.props).get(k) == v for k, v in production_labels.items()) for r in self.resources)

    def env_value(self, item: dict, namespace: Any) -> Any:
        """An env var's value, following secretKeyRef/configMapKeyRef into the stack; UNKNOWN if unreadable."""
        reference = as_dict(item.get("valueFrom"))
        if not reference:
            return item.get("value", "")
        for field_name, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
            ref = as_dict(reference.get(field_name))
            source = self.find(kind, ref.get("name"), namespace) if ref else None
            if source is None:
                continue
            key = ref.get("key")
            value = secret_text(source.props, key) if kind == "Secret" else dig(source.props, "data", key)
            return value if isinstance(value, str) else UNKNOWN
        return UNKNOWN

    def pgpool_instances(self) -> list[PgpoolInstance]:
        instances = []
        for workload, urn in self.workloads:
            container = workload.pgpool
            if container is None:
                continue
            entrypoint = runs_entrypoint(container)
            config = workload_env_config(workload) if entrypoint else None
            if config is not None:
                instances.append(PgpoolInstance(workload, config, urn))
            elif entrypoint is None:  # `command` unknown during preview
                instances.append(PgpoolInstance(workload, None, urn))
            else:
                instances.append(PgpoolInstance(workload, *self._file_config(workload, container, entrypoint)))
        return instances

    def _file_config(self, workload: Workload, container: Container, entrypoint: bool) -> tuple[PgpoolConfig | None, str]:
        mount = _mount_for(workload, container, _config_file(container, entrypoint))
        located = _configmap_key(*mount) if mount else None
        source = self.find("ConfigMap", located[0], workload.namespace) if located else None
        if source is None:
            return None, ""
        forced = forced_by_entrypoint(workload, container) if entrypoint else {}
        return configmap_config(source.title, source.props, located[1], entrypoint, forced), source.urn
