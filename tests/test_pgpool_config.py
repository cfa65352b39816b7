"""Pgpool-II file renderers, proved against Debian's pgpool2 (4.3) rather than against our own reading.

- pool_passwd and pcp.conf lines are compared with what Debian's pg_enc and pg_md5 write.
- Debian's pgpool is started on the rendered files (backends on closed 127.0.0.1 ports) and read
  back: pcp_pool_status shows every parameter as pgpool parsed it, psycopg logins show pool_hba.conf
  and pool_passwd at work, openssl s_client shows the TLS settings. A login that passes pgpool's
  client authentication ends in BACKEND_STAGE, since no backend listens: that message is the proof
  the pool_hba/pool_passwd/pool key chain let the client in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Iterator

import psycopg
import pytest

from components.operators import Backends
from components.pgpool_config import (
    PgpoolPaths,
    config_checksum,
    pgpool_command,
    pool_passwd_entry,
    quote_conf_value,
    render_pcp_conf,
    render_pcppass,
    render_pgpass,
    render_pgpool_conf,
    render_pgpool_env,
    render_pool_hba,
    render_pool_key,
    render_pool_passwd,
)
from components.query_cache import MIB, QueryCache
from components.settings import ENTRYPOINT_MANGLES, MAX_POOL_KEY_BYTES, PgpoolSettings, load_settings
from components.stack_secrets import Credential
from tests.golden import GOLDEN_DIR, assert_matches_golden
from tests.dataplane.harness import LOCALHOST, Service, Workspace, free_ports
from tests.dataplane.installs import debian12
from tests.dataplane.local_stack import local_pgpool_paths

GOLDEN = GOLDEN_DIR / "pgpool"
INSTALL_HINT = "run `apt-get install pgpool2` (Debian's pgpool2 ships pgpool, pg_enc, pg_md5 and the pcp_* clients)"

DEV = load_settings({}, "dev")
DEV_BACKENDS = DEV.database.backends

POOL_KEY = "k3y with spaces, # and ü"
USERS = (
    Credential("app", "p@ss word"),
    Credential("report_ro", "it's a \"quoted\" one"),
    Credential("svc1", "#not a comment \\ and \\\\"),
    Credential("unicode", "ünïcødé ✓ pässwörd"),
    Credential("colons", "a:b:c"),
    Credential("dash", "-starts-like-an-option"),
    Credential("longest", "x" * 79),
)
"""Users with passwords that would break a naive line format; 79 bytes is the longest AES entry pgpool reads."""
PCP = Credential("pcp", "pc:p \\ #'pw")

BACKEND_STAGE = "failed to create a backend 0 connection"
NO_HBA_ENTRY = "no pool_hba.conf entry"
IMAGE_ENV_TO_CONF = r"""printenv | sed -nr "s/^PGPOOL_PARAMS_(.*)=(.*)/\L\1 = '\E\2'/p" """
"""How the pgpool/pgpool image's entrypoint.sh turns PGPOOL_PARAMS_* into pgpool.conf lines."""
IMAGE_REGISTERS_PASSWORDS = r"""
cmd="pg_enc -k ${PGPOOL_INSTALL_DIR}/etc/.pgpoolkey"
username=$(eval "echo \$${ev_username}_USERNAME")
password=$(eval "echo \$${ev_username}_PASSWORD")
${PGPOOL_INSTALL_DIR}/bin/${cmd} -m -f ${PGPOOL_INSTALL_DIR}/etc/pgpool.conf -u ${username} ${password} > /dev/null
echo "${PGPOOL_PCP_USER}:"`${PGPOOL_INSTALL_DIR}/bin/pg_md5 ${PGPOOL_PCP_PASSWORD}` >> ${PGPOOL_INSTALL_DIR}/etc/pcp.conf
"""
"""How the image's entrypoint.sh registers a user's password (scram-sha-256) and the PCP user's, in its
own words; run by bash (the image's bash is 5.2, as here) from / (the image sets no WORKDIR)."""

NOT_IN_POOL_STATUS_43 = {"logging_collector", "sr_check_password"}
"""pcp_pool_status of 4.3 hides them (the files for 4.3 hold no parameter it does not know)."""
NORMALISED_BY_PGPOOL = {"backend_clustering_mode", "disable_load_balance_on_write", "memqcache_method",
                        "backend_weight0", "backend_weight1", "backend_flag0", "backend_flag1"}
"""pcp_pool_status shows these as enum numbers, normalised weights or reordered flags."""


def tool(name: str) -> str:
    """Path of a Debian pgpool2 (or system) tool; fails the test, never skips it, when missing."""
    path = shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        pytest.fail(f"{name} not found: {INSTALL_HINT}")
    return path


def run(argv: list[str], cwd: Path | None = None) -> str:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"{argv[0]} exited {result.returncode}: {result.stdout}{result.stderr}"
    return result.stdout


def image_env_to_conf(env: list[tuple[str, str]]) -> str:
    """pgpool.conf lines from PGPOOL_PARAMS_* variables, by the image's own command."""
    return subprocess.run(["sh", "-c", IMAGE_ENV_TO_CONF], env={"PATH": "/usr/bin:/bin", **dict(env)},
                          capture_output=True, text=True, check=True).stdout


def parse_conf(text: str) -> dict[str, str]:
    """name -> value as pgpool's lexer reads it: between the quotes verbatim; a name may not repeat."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, separator, value = line.partition(" = ")
        assert separator and name not in values, f"unexpected line {line!r}"
        values[name] = value[1:-1] if value.startswith("'") else value
    return values


def pgpool_with(**changes: object) -> PgpoolSettings:
    return dataclasses.replace(DEV.pgpool, **changes)


# --- golden files ---------------------------------------------------------------------------

GOLDEN_RENDERINGS = {
    "pgpool.conf": lambda: render_pgpool_conf(DEV.pgpool, DEV_BACKENDS, DEV.namespace),
    "pgpool.env": lambda: "".join(f"{n}={v}\n" for n, v in render_pgpool_env(DEV.pgpool, DEV_BACKENDS, DEV.namespace)),
    "pool_hba.conf": lambda: render_pool_hba(DEV.pgpool),
    "pool_hba.no-ssl.conf": lambda: render_pool_hba(load_settings({"ssl": False}, "dev").pgpool),
}


@pytest.mark.parametrize("name", GOLDEN_RENDERINGS)
def test_rendering_matches_golden_file(name: str) -> None:
    """Review changes to the golden files; regenerate them with UPDATE_GOLDEN=1."""
    assert_matches_golden(GOLDEN_RENDERINGS[name](), GOLDEN / name)


# --- pgpool.conf ------------------------------------------------------------------------------


def test_dev_pgpool_conf_follows_the_guide() -> None:
    conf = parse_conf(render_pgpool_conf(DEV.pgpool, DEV_BACKENDS, DEV.namespace))
    assert conf["backend_hostname0"] == "pg.pgpool.svc.cluster.local"
    assert conf["backend_hostname1"] == "pg-standby.pgpool.svc.cluster.local"
    assert "backend_hostname2" not in conf
    assert conf["backend_flag0"] == "ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER"
    assert conf["backend_flag1"] == "DISALLOW_TO_FAILOVER"
    assert (conf["backend_weight0"], conf["backend_weight1"]) == ("1", "2")  # 3 PostgreSQL pods: 2 standbys
    assert {k: conf[k] for k in ("failover_on_backend_error", "use_watchdog", "health_check_period",
                                 "failover_command", "failback_command", "sr_check_period")} == {
        "failover_on_backend_error": "off", "use_watchdog": "off", "health_check_period": "0",
        "failover_command": "", "failback_command": "", "sr_check_period": "0"}
    assert (conf["load_balance_mode"], conf["connection_cache"], conf["listen_addresses"]) == ("on", "on", "*")
    assert (conf["enable_pool_hba"], conf["allow_clear_text_frontend_auth"], conf["sr_check_password"]) == ("on", "off", "")
    assert (conf["ssl"], conf["ssl_key"], conf["ssl_cert"]) == ("on", "/run/pgpool-secrets/tls.key", "/run/pgpool-secrets/tls.crt")
    assert (conf["log_destination"], conf["logging_collector"]) == ("stderr", "off")
    assert conf["unix_socket_directories"] == "/var/run/pgpool" and "socket_dir" not in conf


@pytest.mark.parametrize("release, named, unnamed", [
    ("4.3.15", {"socket_dir": "/var/run/pgpool", "logdir": "/tmp"},
     {"unix_socket_directories", "work_dir", "process_management_mode"}),
    ("4.4.12", {"unix_socket_directories": "/var/run/pgpool", "logdir": "/tmp", "process_management_mode": "static"},
     {"socket_dir", "work_dir"}),
    ("4.6.1", {"unix_socket_directories": "/var/run/pgpool", "logdir": "/tmp", "process_management_mode": "static"},
     {"socket_dir", "work_dir"}),
    ("4.7.2", {"unix_socket_directories": "/var/run/pgpool", "work_dir": "/tmp", "process_management_mode": "static"},
     {"socket_dir", "logdir"}),
])
def test_each_release_gets_the_names_it_knows(release: str, named: dict[str, str], unnamed: set[str]) -> None:
    """4.4 renamed socket_dir and brought process_management_mode, 4.7 renamed logdir; a release takes a name it
    does not know for an INFO line and ignores it (tests/dataplane/test_releases.py asks the running ones)."""
    settings = load_settings({"pgpoolImage": f"pgpool/pgpool:{release}"}, "dev")
    conf = parse_conf(render_pgpool_conf(settings.pgpool, DEV_BACKENDS, DEV.namespace))
    assert {name: conf.get(name) for name in named} == named
    assert unnamed.isdisjoint(conf)


def test_dynamic_process_management_is_rendered_for_4_4_and_later() -> None:
    settings = load_settings({"pgpoolProcessManagementMode": "dynamic"}, "dev")
    assert parse_conf(render_pgpool_conf(settings.pgpool, DEV_BACKENDS, DEV.namespace))[
        "process_management_mode"] == "dynamic"
    assert ("PGPOOL_PARAMS_PROCESS_MANAGEMENT_MODE", "dynamic") in render_pgpool_env(
        settings.pgpool, DEV_BACKENDS, DEV.namespace)


def test_ssl_off_leaves_out_key_and_certificate() -> None:
    conf = parse_conf(render_pgpool_conf(load_settings({"ssl": False}, "dev").pgpool, DEV_BACKENDS, DEV.namespace))
    assert conf["ssl"] == "off"
    assert "ssl_key" not in conf and "ssl_cert" not in conf


@pytest.mark.parametrize("raw, weights", [
    ({"postgresReplicas": 5}, ("1", "4")),
    ({"postgresReplicas": 2, "backendWeight0": 0}, ("0", "1")),
    ({"backendWeight0": 3, "backendWeight1": 7}, ("3", "7")),
])
def test_backend_weights_come_from_settings(raw: dict, weights: tuple[str, str]) -> None:
    settings = load_settings(raw, "dev")
    conf = parse_conf(render_pgpool_conf(settings.pgpool, settings.database.backends, settings.namespace))
    assert (conf["backend_weight0"], conf["backend_weight1"]) == weights


@pytest.mark.parametrize("raw, hosts", [
    ({"operator": "cloudnativepg", "clusterName": "db", "users": ["orders"]}, ("db-rw.pgpool.svc.cluster.local", "db-ro.pgpool.svc.cluster.local")),
    ({"operator": "external", "externalPrimaryHost": "pg-rw.data.svc", "externalReplicaHost": "pg-ro.data.svc",
      "externalCredentialsSecret": "pg-app"}, ("pg-rw.data.svc", "pg-ro.data.svc")),
])
def test_backend_hosts_follow_the_operator(raw: dict, hosts: tuple[str, str]) -> None:
    settings = load_settings(raw, "dev")
    conf = parse_conf(render_pgpool_conf(settings.pgpool, settings.database.backends, settings.namespace))
    assert (conf["backend_hostname0"], conf["backend_hostname1"]) == hosts


def test_every_path_in_pgpool_conf_comes_from_pgpool_paths() -> None:
    paths = PgpoolPaths(config_dir="/c", secrets_dir="/s", socket_dir="/sock", pid_file="/p/pgpool.pid", work_dir="/l")
    text = render_pgpool_conf(DEV.pgpool, DEV_BACKENDS, DEV.namespace, paths)
    path_values = {k: v for k, v in parse_conf(text).items() if v.startswith("/")}
    assert path_values == {
        "unix_socket_directories": "/sock", "pcp_socket_dir": "/sock",
        "wd_ipc_socket_dir": "/sock", "pid_file_name": "/p/pgpool.pid", "work_dir": "/l",
        "pool_passwd": "/s/pool_passwd", "ssl_key": "/s/tls.key", "ssl_cert": "/s/tls.crt",
    }
    for default in ("/var/run", "/run/pgpool-secrets", "/config", "/tmp"):
        assert default not in text


def test_pgpool_command_reads_every_file_from_pgpool_paths() -> None:
    paths = PgpoolPaths(config_dir="/c", secrets_dir="/s")
    assert pgpool_command(paths, "pgpool") == [
        "pgpool", "-n", "-D", "-f", "/c/pgpool.conf", "-F", "/s/pcp.conf", "-a", "/c/pool_hba.conf", "-k", "/s/.pgpoolkey"]


# --- one escaping rule, and injection ----------------------------------------------------------


@pytest.mark.parametrize("value", ["plain", "has # hash", r"back\slash", "even trailing \\\\", "ünï", ""])
def test_conf_values_are_written_verbatim(value: str) -> None:
    """Pgpool's lexer does not unescape (see the real-pgpool tests), so neither may we."""
    assert quote_conf_value("sr_check_user", value) == f"'{value}'"


@pytest.mark.parametrize("value, problem", [
    ("it's", "single quote"),
    ("a\nssl = off", "line break"),
    ("a\rb", "line break"),
    ("a\0b", "NUL"),
    ("lone trailing \\", "lone backslash"),
])
def test_conf_values_pgpool_cannot_hold_are_refused(value: str, problem: str) -> None:
    with pytest.raises(ValueError, match=rf"sr_check_user .*{problem}"):
        quote_conf_value("sr_check_user", value)


@pytest.mark.parametrize("render", [
    lambda s, b: render_pgpool_conf(s, b, "pgpool"),
    lambda s, b: render_pgpool_env(s, b, "pgpool"),
], ids=["conf", "env"])
@pytest.mark.parametrize("settings, backends, parameter", [
    (pgpool_with(sr_check_user="x'\nssl = off"), DEV_BACKENDS, "SR_CHECK_USER"),
    (DEV.pgpool, Backends("pg.db\nenable_pool_hba = off", "pg-ro.db", 5432, "s"), "BACKEND_HOSTNAME0"),
], ids=["sr_check_user", "backend_hostname0"])
def test_a_value_cannot_add_a_line_to_pgpool_conf_or_env(render, settings, backends, parameter) -> None:
    with pytest.raises(ValueError, match=rf"(?i){parameter}"):
        render(settings, backends)


def test_env_form_refuses_an_equals_sign_that_the_image_sed_would_misread() -> None:
    output = image_env_to_conf([("PGPOOL_PARAMS_SR_CHECK_USER", "a=b")])
    assert output == "sr_check_user=a = 'b'\n"  # the greedy first group ends at the last '='
    with pytest.raises(ValueError, match=r"PGPOOL_PARAMS_SR_CHECK_USER = 'a=b' contains '='"):
        render_pgpool_env(pgpool_with(sr_check_user="a=b"), DEV_BACKENDS, DEV.namespace)
    assert "'a=b'" in render_pgpool_conf(pgpool_with(sr_check_user="a=b"), DEV_BACKENDS, DEV.namespace)


# --- env form ----------------------------------------------------------------------------------


def test_env_form_is_pgpool_conf_without_the_image_managed_paths() -> None:
    conf = parse_conf(render_pgpool_conf(DEV.pgpool, DEV_BACKENDS, DEV.namespace))
    env = render_pgpool_env(DEV.pgpool, DEV_BACKENDS, DEV.namespace)
    names = [name.removeprefix("PGPOOL_PARAMS_").lower() for name, _ in env]
    assert all(name.startswith("PGPOOL_PARAMS_") and name.isupper() for name, _ in env)
    assert set(conf) - set(names) == {"pcp_socket_dir", "wd_ipc_socket_dir", "pid_file_name",
                                      "work_dir", "pool_passwd", "ssl_key", "ssl_cert"}
    assert names == [name for name in conf if name in names]  # pgpool.conf order
    assert dict(zip(names, (value for _, value in env))) == {name: conf[name] for name in names}


# --- pool_hba.conf -----------------------------------------------------------------------------


def hba_rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize("ssl, method", [(True, "scram-sha-256"), (True, "md5"), (False, "scram-sha-256"), (False, "md5")])
def test_pool_hba_asks_every_client_for_a_password(ssl: bool, method: str) -> None:
    rows = hba_rows(render_pool_hba(pgpool_with(ssl=ssl, password_encryption=method)))
    host = "hostssl" if ssl else "host"
    assert rows == [[host, "all", "all", "0.0.0.0/0", method],
                    [host, "all", "all", "::/0", method]]


# --- pool_passwd and .pgpoolkey against pg_enc / pg_md5 ---------------------------------------------


def write_key_file(directory: Path, pool_key: str) -> Path:
    """The key file as the init step writes it: render_pool_key's text, mode 0600 (pgpool warns otherwise)."""
    path = directory / ".pgpoolkey"
    path.write_text(render_pool_key(pool_key))
    path.chmod(0o600)
    return path


def pool_passwd_by_tools(directory: Path, users: tuple[Credential, ...], method: str, pool_key: str) -> str:
    """pool_passwd as Debian's `pg_enc -m` / `pg_md5 -m` write it (into the pgpool.conf's directory)."""
    conf = directory / "pgpool.conf"
    conf.write_text("pool_passwd = 'pool_passwd'\n")
    for user in users:
        if method == "scram-sha-256":
            argv = [tool("pg_enc"), "-m", "-f", str(conf), "-k", str(write_key_file(directory, pool_key))]
        else:
            argv = [tool("pg_md5"), "-m", "-f", str(conf)]
        run([*argv, "-u", user.name, "--", user.password], cwd=directory)
    return (directory / "pool_passwd").read_text()


def test_aes_entry_matches_the_known_vector() -> None:
    assert pool_passwd_entry("alice", "p@ss word", "scram-sha-256", "secretkey") == "alice:AESgufDqr9wivkwAzkBFkrwtw=="


@pytest.mark.parametrize("method", ["scram-sha-256", "md5"])
def test_pool_passwd_equals_what_pg_enc_and_pg_md5_write(tmp_path: Path, method: str) -> None:
    rendered = render_pool_passwd(USERS, method, POOL_KEY)
    assert rendered == pool_passwd_by_tools(tmp_path, USERS, method, POOL_KEY)
    prefix = "AES" if method == "scram-sha-256" else "md5"
    assert [line.split(":", 1)[0] for line in rendered.splitlines()] == [u.name for u in USERS]
    assert all(line.split(":", 1)[1].startswith(prefix) for line in rendered.splitlines())


def test_pg_enc_prints_the_same_aes_entry(tmp_path: Path) -> None:
    """pg_enc without -m prints 'pool_passwd string: AES...'; same cipher text as our entry."""
    key_file = write_key_file(tmp_path, POOL_KEY)
    for user in USERS:
        output = run([tool("pg_enc"), "-k", str(key_file), "-u", user.name, "--", user.password])
        [printed] = [line.removeprefix("pool_passwd string: ") for line in output.splitlines()
                     if line.startswith("pool_passwd string: ")]
        assert pool_passwd_entry(user.name, user.password, "scram-sha-256", POOL_KEY) == f"{user.name}:{printed}"


def test_users_without_a_password_are_left_to_the_image() -> None:
    users = (Credential("postgres", ""), *USERS[:2])
    assert render_pool_passwd(users, "md5", POOL_KEY) == render_pool_passwd(USERS[:2], "md5", POOL_KEY)


@pytest.mark.parametrize("password", ["pw\nmallory:md5deadbeef", "pw\rx", "pw\0x"])
def test_a_password_cannot_add_a_pool_passwd_or_pcp_line(password: str) -> None:
    for render in (lambda: pool_passwd_entry("app", password, "scram-sha-256", POOL_KEY),
                   lambda: pool_passwd_entry("app", password, "md5", POOL_KEY),
                   lambda: render_pcp_conf(Credential("pcp", password)),
                   lambda: render_pcppass(Credential("pcp", password), 9898)):
        with pytest.raises(ValueError) as error:
            render()
        assert "line break or NUL" in str(error.value) and password not in str(error.value)


@pytest.mark.parametrize("user", ["a:b", "a\nb", "a\\b", "", "u" * 129])
def test_user_names_the_password_files_cannot_hold_are_refused(user: str) -> None:
    for render in (lambda: pool_passwd_entry(user, "secret-pw", "md5", POOL_KEY),
                   lambda: render_pcp_conf(Credential(user, "secret-pw"))):
        with pytest.raises(ValueError, match="user name") as error:
            render()
        assert "secret-pw" not in str(error.value)


def test_aes_entries_longer_than_pgpool_reads_are_refused() -> None:
    """Proved on real pgpool in test_pgpool_decrypts_aes_entries_up_to_79_bytes."""
    assert len(pool_passwd_entry("u", "x" * 79, "scram-sha-256", POOL_KEY).split(":", 1)[1]) == 111
    with pytest.raises(ValueError, match="AES passwords must be at most 79 bytes") as error:
        pool_passwd_entry("u", "y" * 80, "scram-sha-256", POOL_KEY)
    assert "y" * 80 not in str(error.value)
    assert pool_passwd_entry("u", "y" * 128, "md5", POOL_KEY).startswith("u:md5")


def test_pool_key_file_is_the_key_and_one_newline() -> None:
    assert render_pool_key(POOL_KEY) == POOL_KEY + "\n"
    for bad in ("", "two\nlines", "cr\r"):
        with pytest.raises(ValueError, match="pool key is empty or contains a line break"):
            render_pool_key(bad)


def test_pool_key_over_255_bytes_is_refused_because_pgpool_drops_the_rest(tmp_path: Path) -> None:
    key_256 = "k" * 255 + "X"
    entries = set()
    for name, key in (("a", key_256), ("b", key_256[:255])):
        key_file = tmp_path / name
        key_file.write_text(key)
        key_file.chmod(0o600)
        entries.add(run([tool("pg_enc"), "-k", str(key_file), "--", "pw"]).splitlines()[-1])
    [printed] = entries  # pg_enc (and pgpool) never see the 256th byte
    assert f"u:{printed.removeprefix('pool_passwd string: ')}" == pool_passwd_entry(
        "u", "pw", "scram-sha-256", key_256[:MAX_POOL_KEY_BYTES])
    with pytest.raises(ValueError, match="pool key is 256 bytes"):
        pool_passwd_entry("u", "pw", "scram-sha-256", key_256)


# --- pcp.conf and .pcppass ------------------------------------------------------------------------


@pytest.mark.parametrize("password", [PCP.password, "plain", "ünï ✓", "-dash"])
def test_pcp_conf_equals_pg_md5(password: str) -> None:
    hashed = run([tool("pg_md5"), "--", password]).strip()
    assert render_pcp_conf(Credential("pcp", password)) == f"pcp:{hashed}\n"


def test_pcppass_escapes_separator_and_backslash() -> None:
    assert render_pcppass(Credential("pcp", "a:b\\c"), 9898) == "*:9898:pcp:a\\:b\\\\c\n"
    assert render_pcppass(Credential("pcp", "pw"), 9898, host="/var/run/pgpool") == "/var/run/pgpool:9898:pcp:pw\n"


def test_pgpass_is_for_the_probes_login_on_any_port_and_escapes_like_libpq() -> None:
    assert render_pgpass(Credential("monitor", "a:b\\c"), "postgres") == "127.0.0.1:*:postgres:monitor:a\\:b\\\\c\n"
    with pytest.raises(ValueError, match="line break"):
        render_pgpass(Credential("monitor", "a\nb"), "postgres")


def test_pcppass_line_longer_than_the_pcp_client_reads_is_refused() -> None:
    with pytest.raises(ValueError, match="longer than the 319 bytes") as error:
        render_pcppass(Credential("p" * 127, ":" * 100), 9898)
    assert ":" * 100 not in str(error.value)


# --- checksum ------------------------------------------------------------------------------------


def test_config_checksum_is_stable_and_frames_each_text() -> None:
    assert config_checksum("a", "b") == config_checksum("a", "b")
    assert len(config_checksum("a")) == 64
    assert config_checksum("ab", "c") != config_checksum("a", "bc")
    assert config_checksum("a", "") != config_checksum("a")
    assert config_checksum("x") != config_checksum("y")


# --- Debian's pgpool on the rendered files -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LocalPgpool:
    """Debian's pgpool running in a Workspace on rendered files; its backends' ports are closed."""

    workspace: Workspace
    settings: PgpoolSettings
    paths: PgpoolPaths
    service: Service

    def pcp(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        """A pcp client on PCP's unix socket, authenticating from the rendered .pcppass (-w never prompts)."""
        argv = [tool(program), "-h", self.paths.socket_dir, "-p", str(self.settings.pcp_port), "-U", PCP.name, "-w",
                *args]
        return self.workspace.run(argv, env={"PCPPASSFILE": self.paths.pcppass}, check=False)

    def pool_status(self) -> dict[str, str]:
        """Every parameter as pgpool parsed it, from `pcp_pool_status`."""
        result = self.pcp("pcp_pool_status")
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        return {name.removeprefix("name : "): value.removeprefix("value: ")
                for name, value in zip(lines, lines[1:]) if name.startswith("name : ")}

    def login(self, user: str, password: str | None = None, sslmode: str = "disable", host: str = LOCALHOST) -> str:
        """The server's answer to a login: BACKEND_STAGE once client authentication passed."""
        try:
            psycopg.connect(host=host, port=self.settings.port, user=user, password=password, dbname="postgres",
                            sslmode=sslmode, connect_timeout=10).close()
        except psycopg.OperationalError as error:
            return str(error)
        return "connected"

    def config_complaints(self) -> list[str]:
        """Log lines about pgpool.conf or pool_hba.conf lines pgpool ignored or rejected."""
        return [line for line in self.service.log.read_text(errors="replace").splitlines()
                if "configuration file" in line]


@contextlib.contextmanager
def workspace() -> Iterator[Workspace]:
    space = Workspace(prefix="pgpool-config-")
    try:
        yield space
    finally:
        space.remove()


def local_settings(**changes: object) -> tuple[PgpoolSettings, Backends]:
    """Pgpool on free ports, its two backends on closed ones (no login gets past authentication); the files
    rendered for the release Debian 12's pgpool stands for (tests/dataplane/installs.py)."""
    port, pcp_port, backend_port = free_ports(3)
    return (pgpool_with(image=debian12().image, port=port, pcp_port=pcp_port, **changes),
            Backends(LOCALHOST, LOCALHOST, backend_port, "unused"))


def rendered_files(pgpool: PgpoolSettings, backends: Backends, paths: PgpoolPaths, tls: tuple[str, str],
                   users: tuple[Credential, ...] = USERS) -> dict[str, str]:
    """Every file the pod gets, rendered as the component renders them (configmap mode)."""
    files = {
        paths.pgpool_conf: render_pgpool_conf(pgpool, backends, DEV.namespace, paths),
        paths.pool_hba: render_pool_hba(pgpool),
        paths.pool_passwd: render_pool_passwd((Credential(DEV.monitor_user, "mon pw"), *users),
                                              pgpool.password_encryption, POOL_KEY),
        paths.pool_key: render_pool_key(POOL_KEY),
        paths.pcp_conf: render_pcp_conf(PCP),
        paths.pcppass: render_pcppass(PCP, pgpool.pcp_port),
    }
    if pgpool.ssl:
        files[paths.tls_cert], files[paths.tls_key] = tls
    return files


@contextlib.contextmanager
def running_pgpool(space: Workspace, pgpool: PgpoolSettings, paths: PgpoolPaths,
                   files: dict[str, str]) -> Iterator[LocalPgpool]:
    """Write `files` (mode 0600), start pgpool exactly as pgpool_command says, wait until PCP answers."""
    for path, text in files.items():
        space.write(os.path.relpath(path, space.root), text)
    service = Service(space, "pgpool", pgpool_command(paths, tool("pgpool")))
    local = LocalPgpool(space, pgpool, paths, service)
    service.start()
    try:
        service.wait_ready("answering PCP through the rendered pcp.conf and .pcppass",
                           lambda: local.pcp("pcp_node_count").returncode == 0, timeout=60)
        yield local
    finally:
        service.stop(signal.SIGINT)


@pytest.fixture(scope="session")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate and key (PEM), made by openssl as an operator would."""
    directory = tmp_path_factory.mktemp("tls")
    run([tool("openssl"), "req", "-x509", "-nodes", "-newkey", "rsa:2048", "-days", "2", "-subj", "/CN=localhost",
         "-keyout", str(directory / "tls.key"), "-out", str(directory / "tls.crt")])
    return (directory / "tls.crt").read_text(), (directory / "tls.key").read_text()


ODD_SR_CHECK_USER = "odd#user\\name\\\\"
"""A '#', a backslash pair and a trailing backslash pair: pgpool must read it back verbatim."""


@pytest.fixture(scope="module", params=[(True, "scram-sha-256"), (True, "md5"), (False, "scram-sha-256"), (False, "md5")],
                ids=lambda p: f"{'ssl' if p[0] else 'no-ssl'}-{p[1]}")
def pgpool(request: pytest.FixtureRequest, tls_pair: tuple[str, str]) -> Iterator[LocalPgpool]:
    ssl, method = request.param
    settings, backends = local_settings(ssl=ssl, password_encryption=method, sr_check_user=ODD_SR_CHECK_USER)
    with workspace() as space:
        paths = local_pgpool_paths(space)
        with running_pgpool(space, settings, paths, rendered_files(settings, backends, paths, tls_pair)) as local:
            yield local


def assert_pgpool_read(conf_text: str, status: dict[str, str]) -> None:
    """pgpool parsed every parameter of `conf_text` to the value written (booleans shown as 1/0)."""
    written = parse_conf(conf_text)
    assert set(written) - set(status) == NOT_IN_POOL_STATUS_43
    for name, value in written.items():
        if name not in NOT_IN_POOL_STATUS_43 | NORMALISED_BY_PGPOOL:
            assert status[name] == {"on": "1", "off": "0"}.get(value, value), name
    assert status["backend_flag0"] == "DISALLOW_TO_FAILOVER|ALWAYS_PRIMARY"
    assert status["backend_flag1"] == "DISALLOW_TO_FAILOVER"
    assert float(status["backend_weight1"]) / float(status["backend_weight0"]) == pytest.approx(
        int(written["backend_weight1"]) / int(written["backend_weight0"]), rel=1e-4)


def test_pgpool_reads_every_parameter_back_as_written(pgpool: LocalPgpool) -> None:
    status = pgpool.pool_status()
    assert_pgpool_read(Path(pgpool.paths.pgpool_conf).read_text(), status)
    assert status["sr_check_user"] == ODD_SR_CHECK_USER
    assert pgpool.config_complaints() == []


def test_pgpool_reads_the_query_cache_parameters_back_as_written(tls_pair: tuple[str, str]) -> None:
    cache = QueryCache(mode="shmem", max_stale_seconds=30, total_bytes=8 * MIB, max_entries=1000,
                       max_result_bytes=100 * 1024, safe_tables=("reports.v_daily",), unsafe_tables=("orders", "stock"))
    settings, backends = local_settings(query_cache=cache)
    with workspace() as space:
        paths = local_pgpool_paths(space)
        files = rendered_files(settings, backends, paths, tls_pair)
        with running_pgpool(space, settings, paths, files) as local:
            status = local.pool_status()
            # 4.3's pcp_pool_status does not show memqcache_oiddir
            conf = "".join(line for line in files[paths.pgpool_conf].splitlines(keepends=True)
                           if not line.startswith("memqcache_oiddir = "))
            assert_pgpool_read(conf, status)
            assert local.config_complaints() == []
    assert f"memqcache_oiddir = '{paths.query_cache_dir}'" in files[paths.pgpool_conf]
    assert status["memqcache_method"] == "1"  # SHMEM_CACHE (src/include/pool_config.h)
    assert status["cache_unsafe_memqcache_table_list"] == r"([a-z0-9_$]+\.)?orders,([a-z0-9_$]+\.)?stock"


def test_every_user_logs_in_with_its_password_and_no_other(pgpool: LocalPgpool) -> None:
    sslmode = "require" if pgpool.settings.ssl else "disable"
    for user in USERS:
        assert BACKEND_STAGE in pgpool.login(user.name, user.password, sslmode), user.name
        assert "authentication failed" in pgpool.login(user.name, user.password + "x", sslmode), user.name
    assert "authentication failed" in pgpool.login("nobody", "pw", sslmode)


def test_clients_without_tls_are_refused_when_ssl_is_on(pgpool: LocalPgpool) -> None:
    user = USERS[0]
    answer = pgpool.login(user.name, user.password, "disable")
    if pgpool.settings.ssl:
        assert NO_HBA_ENTRY in answer and "SSL off" in answer
    else:
        assert BACKEND_STAGE in answer
        assert "server does not support SSL" in pgpool.login(user.name, user.password, "require")


def test_nobody_is_trusted_on_the_unix_socket(pgpool: LocalPgpool) -> None:
    assert NO_HBA_ENTRY in pgpool.login(DEV.monitor_user, host=pgpool.paths.socket_dir)
    assert NO_HBA_ENTRY in pgpool.login(USERS[0].name, USERS[0].password, host=pgpool.paths.socket_dir)


def s_client(port: int, *args: str) -> str:
    result = subprocess.run([tool("openssl"), "s_client", "-starttls", "postgres", "-connect", f"{LOCALHOST}:{port}",
                             *args], input="", capture_output=True, text=True, timeout=60)
    return result.stdout + result.stderr


def test_tls_offers_only_aead_suites(pgpool: LocalPgpool) -> None:
    if not pgpool.settings.ssl:
        assert "New, (NONE), Cipher is (NONE)" in s_client(pgpool.settings.port)
        return
    assert re.search(r"New, TLSv1\.2, Cipher is ECDHE-RSA-(AES\d+-GCM-SHA\d+|CHACHA20-POLY1305)\n",
                     s_client(pgpool.settings.port, "-tls1_2"))
    assert "Cipher is (NONE)" in s_client(pgpool.settings.port, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA")
    assert "New, TLSv1.3" in s_client(pgpool.settings.port)


def test_pcp_client_reads_the_escaped_pcppass(pgpool: LocalPgpool) -> None:
    """The PCP password has ':', '\\', '#', a quote and a space; a wrong one must fail."""
    assert pgpool.pcp("pcp_node_count").stdout.strip() == "2"
    wrong = render_pcppass(Credential(PCP.name, PCP.password + "x"), pgpool.settings.pcp_port)
    other = pgpool.workspace.write("secrets/wrong-pcppass", wrong)
    argv = [tool("pcp_node_count"), "-h", LOCALHOST, "-p", str(pgpool.settings.pcp_port), "-U", PCP.name, "-w"]
    assert pgpool.workspace.run(argv, env={"PCPPASSFILE": str(other)}, check=False).returncode != 0


def test_env_form_through_the_image_sed_is_read_back_by_pgpool(tls_pair: tuple[str, str]) -> None:
    """The env form, turned into pgpool.conf lines by the image's own sed, plus the path lines the
    image adds itself (taken from the configmap form), gives pgpool the same parameters."""
    settings, backends = local_settings()
    with workspace() as space:
        paths = local_pgpool_paths(space)
        files = rendered_files(settings, backends, paths, tls_pair, users=USERS[:1])
        env = render_pgpool_env(settings, backends, DEV.namespace)
        from_env = image_env_to_conf(env)
        env_names = {name.removeprefix("PGPOOL_PARAMS_").lower() for name, _ in env}
        path_lines = [line for line in files[paths.pgpool_conf].splitlines()
                      if " = " in line and line.split(" = ")[0] not in env_names]
        files[paths.pgpool_conf] = from_env + "\n".join(path_lines) + "\n"
        with running_pgpool(space, settings, paths, files) as local:
            assert_pgpool_read(files[paths.pgpool_conf], local.pool_status())
            assert local.config_complaints() == []
            assert BACKEND_STAGE in local.login(USERS[0].name, USERS[0].password, "require")


ENTRYPOINT_PASSWORDS = ["plain", "with space", "two  spaces", "tab\there", "-x", "-n", "et?", "b*", "[e]tc", "star*",
                        "q'u\"o\\te", "$HOME", "#hash", "co:lon", "semi;colon", "{a,b}", "~tilde", "a|b&c", "excl!", "a]",
                        "trailing-"]


@pytest.mark.parametrize("password", ENTRYPOINT_PASSWORDS)
def test_env_mode_password_rule_keeps_every_password_the_entrypoint_would_mangle_out(password: str,
                                                                                     tmp_path: Path) -> None:
    """The image's own lines with Debian's pg_enc and pg_md5: whatever they register differently from
    the password is refused by the settings layer in env mode; whatever the settings take, they keep."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "etc").mkdir()
    for program in ("pg_enc", "pg_md5"):
        (tmp_path / "bin" / program).symlink_to(tool(program))
    (tmp_path / "etc" / "pgpool.conf").write_text("pool_passwd = 'pool_passwd'\n")
    key = tmp_path / "etc" / ".pgpoolkey"
    key.write_text("entrypoint-key\n")
    key.chmod(0o600)
    env = {"PATH": "/usr/bin:/bin", "PGPOOL_INSTALL_DIR": str(tmp_path), "ev_username": "APP", "APP_USERNAME": "app",
           "APP_PASSWORD": password, "PGPOOL_PCP_USER": "pcp", "PGPOOL_PCP_PASSWORD": password}
    subprocess.run([tool("bash"), "-c", IMAGE_REGISTERS_PASSWORDS], env=env, cwd="/", capture_output=True, check=False)
    pool_passwd = tmp_path / "etc" / "pool_passwd"
    registered = pool_passwd.read_text() if pool_passwd.exists() else ""
    kept = (registered == pool_passwd_entry("app", password, "scram-sha-256", "entrypoint-key") + "\n"
            and (tmp_path / "etc" / "pcp.conf").read_text() == render_pcp_conf(Credential("pcp", password)))
    refused = bool(ENTRYPOINT_MANGLES.search(password))
    assert kept or refused, f"the entrypoint mangles {password!r}, which the settings accept"
    if not any(c in password for c in "*?["):  # a glob character survives only while it matches no file in /
        assert kept is not refused, f"{password!r}: kept {kept}, refused {refused}"


def test_pgpool_decrypts_aes_entries_up_to_79_bytes(tls_pair: tuple[str, str], tmp_path: Path) -> None:
    """pgpool reads 128 characters of a pool_passwd entry: the 80-byte password's entry (made by
    pg_enc, since we refuse it) is cut and pgpool cannot decrypt it."""
    settings, backends = local_settings(ssl=False)
    too_long = Credential("toolong", "z" * 80)
    with workspace() as space:
        paths = local_pgpool_paths(space)
        files = rendered_files(settings, backends, paths, tls_pair, users=(USERS[-1],))
        files[paths.pool_passwd] += pool_passwd_by_tools(tmp_path, (too_long,), "scram-sha-256", POOL_KEY)
        with running_pgpool(space, settings, paths, files) as local:
            assert BACKEND_STAGE in local.login(USERS[-1].name, USERS[-1].password)
            assert BACKEND_STAGE not in local.login(too_long.name, too_long.password)
            assert "unable to decrypt password from pool_passwd" in local.service.log.read_text()


def test_pgpool_keeps_backslash_escapes_verbatim_so_a_quote_cannot_be_escaped(tls_pair: tuple[str, str]) -> None:
    """Why quote_conf_value refuses quotes instead of escaping them: pgpool reads 'it\\'s' as it\\'s."""
    settings, backends = local_settings(ssl=False)
    with workspace() as space:
        paths = local_pgpool_paths(space)
        files = rendered_files(settings, backends, paths, tls_pair, users=USERS[:1])
        files[paths.pgpool_conf] += "sr_check_user = 'it\\'s'\n"
        with running_pgpool(space, settings, paths, files) as local:
            assert local.pool_status()["sr_check_user"] == "it\\'s"
