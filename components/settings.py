"""Stack settings: read stack config into frozen, validated dataclasses.

This is the only place that knows config key names. Every problem is collected and
raised together as a SettingsError before any resource is registered; each message
names the key, the offending value and the fix. No Pulumi import: the reader takes
plain mappings, so tests and the stack-initialisation script use it too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from components.backends import SUPERUSER_REQUIREMENT, TLS_ONLY_OPERATORS, backends_for, operator_owned_users
from components.scram import saslprep
from components.pgpool_image import PGPOOL_IMAGE

PROJECT = "pgpool-k8s"

OPERATORS = ("kubedb", "zalando", "crunchy", "cloudnativepg", "external")
MODES = ("configmap", "env")
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
DELETION_POLICIES = ("Delete", "Halt", "WipeOut", "DoNotTerminate")
STREAMING_MODES = ("Asynchronous", "Synchronous")
LOAD_BALANCE_ON_WRITE = ("transaction", "trans_transaction", "always", "dml_adaptive")
PROMETHEUS_STORAGE = ("emptyDir", "pvc")
SHUTDOWN_MODES = ("smart", "fast")
PASSWORD_ENCRYPTION = ("scram-sha-256", "md5")
POD_SECURITY_LEVELS = ("baseline", "restricted")

MAX_NAME_BYTES = 128  # pgpool's limit for user names and passwords in pool_passwd/pcp.conf
MAX_PCP_USER_BYTES = 127  # the pcp client refuses 128
MAX_AES_PASSWORD_BYTES = 79  # a longer password's AES entry outgrows the 128 characters pgpool reads
MAX_POOL_KEY_BYTES = 255  # pgpool and pg_enc ignore byte 256 onward
MIN_PORT = 1024  # pgpool refuses lower ports, and non-root containers cannot bind them
MIN_SHUTDOWN_SECONDS = 5  # what the termination grace period leaves Pgpool-II after the preStop wait
ENTRYPOINT_MANGLES = re.compile(r"[\s*?\[]|^-")
"""What the image's entrypoint (env mode) breaks in a password: it reads each one with an unquoted
`echo` and passes it on unquoted (`pg_enc ... -u ${username} ${password}`, `pg_md5
${PGPOOL_PCP_PASSWORD}`), so bash splits it at whitespace and expands glob characters against the
files of /, and a leading '-' is taken for an option by echo or by pg_enc/pg_md5."""
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
PG_ROLE = re.compile(r"^[a-z_][a-z0-9_]*$")
IMAGE_TAG = re.compile(r"^[^\s:@]+(:[0-9]+)?(/[^\s:@]+)*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}(@sha256:[0-9a-f]{64})?$")
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")
ALL_NAMESPACES = "*"
DURATION = re.compile(r"^[0-9]+(ms|s|m|h|d|w|y)$")
LABEL_PAIR = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_./]*=[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


class SettingsError(ValueError):
    """Invalid stack configuration; the message lists every problem found."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(
            "invalid stack configuration:\n" + "\n".join(f"  - {p}" for p in problems)
        )


# --- typed settings ---------------------------------------------------------------


@dataclass(frozen=True)
class Credential:
    """A PostgreSQL (or PCP) user and its password, known to the program."""

    name: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class DatabaseSettings:
    """The PostgreSQL cluster behind Pgpool-II and how to reach it."""

    operator: str = "kubedb"
    """kubedb (the program creates it) | zalando | crunchy | cloudnativepg | external."""
    cluster_name: str = "pg"
    """Name of the database cluster; Service and Secret names follow from it."""
    version: str = "16.4"
    """KubeDB PostgresVersion name."""
    replicas: int = 3
    """PostgreSQL pods: one primary, the rest hot standbys."""
    streaming_mode: str = "Asynchronous"
    storage_class: str = ""
    """Storage class of the data volumes; empty uses the cluster default."""
    storage_size: str = "1Gi"
    deletion_policy: str = "Delete"
    monitoring: bool = True
    """Let KubeDB run its postgres_exporter sidecar, scraped by Prometheus."""
    port: int = 5432
    max_connections: int = 200
    superuser_reserved_connections: int = 3
    superuser: str = "postgres"
    """The administrative user whose credentials Secret the operator (or we) hold."""
    primary_host: str = ""
    """Only for operator external: the read-write host name."""
    replica_host: str = ""
    """Only for operator external: the read-only host name."""
    credentials_secret: str = ""
    """Only for operator external: Secret with keys username and password."""
    client_image: str = "postgres:16.4-alpine"
    """Image (with sh and psql) of the Job that sets the stack's roles and passwords in PostgreSQL."""

    @property
    def standbys(self) -> int:
        return self.replicas - 1

    @property
    def usable_connections(self) -> int:
        """Connections a backend accepts from non-superusers."""
        return self.max_connections - self.superuser_reserved_connections


@dataclass(frozen=True)
class PgpoolSettings:
    """Pgpool-II: configuration mode, tuning, users and TLS."""

    name: str = "pgpool"
    mode: str = "configmap"
    """configmap: whole pgpool.conf/pool_hba.conf mounted; env: PGPOOL_PARAMS_* variables."""
    replicas: int = 2
    image: str = "pgpool/pgpool:4.5.4"
    exporter_image: str = "pgpool/pgpool2_exporter:1.2.2"
    port: int = 9999
    pcp_port: int = 9898
    pcp_over_tcp: bool = False
    """PCP also on TCP (pcp_port) for remote tools; off, it answers only on the pod's unix socket."""
    pcp_client_namespace_labels: tuple[tuple[str, str], ...] = ()
    pcp_client_pod_labels: tuple[tuple[str, str], ...] = ()
    """With pcp_over_tcp, the NetworkPolicy admits only these peers to the PCP port."""
    exporter_port: int = 9719
    num_init_children: int = 32
    max_pool: int = 2
    child_life_time: int = 300
    connection_life_time: int = 600
    client_idle_limit: int = 0
    reserved_connections: int = 1
    statement_level_load_balance: bool = False
    disable_load_balance_on_write: str = "transaction"
    backend_weight0: int = 1
    backend_weight1: int = 2
    """Defaults to the number of standbys so reads spread evenly over all pods."""
    sr_check_period: int = 0
    sr_check_user: str = ""
    password_encryption: str = "scram-sha-256"
    """Client auth method; scram-sha-256 stores AES entries in pool_passwd, md5 stores md5 hashes."""
    ssl: bool = True
    tls_secret_name: str = ""
    """A kubernetes.io/tls Secret of yours; empty uses the certificate generated for the stack."""
    service_type: str = "ClusterIP"
    network_policy: bool = False
    client_namespace_labels: tuple[tuple[str, str], ...] = ()
    client_pod_labels: tuple[tuple[str, str], ...] = ()
    cpu_request: str = "250m"
    cpu_limit: str = "1"
    memory_request: str = "256Mi"
    memory_limit: str = "512Mi"
    pre_stop_seconds: int = 10
    """Wait before Pgpool-II is told to stop, so Services stop sending new clients first."""
    shutdown_mode: str = "smart"
    """smart: SIGTERM, sessions end by themselves until the grace period; fast: sessions are cut at once."""
    termination_grace_seconds: int = 60
    """From the start of the preStop wait to SIGKILL."""
    run_as_user: int = PGPOOL_IMAGE.uid
    """The image's postgres user."""


@dataclass(frozen=True)
class PgpoolSecrets:
    """Everything secret Pgpool-II needs; kept out of repr so it never reaches a log."""

    pool_key: str = field(repr=False)
    users: tuple[Credential, ...] = field(repr=False)
    """Every user clients may log in as (pool_passwd entries): superuser, monitor, app users.
    The superuser's password is empty when the operator's Secret supplies it (env mode)."""
    pcp: Credential = field(repr=False)
    monitor: Credential = field(repr=False)
    tls_cert: str = field(default="", repr=False)
    tls_key: str = field(default="", repr=False)
    previous_superuser_password: str = field(default="", repr=False)
    """dbPasswordPrevious: what PostgreSQL still has while a KubeDB superuser password is rotated; empty otherwise."""


@dataclass(frozen=True)
class PrometheusSettings:
    enabled: bool = True
    operator: bool = False
    """The cluster runs the Prometheus Operator: emit ServiceMonitor/PrometheusRule instead."""
    image: str = "prom/prometheus:v3.5.0"
    storage: str = "emptyDir"
    storage_size: str = "2Gi"
    retention: str = "7d"
    scrape_interval: str = "15s"
    replication_delay_alert_bytes: int = 16 * 1024 * 1024
    replication_lag_alert_seconds: int = 60
    """A standby that has not replayed for this long while WAL is pending is lagging."""
    grafana_dashboard: bool = True
    operator_labels: tuple[tuple[str, str], ...] = ()
    """Extra labels on ServiceMonitor and PrometheusRule objects (KubeDB's too), for the Prometheus
    Operator's selectors, e.g. release=kube-prometheus-stack."""
    discovery_namespaces: tuple[str, ...] = ()
    """Namespaces whose annotated Services the server scrapes besides the stack's own; ("*",) is every one."""

    @property
    def cluster_wide(self) -> bool:
        """Discovery in every namespace, which only a ClusterRole can grant."""
        return self.discovery_namespaces == (ALL_NAMESPACES,)


@dataclass(frozen=True)
class ClusterTarget:
    """Where the manifests go: rendered to a directory, or applied to a cluster."""

    kubeconfig: str = ""
    context: str = ""
    render_dir: str = ".state/manifests"

    @property
    def renders(self) -> bool:
        return not (self.kubeconfig or self.context)


@dataclass(frozen=True)
class StackSettings:
    namespace: str
    stack: str
    production: bool
    pod_security_enforce: str
    """Pod Security level the namespace enforces (it always warns and audits at restricted)."""
    allow_load_balancer: bool
    database: DatabaseSettings
    pgpool: PgpoolSettings
    prometheus: PrometheusSettings
    target: ClusterTarget
    app_users: tuple[str, ...]
    pcp_user: str
    monitor_user: str


# --- reading raw config -------------------------------------------------------------

SECRET_KEYS = ("dbPassword", "dbPasswordPrevious", "poolKey", "pcpPassword", "monitorPassword", "tlsCert", "tlsKey")
"""Secret config keys; userPasswords (an object user -> password) is secret too."""


class _Reader:
    """Typed access to raw config strings, recording problems instead of raising."""

    def __init__(self, raw: Mapping[str, Any]):
        self.raw = raw
        self.problems: list[str] = []

    def fail(self, key: str, value: Any, fix: str) -> None:
        self.problems.append(f"{PROJECT}:{key} = {value!r}: {fix}")

    def text(self, key: str, default: str) -> str:
        value = self.raw.get(key, default)
        return default if value is None else str(value)

    def integer(self, key: str, default: int, low: int | None = None, high: int | None = None) -> int:
        value = self.raw.get(key, default)
        try:
            number = int(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        if number is None or (isinstance(value, str) and not re.fullmatch(r"-?[0-9]+", value.strip())):
            self.fail(key, value, "use a whole number")
            return default
        if (low is not None and number < low) or (high is not None and number > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            self.fail(key, value, f"use a number {bounds}")
            return default
        return number

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw.get(key, default)
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
        self.fail(key, value, "use true or false")
        return default

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(key, default)
        if value not in choices:
            self.fail(key, value, f"use one of {', '.join(choices)}")
            return default
        return value

    def strings(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.raw.get(key, default)
        if isinstance(value, str):
            import json

            try:
                value = json.loads(value)
            except ValueError:
                self.fail(key, value, 'use a list, e.g. ["a", "b"]')
                return default
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            self.fail(key, value, 'use a list of strings, e.g. ["a", "b"]')
            return default
        return tuple(value)

    def matching(self, key: str, default: str, pattern: re.Pattern[str], fix: str, allow_empty: bool = False) -> str:
        value = self.text(key, default)
        if (value or not allow_empty) and not pattern.fullmatch(value):
            self.fail(key, value, fix)
        return value

    def image(self, key: str, default: str) -> str:
        value = self.matching(key, default, IMAGE_TAG, f"pin an image tag, e.g. {default} (a missing tag means latest)")
        if value.rsplit(":", 1)[-1].split("@")[0] == "latest":
            self.fail(key, value, f"pin a version tag such as {default}; latest changes under you")
        return value

    def labels(self, key: str) -> tuple[tuple[str, str], ...]:
        pairs = []
        for item in self.strings(key, ()):
            if not LABEL_PAIR.fullmatch(item):
                self.fail(key, item, "each entry is a label selector pair key=value, e.g. app=web")
                continue
            name, _, value = item.partition("=")
            pairs.append((name, value))
        return tuple(pairs)


def load_settings(raw: Mapping[str, Any], stack: str) -> StackSettings:
    """Build StackSettings from raw stack config (keys without the project prefix)."""
    r = _Reader(raw)
    dns_fix = "use lower-case letters, digits and '-' (a DNS label of at most 63 characters)"

    namespace = r.matching("namespace", "pgpool", DNS_LABEL, dns_fix)
    operator = r.choice("operator", "kubedb", OPERATORS)
    database = DatabaseSettings(
        operator=operator,
        cluster_name=r.matching("clusterName", "pg", DNS_LABEL, dns_fix),
        version=r.text("postgresVersion", DatabaseSettings.version),
        replicas=r.integer("postgresReplicas", DatabaseSettings.replicas, 1, 15),
        streaming_mode=r.choice("streamingMode", DatabaseSettings.streaming_mode, STREAMING_MODES),
        storage_class=r.matching("storageClass", "", DNS_SUBDOMAIN, "use a StorageClass name, or leave empty for the cluster default", allow_empty=True),
        storage_size=r.matching("storageSize", DatabaseSettings.storage_size, QUANTITY, "use a Kubernetes quantity such as 10Gi"),
        deletion_policy=r.choice("deletionPolicy", DatabaseSettings.deletion_policy, DELETION_POLICIES),
        monitoring=r.boolean("postgresMonitoring", True),
        port=r.integer("postgresPort", 5432, MIN_PORT, 65535),
        max_connections=r.integer("postgresMaxConnections", DatabaseSettings.max_connections, 1, 262143),
        superuser_reserved_connections=r.integer("postgresSuperuserReservedConnections", 3, 0, 262143),
        superuser=r.matching("postgresSuperuser", "postgres", PG_ROLE, "use a lower-case PostgreSQL role name: a-z, 0-9 and '_', not starting with a digit"),
        primary_host=r.text("externalPrimaryHost", ""),
        replica_host=r.text("externalReplicaHost", ""),
        credentials_secret=r.text("externalCredentialsSecret", ""),
        client_image=r.image("postgresClientImage", DatabaseSettings.client_image),
    )
    if len(database.cluster_name) > 52:
        r.fail("clusterName", database.cluster_name, "use at most 52 characters so '<name>-standby' and pod names stay valid")
    if database.replicas < 2:
        r.fail("postgresReplicas", database.replicas, "Pgpool-II's node 1 is the read-only Service, which needs a standby "
               "behind it or every session fails; use 2 or more (default 3: a primary and two hot standbys)")
    if database.superuser_reserved_connections >= database.max_connections:
        r.fail("postgresSuperuserReservedConnections", database.superuser_reserved_connections,
               f"must be below postgresMaxConnections ({database.max_connections})")
    if operator == "external":
        for key, value in (("externalPrimaryHost", database.primary_host), ("externalReplicaHost", database.replica_host)):
            if not DNS_SUBDOMAIN.fullmatch(value):
                r.fail(key, value, "operator external needs the host name of the read-write and the read-only Service, e.g. pg-rw.db.svc")
        if not DNS_SUBDOMAIN.fullmatch(database.credentials_secret):
            r.fail("externalCredentialsSecret", database.credentials_secret, "operator external needs the name of a Secret with keys username and password")
    else:
        for key in ("externalPrimaryHost", "externalReplicaHost", "externalCredentialsSecret"):
            if raw.get(key):
                r.fail(key, raw.get(key), f"only used with operator external (operator is {operator}); remove it")

    standbys = database.replicas - 1
    ssl = r.boolean("ssl", True)
    pgpool = PgpoolSettings(
        name=r.matching("pgpoolName", "pgpool", DNS_LABEL, dns_fix),
        mode=r.choice("pgpoolMode", "configmap", MODES),
        replicas=r.integer("pgpoolReplicas", 2, 1, 100),
        image=r.image("pgpoolImage", PgpoolSettings.image),
        exporter_image=r.image("exporterImage", PgpoolSettings.exporter_image),
        port=r.integer("pgpoolPort", 9999, MIN_PORT, 65535),
        pcp_port=r.integer("pcpPort", 9898, MIN_PORT, 65535),
        pcp_over_tcp=r.boolean("pcpOverTcp", False),
        pcp_client_namespace_labels=r.labels("pcpClientNamespaceLabels"),
        pcp_client_pod_labels=r.labels("pcpClientPodLabels"),
        exporter_port=r.integer("exporterPort", 9719, MIN_PORT, 65535),
        num_init_children=r.integer("numInitChildren", PgpoolSettings.num_init_children, 1, 10000),
        max_pool=r.integer("maxPool", PgpoolSettings.max_pool, 1, 1000),
        child_life_time=r.integer("childLifeTime", PgpoolSettings.child_life_time, 0),
        connection_life_time=r.integer("connectionLifeTime", PgpoolSettings.connection_life_time, 0),
        client_idle_limit=r.integer("clientIdleLimit", PgpoolSettings.client_idle_limit, 0),
        reserved_connections=r.integer("reservedConnections", 1, 0),
        statement_level_load_balance=r.boolean("statementLevelLoadBalance", PgpoolSettings.statement_level_load_balance),
        disable_load_balance_on_write=r.choice("disableLoadBalanceOnWrite", "transaction", LOAD_BALANCE_ON_WRITE),
        backend_weight0=r.integer("backendWeight0", 1, 0, 100000),
        backend_weight1=r.integer("backendWeight1", max(standbys, 0), 0, 100000),
        sr_check_period=r.integer("srCheckPeriod", 0, 0, 86400),
        sr_check_user=r.text("srCheckUser", ""),
        password_encryption=r.choice("passwordEncryption", "scram-sha-256", PASSWORD_ENCRYPTION),
        ssl=ssl,
        tls_secret_name=r.matching("tlsSecretName", "", DNS_SUBDOMAIN, "use the name of a kubernetes.io/tls Secret, or leave empty to use the generated certificate", allow_empty=True),
        service_type=r.choice("pgpoolServiceType", "ClusterIP", SERVICE_TYPES),
        network_policy=r.boolean("networkPolicy", False),
        client_namespace_labels=r.labels("networkPolicyClientNamespaceLabels"),
        client_pod_labels=r.labels("networkPolicyClientPodLabels"),
        cpu_request=r.matching("pgpoolCpuRequest", PgpoolSettings.cpu_request, QUANTITY, "use a CPU quantity such as 250m or 1"),
        cpu_limit=r.matching("pgpoolCpuLimit", PgpoolSettings.cpu_limit, QUANTITY, "use a CPU quantity such as 500m or 2"),
        memory_request=r.matching("pgpoolMemoryRequest", PgpoolSettings.memory_request, QUANTITY, "use a memory quantity such as 256Mi"),
        memory_limit=r.matching("pgpoolMemoryLimit", PgpoolSettings.memory_limit, QUANTITY, "use a memory quantity such as 512Mi"),
        pre_stop_seconds=r.integer("pgpoolPreStopSeconds", PgpoolSettings.pre_stop_seconds, 0, 600),
        shutdown_mode=r.choice("pgpoolShutdownMode", PgpoolSettings.shutdown_mode, SHUTDOWN_MODES),
        termination_grace_seconds=r.integer("pgpoolTerminationGraceSeconds", PgpoolSettings.termination_grace_seconds,
                                            1, 86400),
    )
    if len(pgpool.name) > 50:
        r.fail("pgpoolName", pgpool.name, "use at most 50 characters so '<name>-metrics' stays a valid Service name")
    if len({pgpool.port, pgpool.pcp_port, pgpool.exporter_port}) < 3:
        r.fail("pgpoolPort", pgpool.port, f"pgpoolPort, pcpPort ({pgpool.pcp_port}) and exporterPort ({pgpool.exporter_port}) must differ")
    if pgpool.backend_weight0 + pgpool.backend_weight1 == 0:
        r.fail("backendWeight0", 0, "at least one backend needs a weight above 0 or no query can be load-balanced")
    # Every pod opens up to numInitChildren * maxPool connections to each backend.
    wanted = pgpool.replicas * pgpool.num_init_children * pgpool.max_pool
    if wanted > database.usable_connections:
        r.fail("numInitChildren", pgpool.num_init_children,
               f"pgpoolReplicas * numInitChildren * maxPool = {pgpool.replicas} * {pgpool.num_init_children} * "
               f"{pgpool.max_pool} = {wanted} exceeds what each backend accepts (postgresMaxConnections "
               f"{database.max_connections} - postgresSuperuserReservedConnections "
               f"{database.superuser_reserved_connections} = {database.usable_connections}); lower numInitChildren, "
               "maxPool or pgpoolReplicas, or raise postgresMaxConnections")
    if pgpool.reserved_connections < 1:
        r.fail("reservedConnections", pgpool.reserved_connections,
               "use at least 1 so clients beyond numInitChildren get an error instead of hanging")
    elif pgpool.reserved_connections >= pgpool.num_init_children:
        r.fail("reservedConnections", pgpool.reserved_connections, f"must be below numInitChildren ({pgpool.num_init_children})")
    if pgpool.tls_secret_name and not ssl:
        r.fail("tlsSecretName", pgpool.tls_secret_name, "a certificate is only used with ssl = true; set ssl to true or remove tlsSecretName")
    if operator in TLS_ONLY_OPERATORS and not ssl:
        r.fail("ssl", False, f"operator {operator} needs TLS to its PostgreSQL ({TLS_ONLY_OPERATORS[operator]}) and "
               "Pgpool-II connects to its backends with TLS only when ssl is on; set ssl to true")
    if (pgpool.client_namespace_labels or pgpool.client_pod_labels) and not pgpool.network_policy:
        r.fail("networkPolicy", False, "client label selectors are set but networkPolicy is false; set networkPolicy to true")
    pcp_peers = pgpool.pcp_client_namespace_labels or pgpool.pcp_client_pod_labels
    if pgpool.pcp_over_tcp and not (pgpool.network_policy and pcp_peers):
        r.fail("pcpOverTcp", True, f"PCP on TCP lets whoever reaches port {pgpool.pcp_port} detach backends or stop "
               "Pgpool-II; set networkPolicy to true and name the PCP clients in pcpClientPodLabels and/or "
               "pcpClientNamespaceLabels, or leave pcpOverTcp false (PCP stays on the pod's unix socket)")
    elif pcp_peers and not pgpool.pcp_over_tcp:
        r.fail("pcpClientPodLabels" if pgpool.pcp_client_pod_labels else "pcpClientNamespaceLabels",
               [f"{k}={v}" for k, v in pcp_peers], "PCP client labels are only used with pcpOverTcp = true; set it or remove them")
    if pgpool.termination_grace_seconds < pgpool.pre_stop_seconds + MIN_SHUTDOWN_SECONDS:
        r.fail("pgpoolTerminationGraceSeconds", pgpool.termination_grace_seconds,
               f"the grace period includes the preStop wait (pgpoolPreStopSeconds {pgpool.pre_stop_seconds}); use at "
               f"least {pgpool.pre_stop_seconds + MIN_SHUTDOWN_SECONDS} so Pgpool-II gets {MIN_SHUTDOWN_SECONDS}s "
               "to stop before it is killed")

    app_users = r.strings("users", ("app",))
    if not app_users:
        r.fail("users", [], "list at least one application user: applications must not log in as the superuser")
    pcp_user = r.text("pcpUser", "pcp")
    monitor_user = r.text("monitorUser", "monitor")
    for key, name in [("users", u) for u in app_users] + [("pcpUser", pcp_user), ("monitorUser", monitor_user)]:
        _check_user_name(r, key, name)
    if len(pcp_user.encode()) > MAX_PCP_USER_BYTES:
        r.fail("pcpUser", pcp_user, f"the pcp client accepts at most {MAX_PCP_USER_BYTES} bytes; shorten it")
    if pgpool.mode == "env":
        for name in app_users + (monitor_user, database.superuser):
            prefix = env_prefix(name)
            if "_" in prefix:
                r.fail("users" if name in app_users else "monitorUser", name,
                       f"in pgpoolMode env the image cuts the variable prefix at the first underscore, so user {name!r} "
                       f"(prefix {prefix}_USERNAME) breaks it; rename the user without '_' or use pgpoolMode configmap")
    owned = operator_owned_users(database)
    for key, name in [("users", u) for u in app_users] + [("monitorUser", monitor_user)]:
        if name in owned and name != database.superuser:
            r.fail(key, name, f"{operator} creates and manages the role {name!r} ({owned[name]}) "
                   f"and its password; a stack user of that name would fight it: choose another name (roles {operator} "
                   f"owns: {', '.join(sorted(owned))})")
    all_users = (database.superuser, monitor_user) + app_users
    if len(set(all_users)) != len(all_users):
        r.fail("users", list(app_users), f"user names must be unique and differ from postgresSuperuser ({database.superuser}) and monitorUser ({monitor_user})")
    if pgpool.sr_check_period > 0:
        if not pgpool.sr_check_user:
            r.fail("srCheckUser", "", "srCheckPeriod > 0 needs srCheckUser: one of the configured users, whose password pgpool reads from pool_passwd")
        elif pgpool.sr_check_user not in all_users:
            r.fail("srCheckUser", pgpool.sr_check_user,
                   f"pgpool reads its password from pool_passwd, so use one of {', '.join(all_users)}")
    elif pgpool.sr_check_user:
        r.fail("srCheckUser", pgpool.sr_check_user, "only used when srCheckPeriod > 0; set srCheckPeriod (e.g. 10) or remove srCheckUser")

    production = r.boolean("production", False)
    pod_security_enforce = r.choice("podSecurityEnforce", "baseline", POD_SECURITY_LEVELS)
    allow_load_balancer = r.boolean("allowLoadBalancer", False)
    if pgpool.service_type == "LoadBalancer" and not allow_load_balancer:
        r.fail("pgpoolServiceType", "LoadBalancer", "exposing Pgpool-II outside the cluster needs allowLoadBalancer = true")

    prometheus = PrometheusSettings(
        enabled=r.boolean("prometheus", True),
        operator=r.boolean("prometheusOperator", False),
        image=r.image("prometheusImage", PrometheusSettings.image),
        storage=r.choice("prometheusStorage", "emptyDir", PROMETHEUS_STORAGE),
        storage_size=r.matching("prometheusStorageSize", PrometheusSettings.storage_size, QUANTITY, "use a Kubernetes quantity such as 10Gi"),
        retention=r.matching("prometheusRetention", PrometheusSettings.retention, DURATION, "use a Prometheus duration such as 15d"),
        scrape_interval=r.matching("scrapeInterval", PrometheusSettings.scrape_interval, DURATION, "use a Prometheus duration such as 15s"),
        replication_delay_alert_bytes=r.integer("replicationDelayAlertBytes", PrometheusSettings.replication_delay_alert_bytes, 1),
        replication_lag_alert_seconds=r.integer("replicationLagAlertSeconds", PrometheusSettings.replication_lag_alert_seconds, 1),
        grafana_dashboard=r.boolean("grafanaDashboard", True),
        operator_labels=r.labels("prometheusOperatorLabels"),
        discovery_namespaces=tuple(dict.fromkeys(r.strings("prometheusDiscoveryNamespaces", ()))),
    )
    extra = prometheus.discovery_namespaces
    if ALL_NAMESPACES in extra and len(extra) > 1:
        r.fail("prometheusDiscoveryNamespaces", list(extra), f'"{ALL_NAMESPACES}" already means every namespace; '
               f'use ["{ALL_NAMESPACES}"] alone or list the namespaces')
    for name in extra:
        if name != ALL_NAMESPACES and not DNS_LABEL.fullmatch(name):
            r.fail("prometheusDiscoveryNamespaces", name, f"{dns_fix}, or \"{ALL_NAMESPACES}\" for every namespace")
    if prometheus.operator and extra:
        r.fail("prometheusDiscoveryNamespaces", list(extra), "only the stack's own Prometheus server discovers; with "
               "prometheusOperator the operator's Prometheus chooses its namespaces. Remove it")
    if prometheus.operator_labels and not prometheus.operator:
        r.fail("prometheusOperatorLabels", [f"{k}={v}" for k, v in prometheus.operator_labels],
               "labels for the Prometheus Operator's selectors are only used with prometheusOperator = true; "
               "set it or remove them")
    target = ClusterTarget(
        kubeconfig=r.text("kubeconfig", ""),
        context=r.text("kubeContext", ""),
        render_dir=r.text("renderDir", ClusterTarget.render_dir),
    )
    if r.problems:
        raise SettingsError(r.problems)
    return StackSettings(
        namespace=namespace, stack=stack, production=production, pod_security_enforce=pod_security_enforce,
        allow_load_balancer=allow_load_balancer,
        database=database, pgpool=pgpool, prometheus=prometheus, target=target,
        app_users=app_users, pcp_user=pcp_user, monitor_user=monitor_user,
    )


class _RecordingMapping(dict):
    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.seen.add(key)
        return default


def setting_keys() -> frozenset[str]:
    """Every (non-secret) key load_settings reads."""
    recording = _RecordingMapping()
    load_settings(recording, "dev")
    return frozenset(recording.seen)


def unknown_keys(raw: Mapping[str, Any]) -> list[str]:
    """Problems for config keys that nothing reads: usually a typo, silently ignored otherwise."""
    import difflib

    known = setting_keys() | set(SECRET_KEYS) | {"userPasswords"}
    problems = []
    for key in sorted(set(raw) - known):
        close = difflib.get_close_matches(key, sorted(known), n=1)
        fix = f"did you mean {close[0]}?" if close else "remove it (see the README's configuration reference)"
        problems.append(f"{PROJECT}:{key} = {raw[key]!r}: unknown setting; {fix}")
    return problems


def _check_user_name(r: _Reader, key: str, name: str) -> None:
    if not PG_ROLE.fullmatch(name):
        r.fail(key, name, "use a lower-case PostgreSQL role name: a-z, 0-9 and '_', not starting with a digit")
    elif len(name.encode()) > MAX_NAME_BYTES:
        r.fail(key, name, f"user names are limited to {MAX_NAME_BYTES} bytes by pgpool; shorten it")


def env_prefix(user: str) -> str:
    """Prefix of the <PREFIX>_USERNAME/_PASSWORD variables for a user in env mode."""
    return user.upper()


# --- secrets --------------------------------------------------------------------------


def superuser_password_known(settings: StackSettings) -> bool:
    """Whether the program needs the superuser password itself.

    KubeDB's auth Secret is ours, so its password is always ours. For the other operators
    the operator owns the password: env mode reads it from their Secret at pod start, while
    configmap mode must render its pool_passwd entry and so needs a copy in stack config.
    """
    return settings.database.operator == "kubedb" or settings.pgpool.mode == "configmap"


def required_secrets(settings: StackSettings) -> dict[str, bool]:
    """Secret config keys this stack needs, each mapped to whether it may be generated.

    userPasswords.<user> stands for one entry of the secret object userPasswords.
    """
    keys = {"pcpPassword": True, "monitorPassword": True}
    if settings.pgpool.mode == "configmap":  # in env mode the image makes its own key at each start
        keys["poolKey"] = True
    if superuser_password_known(settings):
        keys["dbPassword"] = settings.database.operator == "kubedb"
    keys.update({f"userPasswords.{u}": True for u in settings.app_users})
    if settings.pgpool.ssl and not settings.pgpool.tls_secret_name:
        keys.update({"tlsCert": True, "tlsKey": True})
    return keys


def load_secrets(settings: StackSettings, secret: Callable[[str], Any]) -> PgpoolSecrets:
    """Read the stack's secrets through `secret(key)` (None when absent) and validate them."""
    problems: list[str] = []
    init = "run `make init` (scripts/init_stack.py) to generate it, or `pulumi config set --secret"

    entrypoint_reads = settings.pgpool.mode == "env"
    scram = settings.pgpool.password_encryption == "scram-sha-256"
    password_limit = MAX_AES_PASSWORD_BYTES if scram else MAX_NAME_BYTES

    def need(key: str, limit: int = password_limit, multiline: bool = False, optional: bool = False,
             login: bool = False) -> str:
        path, _, leaf = key.partition(".")
        value = secret(path)
        if leaf:
            value = value.get(leaf) if isinstance(value, Mapping) else None
        if not value:
            if not optional:
                flag = " --path" if leaf else ""
                fix = (operator_password_fix(settings) if key == "dbPassword" and settings.database.operator != "kubedb"
                       else f"{init}{flag} {key}`")
                problems.append(f"{PROJECT}:{key} is missing: {fix}")
            return ""
        value = str(value)
        if len(value.encode()) > limit:
            why = ("its AES entry would outgrow what pgpool reads of pool_passwd"
                   if limit == MAX_AES_PASSWORD_BYTES else "pgpool reads no more")
            problems.append(f"{PROJECT}:{key} is {len(value.encode())} bytes: at most {limit} work ({why}); set a shorter one")
        if "\x00" in value:
            problems.append(f"{PROJECT}:{key} contains a NUL byte: set one without it")
        if not multiline and ("\n" in value or "\r" in value):
            problems.append(f"{PROJECT}:{key} contains a line break: every file and variable it reaches is "
                            "line-based; set one without it")
        if login and scram and saslprep(value) != value:
            problems.append(f"{PROJECT}:{key} contains characters SCRAM's SASLprep changes (non-ASCII spaces, soft "
                            "hyphens, compatibility forms): clients and PostgreSQL prepare the password, Pgpool-II "
                            "does not, so every login through it fails; set one without them (ASCII never changes)")
        if entrypoint_reads and not multiline and key != "poolKey" and ENTRYPOINT_MANGLES.search(value):
            problems.append(f"{PROJECT}:{key} contains whitespace or one of * ? [, or starts with '-' (value not "
                            "shown): in pgpoolMode env the image's entrypoint passes passwords to pg_enc/pg_md5 "
                            "unquoted and would register a different one; set one without them, or use pgpoolMode "
                            "configmap")
        return value

    db = settings.database
    pool_key = need("poolKey", MAX_POOL_KEY_BYTES) if settings.pgpool.mode == "configmap" else ""
    superuser = Credential(db.superuser, need("dbPassword", login=True) if superuser_password_known(settings) else "")
    if db.operator == "kubedb" and db.monitoring and re.search(r"[\s,]", superuser.password):
        problems.append(f"{PROJECT}:dbPassword contains a space or a comma: KubeDB passes it to postgres_exporter "
                        "in a connection string that these break (and then logs whole); set one without them")
    previous = need("dbPasswordPrevious", optional=True, login=True)
    if previous and db.operator != "kubedb":
        problems.append(f"{PROJECT}:dbPasswordPrevious is set but only used with operator kubedb: {db.operator} "
                        "rotates its own superuser's password; remove it (`pulumi config rm dbPasswordPrevious`)")
    monitor = Credential(settings.monitor_user, need("monitorPassword", login=True))
    apps = tuple(Credential(u, need(f"userPasswords.{u}", login=True)) for u in settings.app_users)
    pcp = Credential(settings.pcp_user, need("pcpPassword", MAX_NAME_BYTES))
    tls_cert = tls_key = ""
    if settings.pgpool.ssl and not settings.pgpool.tls_secret_name:
        tls_cert, tls_key = need("tlsCert", 1 << 20, multiline=True), need("tlsKey", 1 << 20, multiline=True)
        if tls_cert and "-----BEGIN CERTIFICATE-----" not in tls_cert:
            problems.append(f"{PROJECT}:tlsCert is not a PEM certificate: {init} tlsCert` with a PEM file")
        if tls_key and "PRIVATE KEY-----" not in tls_key:
            problems.append(f"{PROJECT}:tlsKey is not a PEM private key: {init} tlsKey` with a PEM file")
    if problems:
        raise SettingsError(problems)
    return PgpoolSecrets(pool_key=pool_key, users=(superuser, monitor) + apps, pcp=pcp, monitor=monitor,
                         tls_cert=tls_cert, tls_key=tls_key, previous_superuser_password=previous)


def operator_password_fix(settings: StackSettings) -> str:
    """How to copy the superuser's password out of an operator's own Secret into dbPassword."""
    db = settings.database
    backends = backends_for(db)
    secret, key = backends.credentials_secret, backends.password_key
    fix = (f"{db.operator} owns this password. Copy it from the Secret {secret}: kubectl -n {settings.namespace} "
           f"get secret {secret} -o jsonpath='{{.data.{key}}}' | base64 -d | pulumi config set --secret "
           f"--stack {settings.stack} dbPassword")
    requirement = SUPERUSER_REQUIREMENT[db.operator]
    return fix + (f" (that Secret exists only once you {requirement})" if requirement else "")
