"""Pgpool-II's files: which ones each configuration mode puts into which object (`pgpool_files`), and
the pure renderers of pgpool.conf (or its PGPOOL_PARAMS_* env form), pool_hba.conf, pool_passwd,
.pgpoolkey, pcp.conf, .pcppass and the readiness probe's .pgpass.

Deterministic text from settings, no I/O and no Pulumi, so the component, the data-plane harness and
the tests all render the same bytes. Every value reaching a file is checked against the reader of that
file (pgpool's lexer, its pool_passwd/pcp.conf readers, the pcp client's .pcppass reader), so no value
can end a line early or add one. Limits cited below are from Pgpool-II 4.3/4.5 sources.
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Callable, Iterable, Sequence

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from components.operators import Backends
from components.pgpool_image import PGPOOL_IMAGE
from components.query_cache import query_cache_params
from policies.pgpool_policies.pgpool_versions import PROCESS_MANAGEMENT_MODE, UNIX_SOCKET_DIRECTORIES, WORK_DIR
from components.settings import (
    MAX_AES_PASSWORD_BYTES,
    MAX_NAME_BYTES,
    MAX_PCP_USER_BYTES,
    MAX_POOL_KEY_BYTES,
    PgpoolSettings,
)
from components.stack_secrets import Credential, PgpoolSecrets

ConfValue = bool | int | str | PurePosixPath
"""A pgpool.conf value; PurePosixPath marks a path the image's entrypoint sets itself in env mode."""

POOL_PASSWD_ENTRY_MAX = 128
"""pgpool reads at most 128 characters of a pool_passwd entry (getNextToken): an AES entry for a
password over MAX_AES_PASSWORD_BYTES (79) is longer, and pgpool fails to decrypt the truncated entry."""
PCPPASS_LINE_MAX = 64 * 5 - 1
"""The pcp client reads .pcppass lines with fgets into NAMEDATALEN*5 bytes; longer lines split."""
SSL_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL"
"""TLS 1.2 AEAD suites only (TLS 1.3 suites are configured apart). Pgpool has no
ssl_min_protocol_version (4.3 to 4.5 ignore the name), but TLS 1.0/1.1 cannot use these suites,
so they are the minimum-version setting."""
LOG_LINE_PREFIX = "%m: %a pid %p: "
BACKEND_CA_DIR = "/etc/pgpool-postgres-ca"
CA_FILE = "ca.crt"
"""The CA of PostgreSQL's certificates (Backends.ca_secret), mounted here; read in place, as it is no secret."""


@dataclass(frozen=True)
class PgpoolPaths:
    """Where Pgpool-II's files live in its container; every path in pgpool.conf comes from here.

    The defaults are the Kubernetes layout; the data-plane harness overrides them for a local run.
    """

    config_dir: str = PGPOOL_IMAGE.config_volume
    """pgpool.conf and pool_hba.conf, mounted from the ConfigMap."""
    secrets_dir: str = "/run/pgpool-secrets"
    """pool_passwd, .pgpoolkey, pcp.conf, .pcppass, tls.crt and tls.key, copied here with mode 0600 by an
    init step: Kubernetes cannot give a Secret's files to uid 70 with mode 0600, and pgpool wants that."""
    socket_dir: str = PGPOOL_IMAGE.socket_dir
    """Unix sockets of pgpool, PCP (the liveness probe's pcp_node_count connects here) and the watchdog IPC."""
    pid_file: str = posixpath.join(PGPOOL_IMAGE.socket_dir, "pgpool.pid")
    work_dir: str = "/tmp"
    """Where pgpool keeps pgpool_status (discarded at start by -D): work_dir, logdir before 4.7."""
    query_cache_dir: str = "/var/lib/pgpool-query-cache"
    """memqcache_oiddir, with the query cache on: which cached results read which table, so a write can find
    them (a volume of its own: it grows by 8 bytes per cached result and table until the table is written)."""

    def _secret(self, name: str) -> str:
        return posixpath.join(self.secrets_dir, name)

    @property
    def pgpool_conf(self) -> str:
        return posixpath.join(self.config_dir, "pgpool.conf")

    @property
    def pool_hba(self) -> str:
        return posixpath.join(self.config_dir, "pool_hba.conf")

    @property
    def pool_passwd(self) -> str:
        return self._secret("pool_passwd")

    @property
    def pool_key(self) -> str:
        return self._secret(".pgpoolkey")

    @property
    def pcp_conf(self) -> str:
        return self._secret("pcp.conf")

    @property
    def pcppass(self) -> str:
        """The PCPPASSFILE of the liveness probe's `pcp_node_count -w`."""
        return self._secret("pcppass")

    @property
    def pgpass(self) -> str:
        """The PGPASSFILE of the readiness probe's psql: its password never sits in the environment, part of
        which the image's entrypoint evaluates (components/settings.py, ENTRYPOINT_MANGLES)."""
        return self._secret("pgpass")

    @property
    def tls_cert(self) -> str:
        return self._secret("tls.crt")

    @property
    def tls_key(self) -> str:
        return self._secret("tls.key")


def pgpool_command(paths: PgpoolPaths = PgpoolPaths(), binary: str = PGPOOL_IMAGE.program("pgpool")) -> list[str]:
    """The foreground pgpool command reading the files at `paths`.

    -D discards pgpool_status so a node marked down before a container restart is not kept down:
    on Kubernetes the Services behind both nodes are always there.
    """
    return [binary, "-n", "-D", "-f", paths.pgpool_conf, "-F", paths.pcp_conf,
            "-a", paths.pool_hba, "-k", paths.pool_key]


def pgpool_stop_command(mode: str, paths: PgpoolPaths = PgpoolPaths(),
                        binary: str = PGPOOL_IMAGE.program("pgpool")) -> list[str]:
    """Pgpool-II's own stop: signals the pid in pid_file_name (smart SIGTERM, fast SIGINT) and waits
    until pgpool has exited."""
    return [binary, "-f", paths.pgpool_conf, "-m", mode, "stop"]


# --- which file goes where, per configuration mode ------------------------------------------------

PCP_SECRET = "pcp"
"""Object suffix of the PCP user's Secret (env mode)."""
PROBE_DATABASE = "postgres"
"""The database the readiness probe and the exporter log in to."""
ENV_MODE_PATHS = PgpoolPaths(config_dir=PGPOOL_IMAGE.etc_dir, secrets_dir=PGPOOL_IMAGE.etc_dir)
"""Env mode: where the image's entrypoint writes the files pgpool reads (its etc dir)."""


@dataclass(frozen=True)
class PgpoolArgs:
    """What the Pgpool-II component is given."""

    settings: PgpoolSettings
    backends: Backends
    namespace: str
    secrets: PgpoolSecrets = field(repr=False)
    production: bool = False
    prometheus_peer: dict = field(default_factory=dict)
    """NetworkPolicy peer (snake_case) of the Prometheus allowed to scrape the exporter; empty admits none."""


@dataclass(frozen=True)
class PgpoolFiles:
    """What the pod reads, by object: every value here belongs in a ConfigMap or Secret."""

    config: dict[str, str]
    """ConfigMap <name>-config (no secret in it)."""
    secret: dict[str, str] = field(repr=False)
    """Secret <name>-files."""
    tls: dict[str, str] = field(repr=False)
    """Secret <name>-tls (the generated certificate); empty when ssl is off or tlsSecretName is set."""
    credentials: dict[str, Credential] = field(repr=False)
    """Secret (username, password) this stack creates, by object suffix: user-<user> for the monitor and
    application users and, in env mode, PCP_SECRET for the PCP user."""
    params: tuple[tuple[str, str], ...]
    """Env mode: the PGPOOL_PARAMS_* variables."""
    checksum: str
    """Hash of everything above and of the credentials read from the operator; a change rolls the pods."""


def _configmap_mode_files(args: PgpoolArgs) -> tuple[dict[str, str], dict[str, str], tuple[tuple[str, str], ...]]:
    """The whole pgpool.conf and pool_hba.conf in the ConfigMap, the credentials in the files Secret;
    pgpool runs on them directly."""
    s, sec = args.settings, args.secrets
    config = {"pgpool.conf": render_pgpool_conf(s, args.backends, args.namespace),
              "pool_hba.conf": render_pool_hba(s)}
    secret = {
        "pool_passwd": render_pool_passwd(sec.users, s.password_encryption, sec.pool_key),
        ".pgpoolkey": render_pool_key(sec.pool_key),
        "pcp.conf": render_pcp_conf(sec.pcp),
        "pcppass": render_pcppass(sec.pcp, s.pcp_port),
        "pgpass": render_pgpass(sec.monitor, PROBE_DATABASE),
    }
    return config, secret, ()


def _env_mode_files(args: PgpoolArgs) -> tuple[dict[str, str], dict[str, str], tuple[tuple[str, str], ...]]:
    """PGPOOL_PARAMS_* variables for the image's entrypoint, which writes pgpool.conf, pool_passwd,
    pcp.conf and a new pool key at every start; pool_hba.conf and the probes' pcppass and pgpass as files."""
    s = args.settings
    params = (*render_pgpool_env(s, args.backends, args.namespace),
              ("PGPOOL_PASSWORD_ENCRYPTION_METHOD", s.password_encryption),
              ("PGPOOL_ENABLE_POOL_PASSWD", "true"))
    probes = {"pcppass": render_pcppass(args.secrets.pcp, s.pcp_port),
              "pgpass": render_pgpass(args.secrets.monitor, PROBE_DATABASE)}
    return {"pool_hba.conf": render_pool_hba(s)}, probes, params


MODE_FILES: dict[str, Callable[[PgpoolArgs], tuple[dict[str, str], dict[str, str], tuple[tuple[str, str], ...]]]] = {
    "configmap": _configmap_mode_files, "env": _env_mode_files}
"""(ConfigMap data, files Secret data, PGPOOL_PARAMS_* variables) of each pgpoolMode."""


def pgpool_files(args: PgpoolArgs) -> PgpoolFiles:
    """Every file and credential the pod reads, by the object that holds it."""
    s, sec = args.settings, args.secrets
    config, secret, params = MODE_FILES[s.mode](args)
    tls = {"tls.crt": sec.tls_cert, "tls.key": sec.tls_key} if s.ssl and not s.tls_secret_name else {}
    # The superuser's Secret belongs to the database operator; the stack makes one per other role.
    credentials = {f"user-{u.name.replace('_', '-')}": u for u in sec.stack_roles}
    if s.mode == "env":
        credentials[PCP_SECRET] = sec.pcp
    checksum = config_checksum(
        *[f"{name}\n{text}" for name, text in sorted({**config, **secret, **tls}.items())],
        *[f"{name}={value}" for name, value in params],
        *[f"{u.name}:{u.password}" for u in sec.users + (sec.pcp,)],
        s.tls_secret_name,
    )
    return PgpoolFiles(config, secret, tls, credentials, params, checksum)


# --- pgpool.conf values ------------------------------------------------------------------


def _conf_string_problem(value: str) -> str | None:
    """Why `value` cannot be written between single quotes in pgpool.conf, or None.

    Pgpool's lexer (src/config/pool_config.l) keeps what is between the quotes verbatim, with no
    unescaping: a backslash pairs with the next character and stays, a quote ends the string and a
    line break ends the line. So a value is written as is, and the few it cannot hold are refused
    (escaping them, as PostgreSQL's parser would want, would silently change the value).
    """
    if "'" in value:
        return "contains a single quote, which pgpool.conf cannot hold inside a quoted value"
    if any(c in value for c in "\n\r\0"):
        return "contains a line break or NUL byte"
    if (len(value) - len(value.rstrip("\\"))) % 2:
        return "ends in a lone backslash, which would escape the closing quote"
    return None


def quote_conf_value(name: str, value: str) -> str:
    """`value` single-quoted for pgpool.conf; ValueError naming the parameter if it cannot be."""
    problem = _conf_string_problem(value)
    if problem:
        raise ValueError(f"pgpool.conf parameter {name} = {value!r} {problem}; remove that character")
    return f"'{value}'"


def _text(value: ConfValue) -> str:
    """A value's text, booleans as pgpool's on/off."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _conf_value(name: str, value: ConfValue) -> str:
    text = _text(value)
    return text if isinstance(value, (bool, int)) else quote_conf_value(name, text)


def _env_value(name: str, value: ConfValue) -> str:
    """`value` as the image's entrypoint needs it in PGPOOL_PARAMS_<NAME>.

    The entrypoint runs `printenv | sed -nr "s/^PGPOOL_PARAMS_(.*)=(.*)/\\L\\1 = '\\E\\2'/p"`: the value
    lands between quotes unescaped (so the pgpool.conf rules apply), and the greedy first group
    splits at the LAST '=', so a value containing '=' would corrupt the parameter name.
    """
    text = _text(value)
    problem = _conf_string_problem(text) or ("contains '=', which the image's sed takes as the "
                                             "end of the parameter name" if "=" in text else None)
    if problem:
        raise ValueError(f"PGPOOL_PARAMS_{name.upper()} = {text!r} {problem}; remove that character")
    return text


# --- pgpool.conf -------------------------------------------------------------------------

Block = tuple[str, tuple[tuple[str, ConfValue], ...]]
"""A comment naming the rule a group of parameters implements, and the parameters."""


def _listening(pgpool: PgpoolSettings, backends: Backends, namespace: str, paths: PgpoolPaths) -> Block:
    return ("Guide: listen on every address, clients come through the Service. PCP on the unix socket only.", (
        ("listen_addresses", "*"),
        ("port", pgpool.port),
        # PCP can detach backends and stop pgpool: TCP only when pcpOverTcp opens it.
        ("pcp_listen_addresses", "*" if pgpool.pcp_over_tcp else ""),
        ("pcp_port", pgpool.pcp_port),
    ))


def _files(pgpool: PgpoolSettings, backends: Backends, namespace: str, paths: PgpoolPaths) -> Block:
    sockets = PurePosixPath(paths.socket_dir)  # PurePosixPath marks the paths the image manages in env mode
    release = pgpool.release
    # A release ignores the other name. unix_socket_directories is a plain string: the image's entrypoint sets
    # only socket_dir, so env mode needs it or 4.4+ puts the socket in /tmp instead of the sockets volume.
    socket = (("unix_socket_directories", paths.socket_dir) if release >= UNIX_SOCKET_DIRECTORIES
              else ("socket_dir", sockets))
    return ("Files, by this release's names (4.4 renamed socket_dir, 4.7 logdir).", (
        socket,
        ("pcp_socket_dir", sockets),
        ("wd_ipc_socket_dir", sockets),
        ("pid_file_name", PurePosixPath(paths.pid_file)),
        ("work_dir" if release >= WORK_DIR else "logdir", PurePosixPath(paths.work_dir)),
    ))


def _backends(pgpool: PgpoolSettings, backends: Backends, namespace: str, paths: PgpoolPaths) -> Block:
    return ("Guide 'Backend settings': node 0 = primary Service, node 1 = replica Service.", (
        ("backend_clustering_mode", "streaming_replication"),
        *_backend(0, backends.host(backends.primary_service, namespace), backends.port,
                  pgpool.backend_weight0, "ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER"),
        *_backend(1, backends.host(backends.replica_service, namespace), backends.port,
                  pgpool.backend_weight1, "DISALLOW_TO_FAILOVER"),
    ))


def _no_failover(pgpool: PgpoolSettings, backends: Backends, namespace: str, paths: PgpoolPaths) -> Block:
    return ("Guide 'Automated failover': health check, failover and watchdog off.", (
        ("failover_on_backend_error", False),
        ("health_check_period", 0),
        ("failover_command", ""),
        ("failback_command", ""),
        ("use_watchdog", False),
    ))


def _pooling(pgpool: PgpoolSettings, backends: Backends, namespace: str, paths: PgpoolPaths) -> Block:
    return ("Guide 'Load balancing', pooling; reserved_connections: excess clients get an error, not a hang.", (
        ("load_balance_mode", True),
        ("connection_cache", True),
        ("statement_level_load_balance", pgpool.statement_level_load_balance),
        ("disable_load_balance_on_write", pgpool.disable_load_balance_on_write),
        ("num_init_children", pgpool.num_init_children),
        *((("process_management_mode", pgpool.process_management_mode),)
          if pgpool.release >= PROCESS_MANAGEMENT_MODE else ()),
        ("max_pool", pgpool.max_pool),
        ("reserved_connections", pgpool.reserved_connections),
        ("child_life_time", pgpool.child_life_time),
        ("connection_life_time", pgpool.connection_life_time),
        ("client_idle_limit", pgpool.client_idle_limit),
    ))


def _replication_check(pgpool: PgpoolSettings, backends: Backends, namespace: str, paths: PgpoolPaths) -> Block:
    return ("Guide 'Streaming replication check': empty sr_check_password = take it from pool_passwd.", (
        ("sr_check_period", pgpool.sr_check_period),
        ("sr_check_user", pgpool.sr_check_user),
        ("sr_check_password", ""),
    ))


def _client_auth(pgpool: PgpoolSettings, backends: Backends, namespace: str, paths: PgpoolPaths) -> Block:
    return ("Guide 'Register password to pool_passwd', 'Generating pool_hba.conf': no clear-text auth.", (
        ("enable_pool_hba", True),
        ("pool_passwd", PurePosixPath(paths.pool_passwd)),
        ("allow_clear_text_frontend_auth", False),
    ))


def _tls(pgpool: PgpoolSettings, backends: Backends, namespace: str, paths: PgpoolPaths) -> Block:
    files = (("ssl_key", PurePosixPath(paths.tls_key)), ("ssl_cert", PurePosixPath(paths.tls_cert)))
    # Not a PurePosixPath: the image's entrypoint does not manage it, so env mode passes it on too.
    verify = (("ssl_ca_cert", posixpath.join(BACKEND_CA_DIR, CA_FILE)),) if pgpool.ssl and backends.ca_secret else ()
    return ("Guide 'TLS settings': AEAD suites only, so TLS 1.2 at least.", (
        ("ssl", pgpool.ssl),
        *(files if pgpool.ssl else ()),
        *verify,
        ("ssl_ciphers", SSL_CIPHERS),
        ("ssl_prefer_server_ciphers", True),
    ))


def _query_cache(pgpool: PgpoolSettings, backends: Backends, namespace: str, paths: PgpoolPaths) -> Block:
    if not pgpool.query_cache.enabled:
        return ("Query cache off; its store still holds the shared relation cache, so keep it small.",
                query_cache_params(pgpool.query_cache, paths.query_cache_dir))
    return ("Query cache in each pod's shared memory. A pod invalidates only for writes through itself: "
            "memqcache_expire bounds staleness.", query_cache_params(pgpool.query_cache, paths.query_cache_dir))


def _logging(pgpool: PgpoolSettings, backends: Backends, namespace: str, paths: PgpoolPaths) -> Block:
    return ("Logs to stderr for the container runtime.", (
        ("log_destination", "stderr"),
        ("logging_collector", False),
        ("log_line_prefix", LOG_LINE_PREFIX),
    ))


BLOCKS = (_listening, _files, _backends, _no_failover, _pooling, _replication_check, _client_auth, _tls,
          _query_cache, _logging)
"""pgpool.conf's blocks, in file order: each the parameters of one rule."""


def _blocks(pgpool: PgpoolSettings, backends: Backends, namespace: str, paths: PgpoolPaths) -> list[Block]:
    """Every parameter, grouped by the rule it implements; the single source of both forms."""
    return [block(pgpool, backends, namespace, paths) for block in BLOCKS]


def _backend(node: int, host: str, port: int, weight: int, flag: str) -> tuple[tuple[str, ConfValue], ...]:
    return (
        (f"backend_hostname{node}", host),
        (f"backend_port{node}", port),
        (f"backend_weight{node}", weight),
        (f"backend_flag{node}", flag),
    )


def render_pgpool_conf(pgpool: PgpoolSettings, backends: Backends, namespace: str,
                       paths: PgpoolPaths = PgpoolPaths()) -> str:
    """The whole pgpool.conf for the ConfigMap."""
    lines = ["# Generated by pgpool-k8s (components/pgpool_config.py); edit the stack settings, not this file."]
    for rule, params in _blocks(pgpool, backends, namespace, paths):
        lines += ["", f"# {rule}"]
        lines += [f"{name} = {_conf_value(name, value)}" for name, value in params]
    return "\n".join(lines) + "\n"


def render_pgpool_env(pgpool: PgpoolSettings, backends: Backends, namespace: str) -> list[tuple[str, str]]:
    """The same parameters as PGPOOL_PARAMS_<NAME> variables, in pgpool.conf order.

    The paths the image's entrypoint manages (socket_dir, pool_passwd, TLS, ...) are left out;
    unix_socket_directories stays, at the image's socket directory.
    """
    return [
        (f"PGPOOL_PARAMS_{name.upper()}", _env_value(name, value))
        for _, params in _blocks(pgpool, backends, namespace, PgpoolPaths())
        for name, value in params
        if not isinstance(value, PurePosixPath)
    ]


# --- pool_hba.conf -----------------------------------------------------------------------


def render_pool_hba(pgpool: PgpoolSettings) -> str:
    """Client authentication: every user by password, over TLS when ssl is on; no trust anywhere.

    With ssl on there are only hostssl lines, so a client without TLS matches nothing and is
    refused. The readiness probe logs in like a client (over TCP, with TLS), so a pod whose
    certificate failed to load is never Ready.
    """
    host_type = "hostssl" if pgpool.ssl else "host"
    method = pgpool.password_encryption
    rows = [
        (host_type, "all", "all", "0.0.0.0/0", method),
        (host_type, "all", "all", "::/0", method),
    ]
    lines = ["# Generated by pgpool-k8s (components/pgpool_config.py).",
             "# TYPE   DATABASE  USER       ADDRESS    METHOD"]
    lines += [f"{t:<8} {d:<9} {u:<10} {a:<10} {m}".rstrip() for t, d, u, a, m in rows]
    return "\n".join(lines) + "\n"


# --- pool_passwd, .pgpoolkey, pcp.conf, .pcppass --------------------------------------------


def _check_user(user: str, limit: int = MAX_NAME_BYTES) -> None:
    """A user name pgpool's pool_passwd and pcp.conf readers take back whole.

    They split lines at the first ':' and pool_passwd's reader treats '\\' as an escape.
    """
    if not user or any(c in user for c in ":\\\n\r\0"):
        raise ValueError(f"user name {user!r} is empty or contains ':', '\\', a line break or NUL; "
                         "pgpool's password files cannot hold it")
    if len(user.encode()) > limit:
        raise ValueError(f"user name {user!r} is longer than {limit} bytes, pgpool's limit")


def _check_password(user: str, password: str) -> None:
    """A password pgpool's tools accept. Never echoes it: only the user is named.

    A ':' is fine (the files hold a hash or a cipher text), a line break is not (.pcppass and
    pgpool's own tools are line based).
    """
    if not password:
        raise ValueError(f"user {user!r} has no password")
    if any(c in password for c in "\n\r\0"):
        raise ValueError(f"the password of user {user!r} contains a line break or NUL byte; set one without")
    if len(password.encode()) > MAX_NAME_BYTES:
        raise ValueError(f"the password of user {user!r} is longer than {MAX_NAME_BYTES} bytes, pgpool's limit")


def _check_pool_key(pool_key: str) -> bytes:
    """The key as pgpool reads it from the first line of .pgpoolkey."""
    key = pool_key.encode()
    if not key or any(c in pool_key for c in "\n\r\0"):
        raise ValueError("the pool key is empty or contains a line break or NUL byte; set one without")
    if len(key) > MAX_POOL_KEY_BYTES:
        raise ValueError(f"the pool key is {len(key)} bytes; pgpool reads only the first "
                         f"{MAX_POOL_KEY_BYTES}, so set one of at most {MAX_POOL_KEY_BYTES} bytes")
    return key


def _evp_bytes_to_key(secret: bytes, key_len: int = 32, iv_len: int = 16) -> tuple[bytes, bytes]:
    """OpenSSL's EVP_BytesToKey with SHA-1, no salt and one round, as pgpool's AES entries use."""
    derived, block = b"", b""
    while len(derived) < key_len + iv_len:
        block = hashlib.sha1(block + secret).digest()
        derived += block
    return derived[:key_len], derived[key_len:key_len + iv_len]


def _aes_entry(password: str, pool_key: str) -> str:
    key, iv = _evp_bytes_to_key(_check_pool_key(pool_key))
    padder = padding.PKCS7(algorithms.AES.block_size).padder()
    padded = padder.update(password.encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return "AES" + base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode()


def _md5_hex(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def pool_passwd_entry(user: str, password: str, method: str, pool_key: str) -> str:
    """One pool_passwd line (no newline): `user:AES...` for scram-sha-256, `user:md5...` for md5.

    scram-sha-256 needs the real password (pgpool logs in to the backend with it), so the entry is
    AES-encrypted with the pool key, exactly as pg_enc does; md5 stores md5(password + user) as pg_md5 -m.
    """
    _check_user(user)
    _check_password(user, password)
    if method == "scram-sha-256":
        entry = _aes_entry(password, pool_key)
    elif method == "md5":
        entry = "md5" + _md5_hex(password + user)
    else:
        raise ValueError(f"password method {method!r}: use scram-sha-256 or md5")
    if len(entry) > POOL_PASSWD_ENTRY_MAX:
        raise ValueError(f"the password of user {user!r} is too long for pool_passwd: pgpool reads "
                         f"{POOL_PASSWD_ENTRY_MAX} characters of an entry, so AES passwords must be at most "
                         f"{MAX_AES_PASSWORD_BYTES} bytes")
    return f"{user}:{entry}"


def render_pool_passwd(users: Sequence[Credential], method: str, pool_key: str) -> str:
    """pool_passwd for every user with a password.

    Users without one are skipped: in env mode the operator's Secret supplies them at pod start.
    """
    return _lines(pool_passwd_entry(u.name, u.password, method, pool_key) for u in users if u.password)


def render_pool_key(pool_key: str) -> str:
    """.pgpoolkey: the key and one newline (pgpool reads the first line)."""
    _check_pool_key(pool_key)
    return pool_key + "\n"


def render_pcp_conf(pcp: Credential) -> str:
    """pcp.conf: `user:md5(password)`, without prefix, as `pg_md5 PASSWORD` prints it."""
    _check_user(pcp.name, MAX_PCP_USER_BYTES)
    _check_password(pcp.name, pcp.password)
    return _lines([f"{pcp.name}:{_md5_hex(pcp.password)}"])


def _pcppass_field(text: str) -> str:
    """The pcp client's .pcppass reader treats '\\' as an escape and ':' as the separator."""
    return text.replace("\\", "\\\\").replace(":", "\\:")


def render_pcppass(pcp: Credential, port: int, host: str = "*") -> str:
    """.pcppass for `pcp_* -w`: `host:port:user:password`; a host of `*` matches any host."""
    _check_user(pcp.name, MAX_PCP_USER_BYTES)
    _check_password(pcp.name, pcp.password)
    if not host or any(c in host for c in "\n\r\0"):
        raise ValueError(f".pcppass host {host!r} is empty or contains a line break or NUL byte")
    host_field = host if host == "*" else _pcppass_field(host)
    line = ":".join([host_field, str(port), _pcppass_field(pcp.name), _pcppass_field(pcp.password)])
    if len(line.encode()) + 1 > PCPPASS_LINE_MAX:
        raise ValueError(f".pcppass line for user {pcp.name!r} is longer than the {PCPPASS_LINE_MAX} "
                         "bytes the pcp client reads; use a shorter password")
    return line + "\n"


def render_pgpass(user: Credential, database: str, host: str = "127.0.0.1") -> str:
    """libpq's password file for `user` on `database` at `host`, any port: `host:port:database:user:password`,
    with '\\' and ':' escaped as libpq reads them."""
    _check_user(user.name)
    _check_password(user.name, user.password)
    return ":".join([_pcppass_field(host), "*", _pcppass_field(database), _pcppass_field(user.name),
                     _pcppass_field(user.password)]) + "\n"


def _lines(lines: Iterable[str]) -> str:
    return "".join(f"{line}\n" for line in lines)


# --- checksum -----------------------------------------------------------------------------


def config_checksum(*texts: str) -> str:
    """sha256 over the texts, each prefixed with its length, for the pod-template annotation.

    The length prefix keeps ("ab", "c") and ("a", "bc") apart, so moving a line between files
    still rolls the pods.
    """
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode()
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()
