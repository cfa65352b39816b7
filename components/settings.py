"""Stack settings: every setting declared once, read into frozen dataclasses, checked together.

Each setting is one `setting(...)` on its dataclass field (components/config_schema.py): config key,
default, kind (type, bounds or pattern, the fix for a bad value) and description. Pulumi.yaml's
`config:` block and the README's configuration reference are generated from these declarations
(scripts/config_reference.py; a test fails when either is stale). Rules between settings are the
small functions in RULES at the end, each with its own message. Every problem is collected and
raised together as a SettingsError before any resource is registered; each message names the key,
the offending value and the fix. No Pulumi import: the reader takes plain mappings, so tests and the
stack-initialisation script use it too.

Adding a setting: declare it on the dataclass of what it configures, use it, add a rule if it
depends on another setting, and run scripts/config_reference.py (README, "Adding a setting").
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass
from typing import Any, Callable, Collection, Iterator, Mapping

from components.config_schema import (  # PROJECT and SettingsError: the settings layer's, for its callers
    PROJECT,
    Boolean,
    Choice,
    Image,
    Integer,
    Kind,
    Labels,
    Pattern,
    SettingsError,
    Strings,
    Text,
    declared,
    problem,
    read_fields,
    setting,
)
from components.operators import OPERATORS, Backends, Operator
from components.pgpool_image import PGPOOL_IMAGE
from components.query_cache import CHILD_BYTES, MIB, QueryCache
from policies.pgpool_policies.pgpool_versions import (
    DNS_RETRY,
    PROCESS_MANAGEMENT_MODE,
    RELEASE,
    Version,
    image_version,
    version_problem,
)

MODES = ("configmap", "env")
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
DELETION_POLICIES = ("Delete", "Halt", "WipeOut", "DoNotTerminate")
STREAMING_MODES = ("Asynchronous", "Synchronous")
LOAD_BALANCE_ON_WRITE = ("transaction", "trans_transaction", "always", "dml_adaptive")
PROMETHEUS_STORAGE = ("emptyDir", "pvc")
SHUTDOWN_MODES = ("smart", "fast")
PROCESS_MANAGEMENT_MODES = ("static", "dynamic")
PASSWORD_ENCRYPTION = ("scram-sha-256", "md5")
POD_SECURITY_LEVELS = ("baseline", "restricted")

MAX_NAME_BYTES = 128  # pgpool's limit for user names and passwords in pool_passwd/pcp.conf
MAX_PCP_USER_BYTES = 127  # the pcp client refuses 128
MAX_AES_PASSWORD_BYTES = 79  # a longer password's AES entry outgrows the 128 characters pgpool reads
MAX_POOL_KEY_BYTES = 255  # pgpool and pg_enc ignore byte 256 onward
MIN_PORT = 1024  # pgpool refuses lower ports, and non-root containers cannot bind them
MIN_SHUTDOWN_SECONDS = 5  # what the termination grace period leaves Pgpool-II after the preStop wait
ENTRYPOINT_MANGLES = re.compile(r"[\s*?\[]|^-|_USERNAME=")
"""What the image's entrypoint (env mode) breaks in a password: it reads each one with an unquoted
`echo` and passes it on unquoted (`pg_enc ... -u ${username} ${password}`, `pg_md5
${PGPOOL_PCP_PASSWORD}`), so bash splits it at whitespace and expands glob characters against the
files of /, and a leading '-' is taken for an option by echo or by pg_enc/pg_md5. And it takes every
environment line containing '_USERNAME=' for a user, and evaluates (`eval "echo \\$${prefix}_USERNAME"`) the
line up to its first '_': in a variable whose name has none, such a value runs as a command."""
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
PG_ROLE = re.compile(r"^[a-z_][a-z0-9_]*$")
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")
ALL_NAMESPACES = "*"
DURATION = re.compile(r"^[0-9]+(ms|s|m|h|d|w|y)$")

RESERVED_ROLE_PREFIX = "pg_"
RESERVED_ROLES = frozenset({"public", "none"})
"""Role names PostgreSQL refuses to create or alter (src/backend/commands/user.c: 'role name ... is reserved')."""
CLUSTER_DATABASES = frozenset({"postgres", "template0", "template1"})
"""Databases every PostgreSQL cluster has: an application user of such a name would not own its database."""
ISSUER_KINDS = ("Issuer", "ClusterIssuer")
DATA_KEEPING_POLICIES = ("Halt", "DoNotTerminate")
"""KubeDB deletionPolicies that keep the database's volumes when the Postgres object is deleted."""
DELETION_POLICY = "Delete"
"""KubeDB's own default: the volumes go with the Postgres object."""
PRODUCTION_DELETION_POLICY = "DoNotTerminate"
"""A production stack's default: KubeDB refuses to delete the Postgres object at all."""

DNS_FIX = "use lower-case letters, digits and '-' (a DNS label of at most 63 characters)"
ROLE_FIX = "use a lower-case PostgreSQL role name: a-z, 0-9 and '_', not starting with a digit"
NAME = Pattern(DNS_LABEL, DNS_FIX)
STORAGE_SIZE = Pattern(QUANTITY, "use a Kubernetes quantity such as 10Gi")
PORT = Integer(MIN_PORT, 65535)


@dataclass(frozen=True)
class RoleName(Kind):
    """A PostgreSQL role name pgpool's password files can hold."""

    def read(self, key: str, value: Any, default: Any, fail: Callable[[str, Any, str], None]) -> Any:
        name = super().read(key, value, default, fail)
        if not PG_ROLE.fullmatch(name):
            fail(key, name, ROLE_FIX)
        elif len(name.encode()) > MAX_NAME_BYTES:
            fail(key, name, f"user names are limited to {MAX_NAME_BYTES} bytes by pgpool; shorten it")
        return name


@dataclass(frozen=True)
class DatabaseRole(RoleName):
    """A role the stack creates or logs in as in PostgreSQL: not one of the names PostgreSQL reserves."""

    def read(self, key: str, value: Any, default: Any, fail: Callable[[str, Any, str], None]) -> Any:
        name = super().read(key, value, default, fail)
        if name.startswith(RESERVED_ROLE_PREFIX) or name in RESERVED_ROLES:
            fail(key, name, f"PostgreSQL reserves role names starting with {RESERVED_ROLE_PREFIX!r} and the names "
                 f"{', '.join(sorted(RESERVED_ROLES))}: it refuses to create or alter such a role, so KubeDB's init.sql "
                 "and the password Job would fail on every run; choose another name")
        return name


# --- the settings, by what they configure --------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DatabaseSettings:
    """The PostgreSQL cluster behind Pgpool-II and how to reach it."""

    operator: str = setting(
        "operator", "kubedb", Choice(tuple(OPERATORS)),
        "Who runs PostgreSQL: kubedb (this stack creates it), zalando, crunchy (list postgres in the "
        "PostgresCluster's spec.users), cloudnativepg (set spec.enableSuperuserAccess: true on the Cluster), or "
        "external. zalando and crunchy need ssl = true.")
    cluster_name: str = setting(
        "clusterName", "pg", NAME,
        "Name of the PostgreSQL cluster; Service and Secret names follow from it per operator.")
    version: str = setting("postgresVersion", "16.4", Text(), "KubeDB PostgresVersion name.")
    replicas: int = setting("postgresReplicas", 3, Integer(1, 15),
                            "PostgreSQL pods, one primary and the rest hot standbys.")
    streaming_mode: str = setting("streamingMode", "Asynchronous", Choice(STREAMING_MODES),
                                  "Asynchronous or Synchronous streaming replication.")
    storage_class: str = setting(
        "storageClass", "",
        Pattern(DNS_SUBDOMAIN, "use a StorageClass name, or leave empty for the cluster default", allow_empty=True),
        "StorageClass of the data volumes; empty uses the cluster default.")
    storage_size: str = setting("storageSize", "1Gi", STORAGE_SIZE, "Size of each PostgreSQL data volume.")
    deletion_policy: str = setting(
        "deletionPolicy", None, Choice(DELETION_POLICIES),
        "KubeDB deletionPolicy: Delete, Halt, WipeOut or DoNotTerminate. A production stack keeps its data: "
        "DoNotTerminate or Halt.", derived=f"{PRODUCTION_DELETION_POLICY} with production, else {DELETION_POLICY}")
    monitoring: bool = setting("postgresMonitoring", True, Boolean(),
                               "Run KubeDB's postgres_exporter beside PostgreSQL for Prometheus.")
    port: int = setting("postgresPort", 5432, PORT, "PostgreSQL port of both backend Services.")
    max_connections: int = setting(
        "postgresMaxConnections", 200, Integer(1, 262143),
        "max_connections of each PostgreSQL server (set by this stack with KubeDB); pgpoolReplicas * "
        "numInitChildren * maxPool must fit under it less the reserved ones.")
    superuser_reserved_connections: int = setting(
        "postgresSuperuserReservedConnections", 3, Integer(0, 262143),
        "superuser_reserved_connections of each PostgreSQL server.")
    superuser: str = setting(
        "postgresSuperuser", "postgres", DatabaseRole(),
        "The superuser in the operator's credentials Secret (KubeDB <clusterName>-auth, Zalando "
        "postgres.<clusterName>.credentials..., Crunchy <clusterName>-pguser-postgres, CloudNativePG "
        "<clusterName>-superuser); the password Job logs in as it.")
    client_image: str = setting(
        "postgresClientImage", "postgres:16.4-alpine", Image(),
        "Image with sh and psql, pinned, of the Job that creates the stack's roles and sets their passwords in "
        "PostgreSQL before Pgpool-II rolls.")
    primary_host: str = setting("externalPrimaryHost", "", Text(),
                                "Only for operator external, the read-write host name.")
    replica_host: str = setting("externalReplicaHost", "", Text(),
                                "Only for operator external, the read-only host name.")
    credentials_secret: str = setting("externalCredentialsSecret", "", Text(),
                                      "Only for operator external, a Secret with keys username and password.")
    tls_issuer: str = setting(
        "postgresTlsIssuer", "",
        Pattern(DNS_SUBDOMAIN, "use the name of a cert-manager Issuer (or ClusterIssuer), or leave empty",
                allow_empty=True),
        "Only with KubeDB: a cert-manager Issuer (or ClusterIssuer, postgresTlsIssuerKind) that issues "
        "PostgreSQL's certificates (spec.tls); PostgreSQL then takes TCP clients only over TLS and Pgpool-II "
        "verifies it against the issuer's CA. Needs cert-manager and KubeDB's TLS support; empty leaves the hop "
        "from Pgpool-II to PostgreSQL in clear text.")
    tls_issuer_kind: str = setting("postgresTlsIssuerKind", "Issuer", Choice(ISSUER_KINDS),
                                   "Kind of postgresTlsIssuer: Issuer (in the stack's namespace) or ClusterIssuer.")
    operator_namespace: str = setting(
        "kubedbOperatorNamespace", "kubedb", NAME,
        "Namespace of the KubeDB operator, which the database's NetworkPolicy admits to PostgreSQL's pods.")

    @property
    def standbys(self) -> int:
        return self.replicas - 1

    @property
    def usable_connections(self) -> int:
        """Connections a backend accepts from non-superusers."""
        return self.max_connections - self.superuser_reserved_connections

    @property
    def operator_facts(self) -> Operator:
        """What the operator table says about the operator that runs this database."""
        return OPERATORS[self.operator]

    @property
    def backends(self) -> Backends:
        return dataclasses.replace(self.operator_facts.backends(self), ca_secret=self.ca_secret)

    @property
    def owned_roles(self) -> dict[str, str]:
        return self.operator_facts.roles_owned(self)

    @property
    def ca_secret(self) -> str:
        """The Secret holding the CA of PostgreSQL's certificates (KubeDB's client certificate's), "" without TLS."""
        return f"{self.cluster_name}-client-cert" if self.tls_issuer else ""

    @property
    def exporter_service(self) -> str:
        """The Service of the operator's postgres_exporter sidecars, "" when there are none."""
        template = self.operator_facts.exporter_service
        return template.format(cluster=self.cluster_name) if template and self.monitoring else ""


@dataclass(frozen=True, kw_only=True)
class PgpoolSettings:
    """Pgpool-II: configuration mode, tuning, TLS, who may reach it and how it stops."""

    name: str = setting("pgpoolName", "pgpool", NAME, "Name of the Pgpool-II Deployment and Service.")
    mode: str = setting(
        "pgpoolMode", "configmap", Choice(MODES),
        "configmap: whole pgpool.conf and pool_hba.conf mounted from a ConfigMap, credentials from a Secret; env: "
        "PGPOOL_PARAMS_* variables read by the image.")
    replicas: int = setting("pgpoolReplicas", 2, Integer(1, 100), "Pgpool-II pods.")
    image: str = setting(
        "pgpoolImage", "pgpool/pgpool:4.7.2", Image(),
        "Pgpool-II image, pinned; its tag names the Pgpool-II release the files are rendered for (see the README's "
        "'Pgpool-II releases': no public source shows this tag, pin your own image's digest in production).")
    version: str = setting(
        "pgpoolVersion", "", Pattern(RELEASE, "use a release such as 4.7.2", allow_empty=True),
        "The Pgpool-II release of pgpoolImage when its tag names none (a tag of your own, e.g. :stable@sha256:...); "
        "empty takes it from the tag.")
    process_management_mode: str = setting(
        "pgpoolProcessManagementMode", "static", Choice(PROCESS_MANAGEMENT_MODES),
        "static: numInitChildren children wait for clients; dynamic (Pgpool-II 4.4+): idle children are forked and "
        "retired between 5 and 10 spare, up to numInitChildren.")
    exporter_image: str = setting("exporterImage", "pgpool/pgpool2_exporter:1.2.2", Image(),
                                  "pgpool2_exporter image, pinned.")
    port: int = setting("pgpoolPort", 9999, PORT, "Port clients connect to.")
    pcp_port: int = setting(
        "pcpPort", 9898, PORT,
        "PCP port; PCP answers on the pod's unix socket only, unless pcpOverTcp opens this TCP port.")
    pcp_over_tcp: bool = setting(
        "pcpOverTcp", False, Boolean(),
        "Open PCP (which can detach backends and stop Pgpool-II) on TCP pcpPort for remote tools; needs "
        "networkPolicy and PCP client labels, since the NetworkPolicy then admits only those.")
    pcp_client_namespace_labels: tuple[tuple[str, str], ...] = setting(
        "pcpClientNamespaceLabels", (), Labels(),
        "With pcpOverTcp, namespace labels (key=value) of the PCP clients the NetworkPolicy admits; empty means "
        "the stack's namespace.")
    pcp_client_pod_labels: tuple[tuple[str, str], ...] = setting(
        "pcpClientPodLabels", (), Labels(),
        "With pcpOverTcp, pod labels (key=value) of the PCP clients the NetworkPolicy admits.")
    exporter_port: int = setting("exporterPort", 9719, PORT, "pgpool2_exporter metrics port.")
    num_init_children: int = setting("numInitChildren", 32, Integer(1, 10000),
                                     "Pgpool-II child processes, i.e. concurrent client sessions per pod.")
    max_pool: int = setting("maxPool", 2, Integer(1, 1000), "Cached backend connections per child.")
    child_life_time: int = setting("childLifeTime", 300, Integer(0),
                                   "Seconds an idle child lives before it is replaced (0 never).")
    connection_life_time: int = setting("connectionLifeTime", 600, Integer(0),
                                        "Seconds a cached backend connection lives (0 forever).")
    client_idle_limit: int = setting("clientIdleLimit", 0, Integer(0),
                                     "Seconds an idle client may hold a child (0 forever).")
    reserved_connections: int = setting(
        "reservedConnections", 1, Integer(0),
        "When all children are busy, refuse new clients with an error instead of making them wait. At least 1.")
    statement_level_load_balance: bool = setting(
        "statementLevelLoadBalance", False, Boolean(),
        "Choose the load-balance node per statement instead of per session.")
    disable_load_balance_on_write: str = setting(
        "disableLoadBalanceOnWrite", "transaction", Choice(LOAD_BALANCE_ON_WRITE),
        "After a write, where reads go: transaction, trans_transaction, always or dml_adaptive.")
    backend_weight0: int = setting("backendWeight0", 1, Integer(0, 100000), "Load-balance weight of the primary.")
    backend_weight1: int = setting(
        "backendWeight1", None, Integer(0, 100000),
        "Load-balance weight of the read-only Service. Unset, it is the number of standbys, as the guide says, "
        "so reads spread evenly over all PostgreSQL pods.", derived="postgresReplicas - 1")
    sr_check_period: int = setting("srCheckPeriod", 0, Integer(0, 86400),
                                   "Seconds between streaming-replication checks; 0 turns the check off.")
    sr_check_user: str = setting(
        "srCheckUser", "", Text(),
        "User of the streaming-replication check (one of the configured users; its password comes from "
        "pool_passwd).")
    password_encryption: str = setting(
        "passwordEncryption", "scram-sha-256", Choice(PASSWORD_ENCRYPTION),
        "Client authentication, scram-sha-256 (AES entries in pool_passwd) or md5.")
    ssl: bool = setting("ssl", True, Boolean(), "TLS for clients; pool_hba.conf then accepts only hostssl.")
    tls_secret_name: str = setting(
        "tlsSecretName", "",
        Pattern(DNS_SUBDOMAIN, "use the name of a kubernetes.io/tls Secret, or leave empty to use the generated "
                "certificate", allow_empty=True),
        "A kubernetes.io/tls Secret of yours; empty uses the certificate generated for the stack.")
    service_type: str = setting("pgpoolServiceType", "ClusterIP", Choice(SERVICE_TYPES),
                                "Service type of Pgpool-II (ClusterIP, NodePort, LoadBalancer).")
    network_policy: bool = setting(
        "networkPolicy", True, Boolean(),
        "NetworkPolicies admitting only what must talk: clients to Pgpool-II, Pgpool-II and the password Job to "
        "KubeDB's PostgreSQL, Prometheus to the exporters, the named clients to Prometheus. Required in production.")
    client_namespace_labels: tuple[tuple[str, str], ...] = setting(
        "networkPolicyClientNamespaceLabels", (), Labels(),
        "Namespace labels (key=value) of clients admitted by the NetworkPolicy; empty means the stack's namespace.")
    client_pod_labels: tuple[tuple[str, str], ...] = setting(
        "networkPolicyClientPodLabels", (), Labels(),
        "Pod labels (key=value) of clients admitted by the NetworkPolicy; empty means any pod.")
    cpu_request: str = setting("pgpoolCpuRequest", "250m", Pattern(QUANTITY, "use a CPU quantity such as 250m or 1"),
                               "CPU request of the Pgpool-II container.")
    cpu_limit: str = setting("pgpoolCpuLimit", "1", Pattern(QUANTITY, "use a CPU quantity such as 500m or 2"),
                             "CPU limit of the Pgpool-II container.")
    memory_request: str = setting("pgpoolMemoryRequest", "256Mi",
                                  Pattern(QUANTITY, "use a memory quantity such as 256Mi"),
                                  "Memory request of the Pgpool-II container.")
    memory_limit: str = setting("pgpoolMemoryLimit", "512Mi", Pattern(QUANTITY, "use a memory quantity such as 512Mi"),
                                "Memory limit of the Pgpool-II container.")
    pre_stop_seconds: int = setting(
        "pgpoolPreStopSeconds", 10, Integer(0, 600),
        "Seconds a stopping Pgpool-II pod keeps serving (preStop) while the Services stop sending it new clients, "
        "before Pgpool-II is told to stop.")
    shutdown_mode: str = setting(
        "pgpoolShutdownMode", "smart", Choice(SHUTDOWN_MODES),
        "After the preStop wait: smart (Kubernetes' SIGTERM; Pgpool-II lets open sessions finish, until the grace "
        "period ends) or fast (SIGINT; open sessions are cut at once and their clients reconnect to another pod).")
    termination_grace_seconds: int = setting(
        "pgpoolTerminationGraceSeconds", 60, Integer(1, 86400),
        "Seconds from the start of the preStop wait until Kubernetes kills Pgpool-II; at least "
        "pgpoolPreStopSeconds + 5.")
    run_as_user: int = PGPOOL_IMAGE.uid
    """The image's postgres user (not a setting: the image decides it)."""
    query_cache: QueryCache = QueryCache()
    """Its own group of settings (components/query_cache.py)."""

    @property
    def release(self) -> Version | None:
        """The Pgpool-II release the files are rendered for: pgpoolVersion, else the image's tag (the rules refuse
        a stack where neither names one, or where they differ)."""
        return Version.parse(self.version) or image_version(self.image)


@dataclass(frozen=True, kw_only=True)
class PrometheusSettings:
    enabled: bool = setting("prometheus", True, Boolean(), "Monitor Pgpool-II and PostgreSQL with Prometheus.")
    operator: bool = setting(
        "prometheusOperator", False, Boolean(),
        "The cluster runs the Prometheus Operator; emit ServiceMonitor and PrometheusRule instead of a Prometheus "
        "server.")
    image: str = setting("prometheusImage", "prom/prometheus:v3.5.0", Image(), "Prometheus image, pinned.")
    storage: str = setting("prometheusStorage", "emptyDir", Choice(PROMETHEUS_STORAGE),
                           "Prometheus storage, emptyDir or pvc.")
    storage_size: str = setting("prometheusStorageSize", "2Gi", STORAGE_SIZE, "Size of Prometheus' storage.")
    retention: str = setting("prometheusRetention", "7d", Pattern(DURATION, "use a Prometheus duration such as 15d"),
                             "How long Prometheus keeps samples.")
    scrape_interval: str = setting("scrapeInterval", "15s", Pattern(DURATION, "use a Prometheus duration such as 15s"),
                                   "Prometheus scrape and rule evaluation interval.")
    replication_delay_alert_bytes: int = setting(
        "replicationDelayAlertBytes", 16 * 1024 * 1024, Integer(1),
        "Replication delay (bytes, from the streaming-replication check) above which an alert fires.")
    replication_lag_alert_seconds: int = setting(
        "replicationLagAlertSeconds", 60, Integer(1),
        "PostgreSQL standby replay lag (seconds, from postgres_exporter) above which an alert fires.")
    operator_labels: tuple[tuple[str, str], ...] = setting(
        "prometheusOperatorLabels", (), Labels(),
        "With prometheusOperator, labels (key=value) added to the ServiceMonitor and PrometheusRule objects, "
        "KubeDB's ServiceMonitor included, so the operator's Prometheus selects them, e.g. "
        "release=kube-prometheus-stack.")
    discovery_namespaces: tuple[str, ...] = setting(
        "prometheusDiscoveryNamespaces", (),
        Strings(item=Pattern(re.compile(rf"\{ALL_NAMESPACES}|{DNS_LABEL.pattern}"),
                             f'{DNS_FIX}, or "{ALL_NAMESPACES}" for every namespace'), unique=True),
        "Other namespaces whose annotated Services the stack's Prometheus scrapes (a Role and RoleBinding in "
        'each); ["*"] means every namespace and takes a ClusterRole. Empty keeps discovery, and every grant, in '
        "the stack's namespace.")
    grafana_dashboard: bool = setting(
        "grafanaDashboard", True, Boolean(),
        "A Grafana dashboard ConfigMap labelled grafana_dashboard=1 for Grafana's sidecar.")
    client_namespace_labels: tuple[tuple[str, str], ...] = setting(
        "prometheusClientNamespaceLabels", (), Labels(),
        "With networkPolicy, namespace labels (key=value) of the clients (Grafana) the stack's Prometheus admits; "
        "empty means the stack's namespace when prometheusClientPodLabels is set, else no client.")
    client_pod_labels: tuple[tuple[str, str], ...] = setting(
        "prometheusClientPodLabels", (), Labels(),
        "With networkPolicy, pod labels (key=value) of the clients the stack's Prometheus admits.")

    @property
    def cluster_wide(self) -> bool:
        """Discovery in every namespace, which only a ClusterRole can grant."""
        return self.discovery_namespaces == (ALL_NAMESPACES,)


@dataclass(frozen=True, kw_only=True)
class ClusterTarget:
    """Where the manifests go: rendered to a directory, or applied to a cluster."""

    kubeconfig: str = setting(
        "kubeconfig", "", Text(),
        "Kubeconfig (path or contents) of the cluster to apply to. Empty with kubeContext empty renders manifests "
        "instead.")
    context: str = setting("kubeContext", "", Text(),
                           "Kubeconfig context to apply to. Empty with kubeconfig empty renders manifests instead.")
    render_dir: str = setting(
        "renderDir", ".state/manifests", Text(),
        "Directory (relative to the project) that receives the rendered manifests, one subdirectory per stack, "
        "when no cluster is configured.")

    @property
    def renders(self) -> bool:
        return not (self.kubeconfig or self.context)


@dataclass(frozen=True, kw_only=True)
class StackSettings:
    stack: str
    database: DatabaseSettings
    pgpool: PgpoolSettings
    prometheus: PrometheusSettings
    target: ClusterTarget
    namespace: str = setting("namespace", "pgpool", NAME,
                             "Namespace of every object of the stack (created by the stack).")
    production: bool = setting(
        "production", False, Boolean(),
        "Production stack: labels objects environment=production, which the policy pack holds to stricter rules "
        "(TLS, NetworkPolicies); needs networkPolicy and a deletionPolicy that keeps data (DoNotTerminate unless "
        "set); the namespace and the KubeDB database are protected from deletion (protect, retainOnDelete).")
    pod_security_enforce: str = setting(
        "podSecurityEnforce", "baseline", Choice(POD_SECURITY_LEVELS),
        "Pod Security level the namespace enforces: baseline (KubeDB's PostgreSQL pods run in it), or restricted "
        "when PostgreSQL runs elsewhere. Pgpool-II and Prometheus pass restricted either way; the namespace always "
        "warns and audits at restricted.")
    allow_load_balancer: bool = setting("allowLoadBalancer", False, Boolean(),
                                        "Allow pgpoolServiceType LoadBalancer.")
    allow_node_port: bool = setting(
        "allowNodePort", False, Boolean(),
        "Allow pgpoolServiceType NodePort, which opens Pgpool-II on every node's address.")
    app_users: tuple[str, ...] = setting(
        "users", ("app",), Strings(item=DatabaseRole()),
        "Application users; each gets a pool_passwd entry, a Secret, and (with KubeDB) a role and a database.")
    pcp_user: str = setting("pcpUser", "pcp", RoleName(), "PCP user (pcp.conf).")
    monitor_user: str = setting("monitorUser", "monitor", DatabaseRole(),
                                "User the exporter and the readiness probe log in as (pg_monitor with KubeDB).")


SECTIONS = (("the stack", StackSettings), ("where the manifests go", ClusterTarget),
            ("database", DatabaseSettings), ("Pgpool-II", PgpoolSettings), ("query cache", QueryCache),
            ("monitoring", PrometheusSettings))
"""Every settings dataclass, in the order of Pulumi.yaml and the README's reference."""


# --- reading --------------------------------------------------------------------------------------


def load_settings(raw: Mapping[str, Any], stack: str) -> StackSettings:
    """Build StackSettings from raw stack config (keys without the project prefix)."""
    problems: list[str] = []

    def fail(key: str, value: Any, fix: str) -> None:
        problems.append(problem(key, value, fix))

    stack_fields = read_fields(StackSettings, raw, fail)
    deletion_policy = PRODUCTION_DELETION_POLICY if stack_fields["production"] else DELETION_POLICY
    database = DatabaseSettings(**read_fields(DatabaseSettings, raw, fail, derived={"deletionPolicy": deletion_policy}))
    settings = StackSettings(
        stack=stack,
        database=database,
        pgpool=PgpoolSettings(**read_fields(PgpoolSettings, raw, fail,
                                            derived={"backendWeight1": max(database.standbys, 0)}),
                              query_cache=QueryCache(**read_fields(QueryCache, raw, fail))),
        prometheus=PrometheusSettings(**read_fields(PrometheusSettings, raw, fail)),
        target=cluster_target(raw),
        **stack_fields,
    )
    for rule in RULES:
        for key, value, fix in rule(settings):
            fail(key, value, fix)
    if problems:
        raise SettingsError(problems)
    return settings


def cluster_target(raw: Mapping[str, Any]) -> ClusterTarget:
    """Where a stack's manifests go, from its raw config (for the engine driver too)."""
    return ClusterTarget(**read_fields(ClusterTarget, raw, lambda *_: None))


def setting_keys() -> frozenset[str]:
    """Every (non-secret) key a stack may set."""
    return frozenset(declaration.key for _, cls in SECTIONS for _, declaration in declared(cls))


SECRET_KEYS = ("dbPassword", "dbPasswordPrevious", "poolKey", "pcpPassword", "monitorPassword", "tlsCert", "tlsKey",
               "userPasswords")
"""Secret config keys (components/stack_secrets.py reads them); userPasswords is an object user -> password."""


SECRET_LOOKING = re.compile(r"pass|secret|token|key|cert|pem", re.IGNORECASE)
"""Key names whose values may be secrets, whatever the key is."""


def unknown_keys(raw: Mapping[str, Any], secret_keys: Collection[str] = ()) -> list[str]:
    """Problems for config keys that nothing reads: usually a typo, silently ignored otherwise.

    The value is shown only for a plain entry that neither looks like nor resembles a secret: a
    mistyped secret key (dbpassword, tlskey) holds a password or a private key, encrypted or not."""
    known = setting_keys() | set(SECRET_KEYS)
    problems = []
    for key in sorted(set(raw) - known):
        close = difflib.get_close_matches(key, sorted(known), n=1)
        fix = f"did you mean {close[0]}?" if close else "remove it (see the README's configuration reference)"
        if key in secret_keys or SECRET_LOOKING.search(key) or (close and close[0] in SECRET_KEYS):
            problems.append(f"{PROJECT}:{key} (value not shown): unknown setting; {fix}")
        else:
            problems.append(problem(key, raw[key], f"unknown setting; {fix}"))
    return problems


def env_prefix(user: str) -> str:
    """Prefix of the <PREFIX>_USERNAME/_PASSWORD variables for a user in env mode."""
    return user.upper()


# --- rules between settings: each yields (key, value, fix) for what it finds wrong -----------------

Problems = Iterator[tuple[str, Any, str]]


def cluster_name_fits(s: StackSettings) -> Problems:
    if len(s.database.cluster_name) > 52:
        yield "clusterName", s.database.cluster_name, "use at most 52 characters so '<name>-standby' and pod names stay valid"


def standby_behind_read_only_service(s: StackSettings) -> Problems:
    if s.database.replicas < 2:
        yield ("postgresReplicas", s.database.replicas, "Pgpool-II's node 1 is the read-only Service, which needs a "
               "standby behind it or every session fails; use 2 or more (default 3: a primary and two hot standbys)")


def reserved_below_max_connections(s: StackSettings) -> Problems:
    db = s.database
    if db.superuser_reserved_connections >= db.max_connections:
        yield ("postgresSuperuserReservedConnections", db.superuser_reserved_connections,
               f"must be below postgresMaxConnections ({db.max_connections})")


def external_hosts_named(s: StackSettings) -> Problems:
    """Operator external needs its hosts and Secret named; any other operator names its own."""
    db = s.database
    named = (("externalPrimaryHost", db.primary_host), ("externalReplicaHost", db.replica_host))
    if not db.operator_facts.hosts_from_settings:
        for key, value in (*named, ("externalCredentialsSecret", db.credentials_secret)):
            if value:
                yield key, value, f"only used with operator external (operator is {db.operator}); remove it"
        return
    for key, value in named:
        if not DNS_SUBDOMAIN.fullmatch(value):
            yield key, value, ("operator external needs the host name of the read-write and the read-only Service, "
                               "e.g. pg-rw.db.svc")
    if not DNS_SUBDOMAIN.fullmatch(db.credentials_secret):
        yield ("externalCredentialsSecret", db.credentials_secret,
               "operator external needs the name of a Secret with keys username and password")


def pgpool_name_fits(s: StackSettings) -> Problems:
    if len(s.pgpool.name) > 50:
        yield "pgpoolName", s.pgpool.name, "use at most 50 characters so '<name>-metrics' stays a valid Service name"


def ports_differ(s: StackSettings) -> Problems:
    p = s.pgpool
    if len({p.port, p.pcp_port, p.exporter_port}) < 3:
        yield ("pgpoolPort", p.port,
               f"pgpoolPort, pcpPort ({p.pcp_port}) and exporterPort ({p.exporter_port}) must differ")


def a_backend_takes_reads(s: StackSettings) -> Problems:
    if s.pgpool.backend_weight0 + s.pgpool.backend_weight1 == 0:
        yield "backendWeight0", 0, "at least one backend needs a weight above 0 or no query can be load-balanced"


def pool_fits_backends(s: StackSettings) -> Problems:
    """Every pod opens up to numInitChildren * maxPool connections to each backend."""
    p, db = s.pgpool, s.database
    wanted = p.replicas * p.num_init_children * p.max_pool
    if wanted > db.usable_connections:
        yield ("numInitChildren", p.num_init_children,
               f"pgpoolReplicas * numInitChildren * maxPool = {p.replicas} * {p.num_init_children} * "
               f"{p.max_pool} = {wanted} exceeds what each backend accepts (postgresMaxConnections "
               f"{db.max_connections} - postgresSuperuserReservedConnections "
               f"{db.superuser_reserved_connections} = {db.usable_connections}); lower numInitChildren, "
               "maxPool or pgpoolReplicas, or raise postgresMaxConnections")


def excess_clients_get_an_error(s: StackSettings) -> Problems:
    p = s.pgpool
    if p.reserved_connections < 1:
        yield ("reservedConnections", p.reserved_connections,
               "use at least 1 so clients beyond numInitChildren get an error instead of hanging")
    elif p.reserved_connections >= p.num_init_children:
        yield "reservedConnections", p.reserved_connections, f"must be below numInitChildren ({p.num_init_children})"


def tls_settings_agree(s: StackSettings) -> Problems:
    p, operator = s.pgpool, s.database.operator
    if p.tls_secret_name and not p.ssl:
        yield ("tlsSecretName", p.tls_secret_name,
               "a certificate is only used with ssl = true; set ssl to true or remove tlsSecretName")
    needs_tls = s.database.operator_facts.needs_tls
    if needs_tls and not p.ssl:
        yield ("ssl", False, f"operator {operator} needs TLS to its PostgreSQL ({needs_tls}) and "
               "Pgpool-II connects to its backends with TLS only when ssl is on; set ssl to true")


def client_labels_need_network_policy(s: StackSettings) -> Problems:
    p = s.pgpool
    if (p.client_namespace_labels or p.client_pod_labels) and not p.network_policy:
        yield "networkPolicy", False, "client label selectors are set but networkPolicy is false; set networkPolicy to true"


def pcp_over_tcp_names_its_clients(s: StackSettings) -> Problems:
    p = s.pgpool
    peers = p.pcp_client_namespace_labels or p.pcp_client_pod_labels
    if p.pcp_over_tcp and not (p.network_policy and peers):
        yield ("pcpOverTcp", True, f"PCP on TCP lets whoever reaches port {p.pcp_port} detach backends or stop "
               "Pgpool-II; set networkPolicy to true and name the PCP clients in pcpClientPodLabels and/or "
               "pcpClientNamespaceLabels, or leave pcpOverTcp false (PCP stays on the pod's unix socket)")
    elif peers and not p.pcp_over_tcp:
        yield ("pcpClientPodLabels" if p.pcp_client_pod_labels else "pcpClientNamespaceLabels",
               [f"{k}={v}" for k, v in peers], "PCP client labels are only used with pcpOverTcp = true; set it or "
               "remove them")


def grace_covers_pre_stop(s: StackSettings) -> Problems:
    p = s.pgpool
    if p.termination_grace_seconds < p.pre_stop_seconds + MIN_SHUTDOWN_SECONDS:
        yield ("pgpoolTerminationGraceSeconds", p.termination_grace_seconds,
               f"the grace period includes the preStop wait (pgpoolPreStopSeconds {p.pre_stop_seconds}); use at "
               f"least {p.pre_stop_seconds + MIN_SHUTDOWN_SECONDS} so Pgpool-II gets {MIN_SHUTDOWN_SECONDS}s "
               "to stop before it is killed")


def an_application_user(s: StackSettings) -> Problems:
    if not s.app_users:
        yield "users", [], "list at least one application user: applications must not log in as the superuser"


def pcp_user_fits_the_pcp_client(s: StackSettings) -> Problems:
    if len(s.pcp_user.encode()) > MAX_PCP_USER_BYTES:
        yield "pcpUser", s.pcp_user, f"the pcp client accepts at most {MAX_PCP_USER_BYTES} bytes; shorten it"


def env_mode_user_prefixes(s: StackSettings) -> Problems:
    if s.pgpool.mode != "env":
        return
    for name in s.app_users + (s.monitor_user, s.database.superuser):
        prefix = env_prefix(name)
        if "_" in prefix:
            yield ("users" if name in s.app_users else "monitorUser", name,
                   f"in pgpoolMode env the image cuts the variable prefix at the first underscore, so user {name!r} "
                   f"(prefix {prefix}_USERNAME) breaks it; rename the user without '_' or use pgpoolMode configmap")


def users_not_owned_by_the_operator(s: StackSettings) -> Problems:
    db, owned = s.database, s.database.owned_roles
    for key, name in [("users", u) for u in s.app_users] + [("monitorUser", s.monitor_user)]:
        if name in owned and name != db.superuser:
            yield (key, name, f"{db.operator} creates and manages the role {name!r} ({owned[name]}) and its "
                   f"password; a stack user of that name would fight it: choose another name (roles {db.operator} "
                   f"owns: {', '.join(sorted(owned))})")


def users_unique(s: StackSettings) -> Problems:
    every = (s.database.superuser, s.monitor_user) + s.app_users
    if len(set(every)) != len(every):
        yield ("users", list(s.app_users), f"user names must be unique and differ from postgresSuperuser "
               f"({s.database.superuser}) and monitorUser ({s.monitor_user})")


def sr_check_user_in_pool_passwd(s: StackSettings) -> Problems:
    p, every = s.pgpool, (s.database.superuser, s.monitor_user) + s.app_users
    if p.sr_check_period > 0 and not p.sr_check_user:
        yield ("srCheckUser", "", "srCheckPeriod > 0 needs srCheckUser: one of the configured users, whose password "
               "pgpool reads from pool_passwd")
    elif p.sr_check_period > 0 and p.sr_check_user not in every:
        yield ("srCheckUser", p.sr_check_user,
               f"pgpool reads its password from pool_passwd, so use one of {', '.join(every)}")
    elif p.sr_check_period == 0 and p.sr_check_user:
        yield ("srCheckUser", p.sr_check_user,
               "only used when srCheckPeriod > 0; set srCheckPeriod (e.g. 10) or remove srCheckUser")


def a_release_without_known_vulnerabilities(s: StackSettings) -> Problems:
    p = s.pgpool
    tagged = image_version(p.image)
    if p.release is None:
        yield ("pgpoolImage", p.image, "its tag names no Pgpool-II release, which decides what pgpool.conf may say and "
               "whether known vulnerabilities apply: use a tag that names it (e.g. :4.7.2) or set pgpoolVersion")
    elif p.version and tagged and tagged != p.release:
        yield ("pgpoolVersion", p.version, f"pgpoolImage's tag says {tagged}; remove pgpoolVersion or make them agree")
    elif problem_text := version_problem(p.release):
        yield ("pgpoolVersion" if p.version else "pgpoolImage", p.version or p.image,
               problem_text + " (README, 'Pgpool-II releases')")


def dynamic_process_management_from_4_4(s: StackSettings) -> Problems:
    p = s.pgpool
    if p.process_management_mode == "dynamic" and p.release and p.release < PROCESS_MANAGEMENT_MODE:
        yield ("pgpoolProcessManagementMode", "dynamic", f"Pgpool-II {p.release} has only static children; "
               f"dynamic needs {PROCESS_MANAGEMENT_MODE} or later")


def production_pins_digests(s: StackSettings) -> Problems:
    if not s.production:
        return
    for key, image in (("pgpoolImage", s.pgpool.image), ("exporterImage", s.pgpool.exporter_image),
                       ("postgresClientImage", s.database.client_image), ("prometheusImage", s.prometheus.image)):
        if "@sha256:" not in image and (key != "prometheusImage" or (s.prometheus.enabled and not s.prometheus.operator)):
            yield (key, image, "a production stack pins every image by digest (a registry may move a tag to other "
                   "content): append the digest you verified, e.g. image:tag@sha256:<digest>")


def memory_limit_fits_the_children(s: StackSettings) -> Problems:
    p = s.pgpool
    needed = pgpool_memory_mib(p)
    if mebibytes(p.memory_limit) < needed:
        yield ("pgpoolMemoryLimit", p.memory_limit, f"{memory_use(p)}, and a container over its limit is OOM-killed: "
               f"raise it to at least {needed:.0f}Mi or lower "
               + ("numInitChildren, queryCacheTotalSize or queryCacheMaxEntries" if p.query_cache.enabled
                  else "numInitChildren"))


def exposure_allowed(s: StackSettings) -> Problems:
    if s.pgpool.service_type == "LoadBalancer" and not s.allow_load_balancer:
        yield "pgpoolServiceType", "LoadBalancer", "exposing Pgpool-II outside the cluster needs allowLoadBalancer = true"
    if s.pgpool.service_type == "NodePort" and not s.allow_node_port:
        yield ("pgpoolServiceType", "NodePort", "a NodePort opens Pgpool-II on every node's address, to whoever "
               "reaches a node: use ClusterIP, or set allowNodePort = true if that is intended")


def app_users_own_their_databases(s: StackSettings) -> Problems:
    for name in s.app_users:
        if name in CLUSTER_DATABASES:
            yield ("users", name, f"every PostgreSQL cluster already has a database {name!r}, which the user would "
                   "not own; choose another name")


def production_keeps_data_and_isolates(s: StackSettings) -> Problems:
    if not s.production:
        return
    if s.database.operator_facts.created_by_stack and s.database.deletion_policy not in DATA_KEEPING_POLICIES:
        yield ("deletionPolicy", s.database.deletion_policy,
               f"a production database must keep its data when its object is deleted: use "
               f"{' or '.join(DATA_KEEPING_POLICIES)}, or leave it unset ({PRODUCTION_DELETION_POLICY} in production)")
    if not s.pgpool.network_policy:
        yield ("networkPolicy", False, "a production stack admits only what must talk to PostgreSQL, Pgpool-II and "
               "Prometheus: set networkPolicy to true")


def backend_tls_agrees(s: StackSettings) -> Problems:
    db = s.database
    if db.tls_issuer and not db.operator_facts.created_by_stack:
        yield ("postgresTlsIssuer", db.tls_issuer, f"only used with operator kubedb (this stack creates the database); "
               f"{db.operator} configures its own TLS: remove it")
    elif db.tls_issuer and not s.pgpool.ssl:
        yield ("postgresTlsIssuer", db.tls_issuer, "PostgreSQL then takes clients only over TLS, and Pgpool-II "
               "connects to its backends with TLS only when ssl is on: set ssl to true")


def prometheus_clients_need_network_policy(s: StackSettings) -> Problems:
    pr = s.prometheus
    if (pr.client_namespace_labels or pr.client_pod_labels) and (not s.pgpool.network_policy or pr.operator):
        yield ("prometheusClientPodLabels" if pr.client_pod_labels else "prometheusClientNamespaceLabels",
               [f"{k}={v}" for k, v in pr.client_namespace_labels + pr.client_pod_labels],
               "only used by the NetworkPolicy of the stack's own Prometheus server (networkPolicy true, "
               "prometheusOperator false): set those or remove them")


def discovery_namespaces_agree(s: StackSettings) -> Problems:
    extra = s.prometheus.discovery_namespaces
    if ALL_NAMESPACES in extra and len(extra) > 1:
        yield ("prometheusDiscoveryNamespaces", list(extra), f'"{ALL_NAMESPACES}" already means every namespace; '
               f'use ["{ALL_NAMESPACES}"] alone or list the namespaces')
    if s.prometheus.operator and extra:
        yield ("prometheusDiscoveryNamespaces", list(extra), "only the stack's own Prometheus server discovers; with "
               "prometheusOperator the operator's Prometheus chooses its namespaces. Remove it")


def operator_labels_need_the_operator(s: StackSettings) -> Problems:
    if s.prometheus.operator_labels and not s.prometheus.operator:
        yield ("prometheusOperatorLabels", [f"{k}={v}" for k, v in s.prometheus.operator_labels],
               "labels for the Prometheus Operator's selectors are only used with prometheusOperator = true; "
               "set it or remove them")


def query_cache_in_shared_memory(s: StackSettings) -> Problems:
    if s.pgpool.query_cache.mode == "memcached":
        yield ("queryCache", "memcached", "the pgpool/pgpool image builds Pgpool-II without memcached "
               "(Dockerfile.pgpool configures --with-openssl only), and then every query fails with 'memcached "
               "support is not enabled'; even built with it, one memcached for all pods does not invalidate across "
               "them (each pod removes only what it cached itself). Use shmem (each pod's shared memory) or off")


def query_cache_staleness_bounded(s: StackSettings) -> Problems:
    """Each pod invalidates only for writes through itself; memqcache_expire is the only other bound."""
    p = s.pgpool
    if not p.query_cache.enabled or p.query_cache.max_stale_seconds:
        return
    across = (f"with pgpoolReplicas {p.replicas}, a read through one pod returns what it cached before a write "
              "through another, until it expires; " if p.replicas > 1 else "")
    yield ("queryCacheMaxStaleSeconds", 0, f"the query cache removes a result only when its table is written "
           f"through the same pod: {across}and a read balanced to a standby that has not yet replayed a write is "
           "cached as it was read. Set the longest a read may be stale, e.g. `pulumi config set "
           "queryCacheMaxStaleSeconds 5`, or turn queryCache off")


def query_cache_settings_need_the_cache(s: StackSettings) -> Problems:
    cache = s.pgpool.query_cache
    if cache.mode != "off":
        return
    for name, declaration in declared(QueryCache):
        value = getattr(cache, name)
        if name != "mode" and value != declaration.default:
            yield (declaration.key, declaration.kind.config_default(value) if isinstance(value, int) else list(value),
                   "only used with queryCache shmem; set queryCache or remove it")


RULES: tuple[Callable[[StackSettings], Problems], ...] = (
    cluster_name_fits, standby_behind_read_only_service, reserved_below_max_connections, external_hosts_named,
    pgpool_name_fits, ports_differ, a_backend_takes_reads, pool_fits_backends, excess_clients_get_an_error,
    tls_settings_agree, client_labels_need_network_policy, pcp_over_tcp_names_its_clients, grace_covers_pre_stop,
    an_application_user, pcp_user_fits_the_pcp_client, env_mode_user_prefixes, users_not_owned_by_the_operator,
    users_unique, sr_check_user_in_pool_passwd, a_release_without_known_vulnerabilities,
    dynamic_process_management_from_4_4, production_pins_digests, memory_limit_fits_the_children,
    exposure_allowed, discovery_namespaces_agree, operator_labels_need_the_operator, app_users_own_their_databases,
    production_keeps_data_and_isolates, backend_tls_agrees, prometheus_clients_need_network_policy,
    query_cache_in_shared_memory, query_cache_staleness_bounded, query_cache_settings_need_the_cache,
)
"""Every rule load_settings applies, in the order their problems are listed."""


# --- warnings: settings that work, with a cost the user should know ------------------------------------------

MEMORY_BASE_MIB = 15
MEMORY_PER_CHILD_MIB = 3
"""Pgpool-II's memory (proportional set size of all its processes) after every child served sessions of two
users, as tests/dataplane/test_memory.py measures it on 4.3.5, 4.6.1 and 4.7.2 with the query cache off: 28-36Mi
with 8 children, 80-91Mi with 32, 150-164Mi with 64 (four runs). Less the shared relation cache's 5Mi store
(counted apart, by pgpool_memory_mib), a straight line through them: 6-13Mi shared by all, 2.2-2.3Mi per child;
rounded up."""
QUANTITY_UNITS = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def mebibytes(quantity: str) -> float:
    """A Kubernetes memory quantity (QUANTITY) in MiB; "512Mi" -> 512."""
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", quantity).groups()
    return float(number) * (QUANTITY_UNITS[unit] if unit != "m" else 1e-3) / MIB


def pgpool_memory_mib(p: PgpoolSettings) -> float:
    """What a Pgpool-II pod takes once every child has served clients: its processes, and the query cache's
    store in shared memory (the shared relation cache's alone with the cache off) with, when the cache is on,
    what each child keeps of cached results. The store is resident from the start."""
    children = p.num_init_children
    return MEMORY_BASE_MIB + MEMORY_PER_CHILD_MIB * children + p.query_cache.pod_memory_bytes(children) / MIB


def memory_use(p: PgpoolSettings) -> str:
    """pgpool_memory_mib and its terms, for a message."""
    cache = p.query_cache
    store = f"{cache.shared_memory_bytes / MIB:.0f}Mi"
    parts = (f"the query cache: its store {store} and {CHILD_BYTES // MIB}Mi per child serving cached reads"
             if cache.enabled else f"{store} of shared relation cache")
    return (f"Pgpool-II with numInitChildren {p.num_init_children} uses up to about {pgpool_memory_mib(p):.0f}Mi once "
            f"its children have served clients ({MEMORY_BASE_MIB}Mi + {MEMORY_PER_CHILD_MIB}Mi per child + {parts}, "
            "measured)")


def settings_warnings(s: StackSettings) -> list[str]:
    """What the stack runs with that works but costs: printed by the program (pulumi's warnings) and make init."""
    p, found = s.pgpool, []
    if s.production and p.release and p.release < DNS_RETRY:
        found.append(f"pgpoolImage {p.image}: Pgpool-II {p.release} gives up on a backend at the first failed DNS "
                     f"lookup of its Service name (as while CoreDNS restarts), failing its clients of that moment; "
                     f"{DNS_RETRY} retries for 5 seconds: use {DNS_RETRY} or later in production")
    needed = pgpool_memory_mib(p)
    if mebibytes(p.memory_request) < needed:
        found.append(f"pgpoolMemoryRequest {p.memory_request}: {memory_use(p)}, more than it requests, so it is "
                     f"among the first pods evicted when its node runs short of memory: request at least {needed:.0f}Mi")
    return found
