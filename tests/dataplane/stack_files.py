"""The dev stack's files as the program generates them, and the local copy Pgpool-II runs here.

Everything comes from one run of the whole program under Pulumi mocks: pgpool.conf and
pool_hba.conf (ConfigMap pgpool-config), pool_passwd, .pgpoolkey, pcp.conf and pcppass (Secret
pgpool-files), the certificate (Secret pgpool-tls), the Deployment's pod template (volumes, the
init step, the pgpool command line, probes and preStop hook), the exporter's environment, the
database's init.sql and user.conf, the users' Secrets, the alert rules and the Grafana dashboard.
The local copy changes only the pgpool.conf parameters LOCAL_PGPOOL_KEYS names and the port field
of pcppass; `check_local_copy` fails on any other difference.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from dataclasses import dataclass

from components.pgpool_config import quote_conf_value
from components.settings import StackSettings, load_settings
from tests.dataplane.pod import LocalPod
from tests.program_run import ProgramRun, dev_stack_inputs, manifest, run_program

AWKWARD = "q'u\"o\\te sp#ce:"
"""Starts every password and the pool key: quote, double quote, backslash, space, '#' and ':'
must survive every file they reach (pool_passwd, pcppass, init.sql, libpq)."""
AWKWARD_SUPERUSER = "q'u\"o\\te#c:"
"""The same without the space, which KubeDB's exporter connection string cannot take (the
settings layer refuses it for dbPassword)."""

LOCAL_PGPOOL_KEYS = (
    "listen_addresses", "pcp_listen_addresses",  # 127.0.0.1 only
    "port", "pcp_port",  # free ports
    "unix_socket_directories", "socket_dir", "pcp_socket_dir", "wd_ipc_socket_dir", "pid_file_name", "logdir",
    "work_dir",
    "backend_hostname0", "backend_port0", "backend_hostname1", "backend_port1",  # the local servers
    "pool_passwd", "ssl_key", "ssl_cert", "ssl_ca_cert", "memqcache_oiddir",  # file locations
)
"""The only pgpool.conf parameters the local run rewrites."""
ROLES = ("superuser", "monitor", "app")
"""The dev stack's kinds of user: KubeDB's superuser, the exporter's monitor user, the application's."""
SECRET_FILES = ("pool_passwd", ".pgpoolkey", "pcp.conf", "pcppass", "pgpass")
CONF_LINE = re.compile(r"^(?P<name>[a-z_0-9]+)\s*=\s*(?P<value>.*)$")


@dataclass(frozen=True, repr=False)
class DevStack:
    """What the program generated for the dev stack (container layout, container ports)."""

    settings: StackSettings
    config_files: dict[str, str]
    """pgpool.conf and pool_hba.conf (ConfigMap <pgpool>-config)."""
    secret_files: dict[str, str]
    """pool_passwd, .pgpoolkey, pcp.conf, pcppass (Secret <pgpool>-files); tls.crt and tls.key
    (Secret <pgpool>-tls) when ssl is on."""
    passwords: dict[str, str]
    """Every user's password, read from the Secrets the program creates for them."""
    init_sql: str
    """The roles and databases KubeDB creates at first start (Secret <cluster>-init)."""
    user_conf: str
    """PostgreSQL settings (Secret <cluster>-config)."""
    objects: dict[str, dict[str, str]]
    """Data of every ConfigMap and Secret, by the object's name (what the pod's volumes name)."""
    pod: dict
    """The Deployment's pod template spec, as the API server gets it."""
    pgpool_command: tuple[str, ...]
    readiness_command: tuple[str, ...]
    liveness_command: tuple[str, ...]
    init_command: tuple[str, ...]
    pre_stop_command: tuple[str, ...]
    probe_env: dict[str, str]
    """The pgpool container's environment (the probes' PGPASSFILE, PGSSLMODE, PCPPASSFILE), Secret references resolved."""
    exporter_env: dict[str, str]
    """The exporter container's environment, Secret references resolved."""
    alert_rules: str
    """Prometheus rules file (ConfigMap prometheus-rules)."""
    dashboard: dict
    """The Grafana dashboard (the ConfigMap labelled grafana_dashboard=1)."""

    def __repr__(self) -> str:  # the fields hold secrets: keep them out of test reports
        return f"DevStack({self.settings.stack}, namespace {self.settings.namespace})"

    @property
    def superuser(self) -> str:
        return self.settings.database.superuser

    @property
    def monitor_user(self) -> str:
        return self.settings.monitor_user

    @property
    def app_user(self) -> str:
        return self.settings.app_users[0]

    def user(self, role: str) -> str:
        """The user of a role in ROLES."""
        return {"superuser": self.superuser, "monitor": self.monitor_user, "app": self.app_user}[role]


def awkward_secrets() -> tuple[dict[str, str], dict[str, str]]:
    """The dev stack's config and generated secrets, with every password and the key made awkward."""
    config, generated = dev_stack_inputs()
    secrets = dict(generated)
    for key in ("monitorPassword", "pcpPassword", "poolKey"):
        secrets[key] = AWKWARD + generated[key][:24]
    secrets["dbPassword"] = AWKWARD_SUPERUSER + generated["dbPassword"][:24]
    users = {user: AWKWARD + password[:24] for user, password in json.loads(generated["userPasswords"]).items()}
    secrets["userPasswords"] = json.dumps(users)
    return config, secrets


def dev_stack(**overrides: str) -> DevStack:
    """The program's output for the dev stack with awkward secrets, and config `overrides`
    (stack config keys, values as the CLI stores them). The secrets stay the same for any overrides."""
    return _dev_stack(tuple(sorted(overrides.items())))


@functools.lru_cache(maxsize=None)
def _dev_stack(overrides: tuple[tuple[str, str], ...]) -> DevStack:
    config, secrets = awkward_secrets()
    config = {**config, **dict(overrides)}
    return read_dev_stack(run_program(config, secrets, "dev"), load_settings(config, "dev"))


def read_dev_stack(run: ProgramRun, settings: StackSettings) -> DevStack:
    name = settings.pgpool.name
    secret = {r.name: r.props.get("stringData", {}) for r in run.of_type("core/v1:Secret")}
    config_map = {r.name: r.props.get("data", {}) for r in run.of_type("core/v1:ConfigMap")}
    objects = {r.props["metadata"]["name"]: r.props.get("stringData", r.props.get("data", {}))
               for r in run.of_type("core/v1:Secret") + run.of_type("core/v1:ConfigMap")}
    [dashboard] = [text for r in run.of_type("core/v1:ConfigMap")
                   if r.props["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
                   for text in r.props["data"].values()]
    pod = manifest(run.find("apps/v1:Deployment", name).props["spec"]["template"]["spec"])
    containers = {c["name"]: c for c in pod["containers"] + pod["initContainers"]}
    pgpool, exporter = containers["pgpool"], containers["exporter"]

    def env_of(container: dict) -> dict[str, str]:
        values = {}
        for var in container.get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            values[var["name"]] = objects[ref["name"]][ref["key"]] if ref else var["value"]
        return values

    passwords = {}
    for data in secret.values():
        if {"username", "password"} <= data.keys():
            passwords[data["username"]] = data["password"]
    cluster = settings.database.cluster_name
    files = {f: secret[f"{name}-files"][f] for f in SECRET_FILES if f in secret[f"{name}-files"]}  # env mode: pcppass
    files.update(secret.get(f"{name}-tls", {}))  # tls.crt and tls.key, when ssl is on
    return DevStack(
        settings=settings,
        config_files=dict(config_map[f"{name}-config"]),
        secret_files=files,
        passwords=passwords,
        init_sql=secret[f"{cluster}-init"]["init.sql"],
        user_conf=secret[f"{cluster}-config"]["user.conf"],
        objects=objects,
        pod=pod,
        pgpool_command=tuple(pgpool.get("command", ())),  # none in env mode: the image's entrypoint runs
        readiness_command=tuple(pgpool["readinessProbe"]["exec"]["command"]),
        liveness_command=tuple(pgpool["livenessProbe"]["exec"]["command"]),
        init_command=tuple(containers["prepare-secrets"]["command"]),
        pre_stop_command=tuple(pgpool.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", ())),
        probe_env=env_of(pgpool),
        exporter_env=env_of(exporter),
        alert_rules=config_map["prometheus-rules"]["pgpool.yml"],
        dashboard=json.loads(dashboard),
    )


# --- the local copy ------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalPorts:
    """The free ports standing in for the container's, and the local database's."""

    port: int
    pcp_port: int
    primary_port: int
    standby_port: int
    host: str = "127.0.0.1"
    """Where the pod listens (its address)."""
    primary_host: str = "127.0.0.1"
    standby_host: str = "127.0.0.1"


def pgpool_values(generated: str, pod: LocalPod, ports: LocalPorts) -> dict[str, str]:
    """The new value of each LOCAL_PGPOOL_KEYS parameter the generated pgpool.conf sets, written as
    pgpool.conf wants it: listen addresses on 127.0.0.1 only (an empty one stays empty), ports and
    backends the local ones, every path the pgpool container's volume mounted there."""
    values = {}
    for line in generated.splitlines():
        match = CONF_LINE.match(line)
        if not match or match["name"] not in LOCAL_PGPOOL_KEYS:
            continue
        name, value = match["name"], match["value"].strip("'")
        if name in ("listen_addresses", "pcp_listen_addresses"):
            # On this machine's network only 127.0.0.1; a pod's own network namespace keeps the generated value.
            text = value if ports.host != LocalPorts.host else ports.host if value else ""
        elif name in ("backend_hostname0", "backend_hostname1"):
            text = ports.primary_host if name == "backend_hostname0" else ports.standby_host
        elif name in ("port", "pcp_port", "backend_port0", "backend_port1"):
            values[name] = str({"port": ports.port, "pcp_port": ports.pcp_port, "backend_port0": ports.primary_port,
                                "backend_port1": ports.standby_port}[name])
            continue
        else:
            text = pod.path("pgpool", value)
        values[name] = quote_conf_value(name, text)
    return values


def rewrite_pgpool_conf(generated: str, values: dict[str, str]) -> str:
    """The generated pgpool.conf with the value of each parameter in `values` replaced."""
    unknown = set(values) - set(LOCAL_PGPOOL_KEYS)
    if unknown:
        raise ValueError(f"not in LOCAL_PGPOOL_KEYS: {sorted(unknown)}")
    seen, lines = set(), []
    for line in generated.splitlines(keepends=True):
        match = CONF_LINE.match(line.rstrip("\n"))
        if match and match["name"] in values:
            seen.add(match["name"])
            line = f"{match['name']} = {values[match['name']]}" + ("\n" if line.endswith("\n") else "")
        lines.append(line)
    missing = set(values) - seen
    if missing:
        raise ValueError(f"the generated pgpool.conf lacks {sorted(missing)}")
    return "".join(lines)


def rewrite_pcppass(generated: str, pcp_port: int) -> str:
    """The generated .pcppass (host:port:user:password lines) with the port field replaced."""
    lines = []
    for line in generated.splitlines(keepends=True):
        host, port, rest = line.split(":", 2)
        lines.append(f"{host}:{pcp_port}:{rest}")
    return "".join(lines)


def local_files(stack: DevStack, pod: LocalPod, ports: LocalPorts) -> dict[str, str]:
    """Every generated file as the local run writes it, by the file's name."""
    files = {**stack.config_files, **stack.secret_files}
    files["pgpool.conf"] = rewrite_pgpool_conf(files["pgpool.conf"], pgpool_values(files["pgpool.conf"], pod, ports))
    files["pcppass"] = rewrite_pcppass(files["pcppass"], ports.pcp_port)
    check_local_copy(stack, files)
    return files


def changed_lines(generated: str, local: str) -> list[tuple[str, str]]:
    """(generated line, local line), line ends included, of every line that differs;
    AssertionError if lines were added or removed."""
    before, after = generated.splitlines(keepends=True), local.splitlines(keepends=True)
    matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    changed = []
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if tag != "replace" or a1 - a0 != b1 - b0:
            raise AssertionError(f"local copy adds or removes lines:\n-{before[a0:a1]}\n+{after[b0:b1]}")
        changed += list(zip(before[a0:a1], after[b0:b1]))
    return changed


def check_local_copy(stack: DevStack, local: dict[str, str]) -> None:
    """AssertionError unless `local` is the program's files, but for the LOCAL_PGPOOL_KEYS lines
    of pgpool.conf and the port field of pcppass."""
    generated = {**stack.config_files, **stack.secret_files}
    if set(local) != set(generated):
        raise AssertionError(f"local files {sorted(local)} != generated {sorted(generated)}")
    for name, text in local.items():
        try:
            changed = changed_lines(generated[name], text)
        except AssertionError as error:
            raise AssertionError(f"{name}: {_redacted(name, str(error))}") from None
        for before, after in changed:
            if name == "pgpool.conf" and _same_local_key(before, after):
                continue
            if name == "pcppass" and _only_port_differs(before, after):
                continue
            raise AssertionError(f"{name}: the local copy changes a line the fixed lists do not name:\n"
                                 f"  generated: {_redacted(name, before)}\n  local:     {_redacted(name, after)}")


def _same_local_key(before: str, after: str) -> bool:
    old, new = CONF_LINE.match(before), CONF_LINE.match(after)
    return bool(old and new and old["name"] == new["name"] and new["name"] in LOCAL_PGPOOL_KEYS
                and before.endswith("\n") == after.endswith("\n"))


def _only_port_differs(before: str, after: str) -> bool:
    old, new = before.split(":", 2), after.split(":", 2)
    return len(old) == len(new) == 3 and old[0] == new[0] and old[2] == new[2]


def _redacted(name: str, line: str) -> str:
    return line.rstrip("\n") if name in ("pgpool.conf", "pool_hba.conf") else "<secret line>"


def local_objects(stack: DevStack, files: dict[str, str]) -> dict[str, dict[str, str]]:
    """The ConfigMaps and Secrets the pod reads, holding the local copy of each generated file."""
    return {name: {key: files.get(key, text) for key, text in data.items()} for name, data in stack.objects.items()}
