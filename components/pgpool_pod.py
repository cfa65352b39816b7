"""The Pgpool-II pod as plain data: one layout per configuration mode, built from the image contract.

Once the component has registered the ConfigMap and Secrets of `pgpool_files` (components/pgpool_config.py),
`pgpool_workload` lays out everything around their names (plain strings here, Pulumi outputs of
auto-named objects in the component): the pod plan (env, volumes, mounts, the init step, the command,
probes and the preStop hook), the pod template, the disruption budget and the NetworkPolicy. No Pulumi
import: all of it is tested without mocks, and the data-plane harness runs the plan's commands as the
pod would.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any, Mapping

from components import pgpool_config as conf
from components.network_policy import ingress_policy, peer
from components.pgpool_config import PROBE_DATABASE, PgpoolArgs, PgpoolFiles
from components.pgpool_image import PGPOOL_IMAGE
from components.settings import PgpoolSettings, env_prefix
from components.workload import (
    container_security_context,
    empty_dir,
    resources,
    restricted_pod_spec,
    secret_env,
    soft_anti_affinity,
)

SECRET_MOUNT = "/etc/pgpool-secrets"
"""The files Secret, seen only by the init step, which copies it to PgpoolPaths.secrets_dir."""
TLS_MOUNT = "/etc/pgpool-tls"
"""The TLS Secret, seen only by the init step."""
PREPARED_ETC = "/prepared-etc"
"""Env mode: the init step's view of the emptyDir that becomes the image's etc dir."""
PREPARED_TLS = "/prepared-tls"
"""Env mode: the init step's view of the emptyDir mounted at the image's /config/tls."""
EXPORTER_UID = 65534
"""The exporter image runs as root by default."""
TLS_FILES = ("tls.crt", "tls.key")
QUERY_CACHE_VOLUME = "query-cache"
QUERY_CACHE_VOLUME_SIZE = "1Gi"
"""memqcache_oiddir's limit: Pgpool-II appends 8 bytes per cached result to the file of each table it reads, and
empties it only when that table is written through the pod (or at start), so 1Gi is some 130 million results;
beyond it the kubelet evicts the pod, which then starts with an empty cache."""
Name = Any
"""The name of a Kubernetes object: a string, or a Pulumi output of an auto-named object."""


@dataclass(frozen=True)
class CredentialRef:
    secret: Name
    username_key: str = "username"
    password_key: str = "password"


@dataclass(frozen=True)
class PodObjects:
    """The names of the objects the pod mounts or reads, once registered."""

    config_map: Name
    files_secret: Name
    tls_secret: Name | None
    """The generated one, the user's tlsSecretName, or None with ssl off."""
    users: Mapping[str, CredentialRef]
    """By user name; the superuser's is the database operator's Secret."""
    pcp: CredentialRef | None = None
    """Env mode: the PCP user's Secret."""


@dataclass(frozen=True)
class PodPlan:
    """Everything the pgpool container and its init step do, for one mode."""

    env: list[dict]
    volumes: list[dict]
    mounts: list[dict]
    init_mounts: list[dict]
    init_command: list[str]
    command: list[str] | None
    """Replaces the image's ENTRYPOINT (configmap mode: pgpool itself)."""
    args: list[str] | None
    """Replaces the image's CMD (env mode: the entrypoint then execs pgpool with -D)."""
    ports: list[dict]
    readiness_command: list[str]
    liveness_command: list[str]
    pre_stop_command: list[str] | None


# --- one plan per mode ---------------------------------------------------------------------------


class _Mode:
    """What both modes share; the subclasses say where Pgpool-II's files come from."""

    paths = conf.PgpoolPaths()
    """Where the pod's own files land (prepared secrets, sockets, pid file)."""
    pgpool_paths = paths
    """Where pgpool reads pgpool.conf, pool_hba.conf, pcp.conf and the pool key."""
    tls_target = paths.secrets_dir
    """Where the init step puts tls.crt and tls.key."""
    pcppass = paths.pcppass
    """The PCPPASSFILE of the liveness probe's `pcp_node_count -w`."""
    pgpass = paths.pgpass
    """The PGPASSFILE of the readiness probe's psql."""
    command: list[str] | None = None
    """The container's command (None: the image's ENTRYPOINT)."""
    args: list[str] | None = None
    """The container's args (None: the image's CMD)."""
    fast_stop = conf.pgpool_stop_command("fast", pgpool_paths)
    """Pgpool-II's fast shutdown, for pgpoolShutdownMode fast."""

    def env(self, args: PgpoolArgs, objects: PodObjects, files: PgpoolFiles) -> list[dict]:
        return []

    def volumes(self, objects: PodObjects) -> list[dict]:
        volumes = [
            {"name": "config", "config_map": {"name": objects.config_map, "default_mode": 0o444}},
            {"name": "secret-files", "secret": {"secret_name": objects.files_secret, "default_mode": 0o600}},
            empty_dir("prepared-secrets", memory=True, size="1Mi"),
            empty_dir("sockets", memory=True, size="1Mi"),
            empty_dir("tmp", size="64Mi"),
        ]
        if objects.tls_secret is not None:
            volumes.append({"name": "tls", "secret": {"secret_name": objects.tls_secret, "default_mode": 0o600}})
        return volumes

    def mounts(self, tls: bool) -> list[dict]:
        return [
            {"name": "prepared-secrets", "mount_path": self.paths.secrets_dir, "read_only": True},
            {"name": "sockets", "mount_path": self.paths.socket_dir},
            {"name": "tmp", "mount_path": "/tmp"},
        ]

    def init_mounts(self, tls: bool) -> list[dict]:
        mounts = [{"name": "secret-files", "mount_path": SECRET_MOUNT, "read_only": True},
                  {"name": "prepared-secrets", "mount_path": self.paths.secrets_dir}]
        if tls:
            mounts.append({"name": "tls", "mount_path": TLS_MOUNT, "read_only": True})
        return mounts

    def copies(self, files: PgpoolFiles, tls: bool) -> list[tuple[str, tuple[str, ...], str]]:
        """(source dir, file names, target dir) for the init step; names () copy the whole dir."""
        copies = [(SECRET_MOUNT, tuple(sorted(files.secret)), self.paths.secrets_dir)]
        if tls:
            copies.append((TLS_MOUNT, TLS_FILES, self.tls_target))
        return copies



class _ConfigMapMode(_Mode):
    """The whole pgpool.conf and pool_hba.conf from a ConfigMap, credentials from a Secret; pgpool runs
    on them directly (the image's entrypoint is not used)."""

    command = conf.pgpool_command(_Mode.paths)

    def mounts(self, tls: bool) -> list[dict]:
        return [{"name": "config", "mount_path": self.paths.config_dir, "read_only": True}, *super().mounts(tls)]


class _EnvMode(_Mode):
    """PGPOOL_PARAMS_* and credentials in the environment, for the image's entrypoint, which writes
    pgpool.conf, pool_passwd, pcp.conf and a new pool key into its etc dir at every start, then execs
    the container's args: pgpool with -D (the image's start.sh has none, and keeps no exec)."""

    pgpool_paths = conf.ENV_MODE_PATHS
    args = conf.pgpool_command(pgpool_paths)
    tls_target = PREPARED_TLS
    fast_stop = conf.pgpool_stop_command("fast", pgpool_paths)

    def env(self, args: PgpoolArgs, objects: PodObjects, files: PgpoolFiles) -> list[dict]:
        env = [{"name": name, "value": value} for name, value in files.params]
        pcp = objects.pcp
        env += [secret_env("PGPOOL_PCP_USER", pcp.secret, pcp.username_key),
                secret_env("PGPOOL_PCP_PASSWORD", pcp.secret, pcp.password_key)]
        for user in args.secrets.users:
            ref, prefix = objects.users[user.name], env_prefix(user.name)
            env += [secret_env(f"{prefix}_USERNAME", ref.secret, ref.username_key),
                    secret_env(f"{prefix}_PASSWORD", ref.secret, ref.password_key)]
        return env

    def volumes(self, objects: PodObjects) -> list[dict]:
        volumes = [*super().volumes(objects), empty_dir("etc", size="16Mi")]
        if objects.tls_secret is not None:
            volumes += [empty_dir("prepared-tls", memory=True, size="1Mi"),
                        empty_dir("image-tls", memory=True, size="1Mi")]
        return volumes

    def mounts(self, tls: bool) -> list[dict]:
        mounts = [*super().mounts(tls),
                  {"name": "etc", "mount_path": PGPOOL_IMAGE.etc_dir},
                  {"name": "config", "mount_path": posixpath.join(PGPOOL_IMAGE.config_volume, "pool_hba.conf"),
                   "sub_path": "pool_hba.conf", "read_only": True}]
        if tls:
            # The entrypoint copies /config/tls/* into its tls dir; a copy of a Secret file would keep
            # the group read bit fsGroup gives it, and pgpool refuses a key it owns with that mode.
            mounts += [{"name": "prepared-tls", "mount_path": PGPOOL_IMAGE.tls_volume, "read_only": True},
                       {"name": "image-tls", "mount_path": PGPOOL_IMAGE.tls_dir}]
        return mounts

    def init_mounts(self, tls: bool) -> list[dict]:
        mounts = [*super().init_mounts(tls), {"name": "etc", "mount_path": PREPARED_ETC}]
        if tls:
            mounts.append({"name": "prepared-tls", "mount_path": PREPARED_TLS})
        return mounts

    def copies(self, files: PgpoolFiles, tls: bool) -> list[tuple[str, tuple[str, ...], str]]:
        # The entrypoint writes into the image's etc dir: give it a writable copy of it.
        return [*super().copies(files, tls), (PGPOOL_IMAGE.etc_dir, (), PREPARED_ETC)]


MODES: dict[str, _Mode] = {"configmap": _ConfigMapMode(), "env": _EnvMode()}


# --- the pod ------------------------------------------------------------------------------------


def shell(name: str, script: str, *args: str) -> list[str]:
    """`sh -c SCRIPT NAME ARGS...`: the script names its paths "$1", "$2", ..., so each path is an
    argument of its own that tests and the data plane can map."""
    return [PGPOOL_IMAGE.program("sh"), "-c", script, name, *args]


def copy_script(copies: list[tuple[str, tuple[str, ...], str]]) -> list[str]:
    """The init step: copies under umask 077, so pgpool gets 0600 files it owns (a Secret volume gives
    them to the fsGroup with group read, which pgpool refuses for its key files)."""
    directories: list[str] = []

    def ref(directory: str) -> str:
        if directory not in directories:
            directories.append(directory)
        return f"${{{directories.index(directory) + 1}}}"

    steps = ["set -eu", "umask 077"]
    for source, names, target in copies:
        if names:
            steps.append(" ".join(["cp", *(f'"{ref(source)}/{name}"' for name in names), f'"{ref(target)}/"']))
        else:  # each entry with its mode and owner, not the directory itself: the emptyDir is root's, and GNU
            # cp -a fails on its times (busybox only warns)
            steps.append(f'cp -a "{ref(source)}"/* "{ref(target)}/"')
    return shell("prepare-secrets", "; ".join(steps), *directories)


def readiness_command(s: PgpoolSettings, monitor_user: str) -> list[str]:
    """Ready = the monitor user logs in like any client (TCP, TLS when on, its password) and a backend
    answers; a pod whose certificate or pool_passwd is wrong is never Ready."""
    return [PGPOOL_IMAGE.program("psql"), "-X", "-w", "-h", "127.0.0.1", "-p", str(s.port), "-U", monitor_user,
            "-d", PROBE_DATABASE, "-tAc", "SELECT 1"]


def liveness_command(s: PgpoolSettings, pcp_user: str, paths: conf.PgpoolPaths = conf.PgpoolPaths()) -> list[str]:
    """Alive = PCP answers on its unix socket; needs no backend, so a database outage never restarts
    pgpool."""
    return [PGPOOL_IMAGE.program("pcp_node_count"), "-h", paths.socket_dir, "-p", str(s.pcp_port),
            "-U", pcp_user, "-w"]


def pre_stop_command(s: PgpoolSettings, mode: _Mode) -> list[str] | None:
    """Wait while endpoints drop the pod, so new clients go elsewhere before pgpool stops accepting.
    smart: Kubernetes' SIGTERM after the hook is Pgpool-II's smart shutdown; fast: the hook stops
    pgpool itself (SIGINT through `pgpool -m fast stop`) and waits for it."""
    if s.shutdown_mode == "fast":
        return shell("pre-stop", 'sleep "$1" && shift && exec "$@"', str(s.pre_stop_seconds), *mode.fast_stop)
    if s.pre_stop_seconds:
        return [PGPOOL_IMAGE.program("sleep"), str(s.pre_stop_seconds)]
    return None


def _query_cache_volume(s: PgpoolSettings, mode: _Mode) -> tuple[list[dict], list[dict]]:
    """With the query cache on, a disk volume of its own for memqcache_oiddir (the cache itself is shared
    memory, System V, so no /dev/shm volume: the container's memory limit covers it)."""
    if not s.query_cache.enabled:
        return [], []
    return ([empty_dir(QUERY_CACHE_VOLUME, size=QUERY_CACHE_VOLUME_SIZE)],
            [{"name": QUERY_CACHE_VOLUME, "mount_path": mode.pgpool_paths.query_cache_dir}])


def pod_plan(args: PgpoolArgs, files: PgpoolFiles, objects: PodObjects) -> PodPlan:
    s, sec = args.settings, args.secrets
    mode = MODES[s.mode]
    tls = objects.tls_secret is not None
    probe_env = [
        # Files, not the password: the image's entrypoint evaluates part of every environment line that
        # contains '_USERNAME=' (env mode), so a value in a variable without '_' in its name could run there.
        {"name": "PGPASSFILE", "value": mode.pgpass},
        {"name": "PGSSLMODE", "value": "require" if s.ssl else "disable"},
        {"name": "PGCONNECT_TIMEOUT", "value": "3"},
        {"name": "PCPPASSFILE", "value": mode.pcppass},
    ]
    ports = [{"name": "postgres", "container_port": s.port}]
    if s.pcp_over_tcp:
        ports.append({"name": "pcp", "container_port": s.pcp_port})
    cache_volume, cache_mount = _query_cache_volume(s, mode)
    volumes, mounts = mode.volumes(objects) + cache_volume, mode.mounts(tls) + cache_mount
    if args.backends.ca_secret and s.ssl:  # the CA Pgpool-II verifies PostgreSQL's certificates with
        volumes.append({"name": "postgres-ca", "secret": {
            "secret_name": args.backends.ca_secret, "items": [{"key": conf.CA_FILE, "path": conf.CA_FILE}],
            "default_mode": 0o444}})
        mounts.append({"name": "postgres-ca", "mount_path": conf.BACKEND_CA_DIR, "read_only": True})
    return PodPlan(
        env=mode.env(args, objects, files) + probe_env,
        volumes=volumes,
        mounts=mounts,
        init_mounts=mode.init_mounts(tls),
        init_command=copy_script(mode.copies(files, tls)),
        command=mode.command,
        args=mode.args,
        ports=ports,
        readiness_command=readiness_command(s, sec.monitor.name),
        liveness_command=liveness_command(s, sec.pcp.name, mode.paths),
        pre_stop_command=pre_stop_command(s, mode),
    )


def _pgpool_container(s: PgpoolSettings, plan: PodPlan) -> dict:
    container = {
        "name": "pgpool",
        "image": s.image,
        "ports": plan.ports,
        "env": plan.env,
        "volume_mounts": plan.mounts,
        "resources": resources(s.cpu_request, s.memory_request, s.cpu_limit, s.memory_limit),
        "security_context": container_security_context(),
        # A login through Pgpool-II to a backend, with TLS and SCRAM: 5 s, not the default 1 s.
        "startup_probe": {"exec_": {"command": plan.readiness_command}, "period_seconds": 5, "timeout_seconds": 5,
                          "failure_threshold": 60},
        "readiness_probe": {"exec_": {"command": plan.readiness_command}, "period_seconds": 10,
                            "timeout_seconds": 5, "failure_threshold": 3},
        "liveness_probe": {"exec_": {"command": plan.liveness_command}, "period_seconds": 20, "timeout_seconds": 5,
                           "failure_threshold": 3},
    }
    if plan.command:
        container["command"] = plan.command
    if plan.args:
        container["args"] = plan.args
    if plan.pre_stop_command:
        container["lifecycle"] = {"pre_stop": {"exec_": {"command": plan.pre_stop_command}}}
    return container


def _exporter_container(s: PgpoolSettings, monitor: CredentialRef) -> dict:
    """pgpool2_exporter, logging in as the monitor user."""
    return {
        "name": "exporter",
        "image": s.exporter_image,
        "ports": [{"name": "metrics", "container_port": s.exporter_port}],
        "env": [
            secret_env("POSTGRES_USERNAME", monitor.secret, monitor.username_key),
            secret_env("POSTGRES_PASSWORD", monitor.secret, monitor.password_key),
            {"name": "POSTGRES_DATABASE", "value": PROBE_DATABASE},
            {"name": "PGPOOL_SERVICE", "value": "localhost"},
            {"name": "PGPOOL_SERVICE_PORT", "value": str(s.port)},
            {"name": "SSLMODE", "value": "require" if s.ssl else "disable"},
        ],
        "resources": resources("25m", "32Mi", "200m", "64Mi"),
        "security_context": container_security_context(EXPORTER_UID),
        # No probes: pgpool2_exporter 1.2.2 opens its port only once it has logged in to Pgpool-II, and
        # retries every 5 s until then. A liveness probe would restart it in a loop while the monitor user
        # cannot log in, a readiness probe would take Pgpool-II out of its Service for a monitoring fault;
        # Prometheus' failed scrape (PgpoolDown) reports it instead.
    }


def _prepare_container(s: PgpoolSettings, plan: PodPlan) -> dict:
    """The init step that copies the key files, mode 0600, where pgpool reads them."""
    return {
        "name": "prepare-secrets",
        "image": s.image,
        "command": plan.init_command,
        "volume_mounts": plan.init_mounts,
        "resources": resources("10m", "16Mi", "100m", "32Mi"),
        "security_context": container_security_context(),
    }


def pod_template(args: PgpoolArgs, plan: PodPlan, objects: PodObjects, labels: dict[str, str],
                 selector: dict[str, str], checksum: str) -> dict:
    """The Deployment's pod template: pgpool, the exporter sidecar, the init step."""
    s = args.settings
    monitor = objects.users[args.secrets.monitor.name]
    return {
        "metadata": {"labels": labels, "annotations": {"checksum/config": checksum}},
        "spec": restricted_pod_spec(
            s.run_as_user, [_pgpool_container(s, plan), _exporter_container(s, monitor)], plan.volumes,
            affinity=soft_anti_affinity(selector),
            termination_grace_period_seconds=s.termination_grace_seconds,
            init_containers=[_prepare_container(s, plan)],
        ),
    }


@dataclass(frozen=True)
class PgpoolWorkload:
    """The specs of everything that runs Pgpool-II, around the registered objects' names."""

    pod_template: dict
    disruption_budget: dict
    network_policy: dict | None
    """None without networkPolicy."""


def pgpool_workload(args: PgpoolArgs, files: PgpoolFiles, objects: PodObjects, labels: dict[str, str],
                    selector: dict[str, str]) -> PgpoolWorkload:
    plan = pod_plan(args, files, objects)
    s = args.settings
    return PgpoolWorkload(
        pod_template=pod_template(args, plan, objects, labels, selector, files.checksum),
        disruption_budget=disruption_budget_spec(selector),
        network_policy=network_policy_spec(s, selector, args.prometheus_peer) if s.network_policy else None,
    )


# --- who may reach it, and how many may go at once ------------------------------------------------


def network_policy_spec(s: PgpoolSettings, selector: dict[str, str], prometheus_peer: dict) -> dict:
    """Clients to Pgpool-II's port, Prometheus to the exporter's, the named PCP clients to PCP (only
    with pcpOverTcp); nothing else gets in."""
    rules = [([peer(s.client_namespace_labels, s.client_pod_labels)], [s.port])]
    if prometheus_peer:
        rules.append(([prometheus_peer], [s.exporter_port]))
    if s.pcp_over_tcp:
        rules.append(([peer(s.pcp_client_namespace_labels, s.pcp_client_pod_labels)], [s.pcp_port]))
    return ingress_policy(selector, rules)


def disruption_budget_spec(selector: dict[str, str]) -> dict:
    """One pod at a time may be evicted. AlwaysAllow: a pod that is not Ready (every pod is, while the
    database is down) may still be evicted, so a node drain never waits for the database."""
    return {"max_unavailable": 1, "selector": {"match_labels": selector},
            "unhealthy_pod_eviction_policy": "AlwaysAllow"}
