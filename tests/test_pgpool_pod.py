"""The pure pod builder (components/pgpool_pod.py) and the image contract it is built from, without mocks.

Every command of the pod (probes, command, args, the init step, the preStop hook, and the programs
named inside their shell scripts) must be one the pgpool/pgpool image provides at that path; the
init step's script is run for real by sh on directories standing in for its volumes.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

from components.pgpool_config import PgpoolPaths
from components.pgpool_image import PGPOOL_IMAGE
from components.pgpool_config import PCP_SECRET, PgpoolArgs, pgpool_files
from components.pgpool_pod import (
    QUERY_CACHE_VOLUME,
    QUERY_CACHE_VOLUME_SIZE,
    SECRET_MOUNT,
    TLS_MOUNT,
    CredentialRef,
    PodObjects,
    disruption_budget_spec,
    network_policy_spec,
    pod_plan,
    pod_template,
)
from components.query_cache import QueryCache, query_cache_params
from components.settings import load_settings
from components.stack_secrets import Credential, PgpoolSecrets

SHELL_BUILTINS = {"set", "umask", "shift", "exec", "cd", "test", "["}
VARIANTS = [dict(mode=mode, ssl=ssl, shutdown_mode=shutdown, pre_stop_seconds=wait, pcp_over_tcp=tcp)
            for mode in ("configmap", "env") for ssl in (True, False) for shutdown in ("smart", "fast")
            for wait in (0, 10) for tcp in (False, True)]


def pod_args(**changes: object) -> PgpoolArgs:
    settings = load_settings({}, "dev")
    pgpool = dataclasses.replace(settings.pgpool, **changes)
    secrets = PgpoolSecrets(pool_key="key", superuser=Credential("postgres", "su"), monitor=Credential("monitor", "mon"),
                            apps=(Credential("app", "app pw"),), pcp=Credential("pcp", "pcp pw"),
                            tls_cert="CERT", tls_key="KEY")
    return PgpoolArgs(pgpool, settings.database.backends, settings.namespace, secrets)


def objects_for(args: PgpoolArgs) -> PodObjects:
    users = {u.name: CredentialRef(f"secret-of-{u.name}") for u in args.secrets.users}
    pcp = CredentialRef("secret-of-pcp") if PCP_SECRET in pgpool_files(args).credentials else None
    tls = "tls-secret" if args.settings.ssl else None
    return PodObjects("config-map", "files-secret", tls, users, pcp)


def plan_for(**changes: object):
    args = pod_args(**changes)
    files = pgpool_files(args)
    return args, files, pod_plan(args, files, objects_for(args))


def commands(plan) -> dict[str, list[str]]:
    found = {"readiness": plan.readiness_command, "liveness": plan.liveness_command, "init": plan.init_command}
    for name in ("command", "args", "pre_stop_command"):
        if getattr(plan, name):
            found[name] = getattr(plan, name)
    return found


def programs_named(argv: list[str]) -> list[str]:
    """Every program `argv` runs: argv[0]; for `sh -c SCRIPT NAME ARGS`, the commands of the script
    and, where it execs "$@", the program among its arguments."""
    named = [argv[0]]
    if argv[:2] == [PGPOOL_IMAGE.program("sh"), "-c"]:
        script, args = argv[2], argv[4:]
        for simple in re.split(r";|&&", script):
            words = shlex.split(simple)
            if words and words[0] not in SHELL_BUILTINS:
                named.append(words[0])
            if words[:2] == ["exec", "$@"]:
                named.append(next(a for a in args if a.startswith("/")))
    return named


@pytest.mark.parametrize("changes", VARIANTS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_every_program_the_pod_runs_is_in_the_image_at_that_path(changes: dict) -> None:
    _, _, plan = plan_for(**changes)
    for what, argv in commands(plan).items():
        for program in programs_named(argv):
            assert PGPOOL_IMAGE.resolve(program) is not None, f"{what}: {program} is not in the image"


def test_the_contract_catches_what_relies_on_path() -> None:
    # Pgpool-II's bin dir is not on the image's PATH: a bare pcp_node_count restarts the pod forever.
    assert PGPOOL_IMAGE.resolve("pcp_node_count") is None
    assert PGPOOL_IMAGE.resolve("pgpool") is None
    assert PGPOOL_IMAGE.resolve("psql") == "/usr/bin/psql"
    assert PGPOOL_IMAGE.resolve("/opt/pgpool-II/bin/pcp_node_count") == "/opt/pgpool-II/bin/pcp_node_count"
    assert PGPOOL_IMAGE.resolve("/usr/sbin/pcp_node_count") is None  # Debian's path, not the image's
    assert programs_named(["/bin/sh", "-c", "pcp_node_count -w", "probe"]) == ["/bin/sh", "pcp_node_count"]
    with pytest.raises(ValueError, match="no program 'pg_ctl'"):
        PGPOOL_IMAGE.program("pg_ctl")


def test_probes_log_in_like_a_client_and_ask_pcp_on_its_socket() -> None:
    args, _, plan = plan_for()
    s = args.settings
    assert plan.readiness_command == ["/usr/bin/psql", "-X", "-w", "-h", "127.0.0.1", "-p", str(s.port),
                                      "-U", "monitor", "-d", "postgres", "-tAc", "SELECT 1"]
    assert plan.liveness_command == ["/opt/pgpool-II/bin/pcp_node_count", "-h", PGPOOL_IMAGE.socket_dir,
                                     "-p", str(s.pcp_port), "-U", "pcp", "-w"]
    env = {e["name"]: e for e in plan.env}
    assert env["PGPASSFILE"]["value"] == PgpoolPaths().pgpass
    assert env["PGSSLMODE"]["value"] == "require"
    assert env["PCPPASSFILE"]["value"] == PgpoolPaths().pcppass


def test_probe_timings_fit_a_tls_scram_login() -> None:
    args, files, plan = plan_for()
    objects = objects_for(args)
    [pgpool, _] = pod_template(args, plan, objects, {}, {}, files.checksum)["spec"]["containers"]
    assert pgpool["startup_probe"]["timeout_seconds"] >= 5
    assert pgpool["readiness_probe"]["timeout_seconds"] >= 5
    # PGCONNECT_TIMEOUT lets psql give up before the kubelet does, with a message in the probe's output.
    env = {e["name"]: e.get("value") for e in plan.env}
    assert int(env["PGCONNECT_TIMEOUT"]) < pgpool["readiness_probe"]["timeout_seconds"]


@pytest.mark.parametrize("tcp", [False, True])
def test_pcp_is_on_tcp_only_when_asked(tcp: bool) -> None:
    args, files, plan = plan_for(pcp_over_tcp=tcp)
    ports = {p["name"]: p["container_port"] for p in plan.ports}
    assert ports == ({"postgres": 9999, "pcp": 9898} if tcp else {"postgres": 9999})
    assert ("pcp_listen_addresses = '*'" if tcp else "pcp_listen_addresses = ''") in files.config["pgpool.conf"]
    env_args, env_files, _ = plan_for(mode="env", pcp_over_tcp=tcp)
    assert dict(env_files.params)["PGPOOL_PARAMS_PCP_LISTEN_ADDRESSES"] == ("*" if tcp else "")


def test_configmap_mode_runs_pgpool_itself_on_the_mounted_files() -> None:
    _, files, plan = plan_for()
    assert plan.args is None
    assert plan.command == ["/opt/pgpool-II/bin/pgpool", "-n", "-D", "-f", "/config/pgpool.conf",
                            "-F", "/run/pgpool-secrets/pcp.conf", "-a", "/config/pool_hba.conf",
                            "-k", "/run/pgpool-secrets/.pgpoolkey"]
    assert set(files.config) == {"pgpool.conf", "pool_hba.conf"}
    assert set(files.secret) == {"pool_passwd", ".pgpoolkey", "pcp.conf", "pcppass", "pgpass"}


def test_env_mode_keeps_the_entrypoint_and_starts_pgpool_with_d() -> None:
    # The image's start.sh runs pgpool without -D (a node once marked down stays down across
    # container restarts) and without exec (bash, not pgpool, would get the stop signal): args
    # replace it, and the entrypoint execs them after writing etc/.
    _, files, plan = plan_for(mode="env")
    assert plan.command is None
    etc = PGPOOL_IMAGE.etc_dir
    assert plan.args == ["/opt/pgpool-II/bin/pgpool", "-n", "-D", "-f", f"{etc}/pgpool.conf", "-F", f"{etc}/pcp.conf",
                         "-a", f"{etc}/pool_hba.conf", "-k", f"{etc}/.pgpoolkey"]
    written = {m["mount_path"] for m in plan.mounts if not m.get("read_only")}
    assert set(PGPOOL_IMAGE.writes_at_start) <= written  # the root filesystem is read-only
    assert set(files.config) == {"pool_hba.conf"} and set(files.secret) == {"pcppass", "pgpass"}
    assert files.credentials[PCP_SECRET].name == "pcp"


@pytest.mark.parametrize("mode", ["configmap", "env"])
def test_the_query_cache_gets_a_volume_of_its_own_where_pgpool_conf_says(mode: str) -> None:
    """With the cache on, memqcache_oiddir (which Pgpool-II writes as it caches) is a disk emptyDir of its own;
    the cache is System V shared memory, so no /dev/shm volume: the memory limit covers it. Off, neither."""
    cache = QueryCache(mode="shmem", max_stale_seconds=5)
    args, files, plan = plan_for(mode=mode, query_cache=cache)
    [volume] = [v for v in plan.volumes if v["name"] == QUERY_CACHE_VOLUME]
    assert volume == {"name": QUERY_CACHE_VOLUME, "empty_dir": {"size_limit": QUERY_CACHE_VOLUME_SIZE}}
    [mount] = [m for m in plan.mounts if m["name"] == QUERY_CACHE_VOLUME]
    oiddir = dict(query_cache_params(cache, mount["mount_path"]))["memqcache_oiddir"]
    rendered = files.config.get("pgpool.conf", "") + "".join(f"{name}={value}\n" for name, value in files.params)
    assert (f"memqcache_oiddir = '{oiddir}'" in rendered) or (f"PGPOOL_PARAMS_MEMQCACHE_OIDDIR={oiddir}" in rendered)
    assert not mount.get("read_only") and not any("/dev/shm" in m["mount_path"] for m in plan.mounts)
    _, _, off = plan_for(mode=mode)
    assert QUERY_CACHE_VOLUME not in {v["name"] for v in off.volumes} | {m["name"] for m in off.mounts}


@pytest.mark.parametrize("mode", ["smart", "fast"])
def test_shutdown_waits_then_stops_pgpool_as_chosen(mode: str) -> None:
    args, files, plan = plan_for(shutdown_mode=mode, pre_stop_seconds=7, termination_grace_seconds=45)
    template = pod_template(args, plan, objects_for(args), {}, {}, files.checksum)["spec"]
    assert template["termination_grace_period_seconds"] == 45
    [pgpool, _] = template["containers"]
    assert pgpool["lifecycle"]["pre_stop"]["exec_"]["command"] == plan.pre_stop_command
    if mode == "smart":  # Kubernetes' SIGTERM after the hook is Pgpool-II's smart shutdown
        assert plan.pre_stop_command == ["/bin/sleep", "7"]
    else:
        assert plan.pre_stop_command[4:] == ["7", "/opt/pgpool-II/bin/pgpool", "-f", "/config/pgpool.conf",
                                             "-m", "fast", "stop"]
    assert plan_for(shutdown_mode="smart", pre_stop_seconds=0)[2].pre_stop_command is None
    assert plan_for(mode="env", shutdown_mode="fast")[2].pre_stop_command[-5:-3] == [
        "-f", f"{PGPOOL_IMAGE.etc_dir}/pgpool.conf"]


def run_init_step(plan, tmp_path: Path, sources: dict[str, dict[str, str]]) -> dict[str, Path]:
    """Run the init step's sh script on local directories standing in for its mounts (Secret volumes
    hold `sources`, written as the kubelet does: group-readable for the fsGroup)."""
    local = {}
    for mount in [m["mount_path"] for m in plan.init_mounts] + [PGPOOL_IMAGE.etc_dir]:
        directory = tmp_path / mount.strip("/").replace("/", "_")
        directory.mkdir()
        for name, text in sources.get(mount, {}).items():
            (directory / name).write_text(text)
            (directory / name).chmod(0o640)
        local[mount] = directory
    argv = [local[a] if a in local else a for a in plan.init_command]
    subprocess.run([str(a) for a in argv], check=True, env={"PATH": "/usr/bin:/bin"}, umask=0o022)
    return local


@pytest.mark.parametrize("mode", ["configmap", "env"])
def test_init_step_copies_every_secret_file_with_mode_0600(mode: str, tmp_path: Path) -> None:
    _, files, plan = plan_for(mode=mode)
    sources = {SECRET_MOUNT: files.secret, TLS_MOUNT: {"tls.crt": "CERT", "tls.key": "KEY"},
               PGPOOL_IMAGE.etc_dir: {"pgpool.conf.sample": "sample"}}
    local = run_init_step(plan, tmp_path, sources)
    prepared = local[PgpoolPaths().secrets_dir]
    tls_target = prepared if mode == "configmap" else local["/prepared-tls"]
    expected = {prepared / name: text for name, text in files.secret.items()}
    expected.update({tls_target / "tls.crt": "CERT", tls_target / "tls.key": "KEY"})
    for path, text in expected.items():
        assert path.read_text() == text
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    if mode == "env":  # a writable copy of the image's etc/ for the entrypoint
        assert (local["/prepared-etc"] / "pgpool.conf.sample").read_text() == "sample"


def test_init_step_fails_when_a_file_is_missing(tmp_path: Path) -> None:
    _, files, plan = plan_for()
    partial = dict(files.secret)
    del partial["pcp.conf"]
    with pytest.raises(subprocess.CalledProcessError):
        run_init_step(plan, tmp_path, {SECRET_MOUNT: partial, TLS_MOUNT: {"tls.crt": "C", "tls.key": "K"}})


@pytest.mark.parametrize("mode", ["configmap", "env"])
def test_env_mode_tls_reaches_the_entrypoint_as_a_0600_copy(mode: str) -> None:
    _, _, plan = plan_for(mode=mode)
    mounts = {m["mount_path"]: m for m in plan.mounts}
    volumes = {v["name"]: v for v in plan.volumes}
    if mode == "env":
        # /config/tls is the init step's copy (an emptyDir), never the Secret volume itself.
        assert "empty_dir" in volumes[mounts[PGPOOL_IMAGE.tls_volume]["name"]]
        assert "empty_dir" in volumes[mounts[PGPOOL_IMAGE.tls_dir]["name"]]
    assert not any("secret" in volumes[m["name"]] for m in plan.mounts)  # pgpool sees only copies


def test_checksum_follows_files_and_credentials() -> None:
    base = pgpool_files(pod_args())
    assert pgpool_files(pod_args(num_init_children=20)).checksum != base.checksum
    assert pgpool_files(pod_args(pre_stop_seconds=3)).checksum == base.checksum  # the template shows it
    args = pod_args()
    moved = dataclasses.replace(args, secrets=dataclasses.replace(args.secrets, pcp=Credential("pcp", "other")))
    assert pgpool_files(moved).checksum != base.checksum


def test_disruption_budget_lets_a_drain_evict_unready_pods() -> None:
    spec = disruption_budget_spec({"app": "x"})
    assert spec == {"max_unavailable": 1, "selector": {"match_labels": {"app": "x"}},
                    "unhealthy_pod_eviction_policy": "AlwaysAllow"}


def test_network_policy_admits_pcp_only_from_the_named_peers() -> None:
    args = pod_args(network_policy=True, pcp_over_tcp=True, pcp_client_pod_labels=(("app", "pgpool-admin"),),
                    pcp_client_namespace_labels=(("team", "dba"),))
    ingress = network_policy_spec(args.settings, {"s": "1"}, {})["ingress"]
    by_port = {rule["ports"][0]["port"]: rule["from_"] for rule in ingress}
    assert by_port[9898] == [{"namespace_selector": {"match_labels": {"team": "dba"}},
                              "pod_selector": {"match_labels": {"app": "pgpool-admin"}}}]
    assert set(by_port) == {9999, 9898}
    closed = network_policy_spec(pod_args(network_policy=True).settings, {"s": "1"}, {})["ingress"]
    assert [rule["ports"][0]["port"] for rule in closed] == [9999]


def test_the_image_contract_matches_the_pods_uid() -> None:
    assert load_settings({}, "dev").pgpool.run_as_user == PGPOOL_IMAGE.uid == 70
    assert os.path.dirname(PGPOOL_IMAGE.program("pgpool")) == PGPOOL_IMAGE.bin_dir not in PGPOOL_IMAGE.path
