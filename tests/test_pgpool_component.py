"""The Pgpool component under Pulumi mocks: files, credentials, the Deployment, Services, policies.

Every test runs the whole program (tests/conftest.py's `stack_run`) and asserts on the
properties of what it registers, as the Kubernetes API would receive them.
"""

from __future__ import annotations

import copy
import json
import posixpath
import re

import pytest

from policies.pgpool_policies import evaluate
from tests.recorded_run import plain_strings, secret_values
from tests.program_run import is_secret, unwrap

SECRET_FILES = {"pool_passwd", ".pgpoolkey", "pcp.conf", "pcppass", "pgpass"}


# --- helpers --------------------------------------------------------------------------------


def deployment(run):
    return run.find("apps/v1:Deployment", "pgpool").props


def pod_spec(run):
    return deployment(run)["spec"]["template"]["spec"]


def container(run, name):
    spec = pod_spec(run)
    [found] = [c for c in spec["containers"] + spec.get("initContainers", []) if c["name"] == name]
    return found


def env_of(run, name="pgpool"):
    return {e["name"]: e for e in container(run, name).get("env", [])}


def volume(run, name):
    [found] = [v for v in pod_spec(run)["volumes"] if v["name"] == name]
    return found


def mount_dir(run, container_name, volume_name):
    [found] = [m["mountPath"] for m in container(run, container_name)["volumeMounts"] if m["name"] == volume_name]
    return found


def config_files(run):
    return run.find("core/v1:ConfigMap", "pgpool-config").props["data"]


def secret_files(run, name="pgpool-files"):
    return run.find("core/v1:Secret", name).props["stringData"]


def pgpool_conf(run) -> dict[str, str]:
    """pgpool.conf parameters, quotes removed."""
    params = {}
    for line in config_files(run)["pgpool.conf"].splitlines():
        match = re.fullmatch(r"(\w+) = (.*)", line)
        if match:
            params[match[1]] = match[2].strip("'")
    return params


def hba_rows(run) -> list[list[str]]:
    return [line.split() for line in config_files(run)["pool_hba.conf"].splitlines()
            if line.strip() and not line.startswith("#")]


def checksum(run) -> str:
    return deployment(run)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]


def users_in(text: str) -> set[str]:
    return {line.split(":", 1)[0] for line in text.splitlines()}


def object_name(run, type_suffix, resource_name) -> str:
    """The name an object has in Kubernetes (auto-named ones: resource name and a suffix)."""
    return run.find(type_suffix, resource_name).props["metadata"]["name"]


def depends_on(run, dependent, dependency) -> bool:
    """Whether the engine must wait for `dependency` (type suffix, name) before registering `dependent`."""
    urn = run.registration(run.find(*dependency)).urn
    return urn in run.registration(run.find(*dependent)).dependencies


# --- configmap mode -------------------------------------------------------------------------


def test_configmap_mode_splits_config_from_secrets(dev_run):
    assert set(config_files(dev_run)) == {"pgpool.conf", "pool_hba.conf"}
    files = dev_run.find("core/v1:Secret", "pgpool-files")
    assert set(files.props["stringData"]) == SECRET_FILES
    assert list(plain_strings(files.inputs["stringData"])) == []  # every value secret-marked
    assert files.props["stringData"][".pgpoolkey"] == dev_run.secrets["poolKey"] + "\n"
    assert users_in(files.props["stringData"]["pool_passwd"]) == {"postgres", "monitor", "app"}
    assert users_in(files.props["stringData"]["pcp.conf"]) == {"pcp"}


def test_pgpool_starts_on_the_mounted_files(dev_run):
    command = container(dev_run, "pgpool")["command"]
    flags = dict(zip(command, command[1:]))
    config_dir = mount_dir(dev_run, "pgpool", "config")
    secrets_dir = mount_dir(dev_run, "pgpool", "prepared-secrets")
    assert flags["-f"] == posixpath.join(config_dir, "pgpool.conf")
    assert flags["-a"] == posixpath.join(config_dir, "pool_hba.conf")
    assert flags["-F"] == posixpath.join(secrets_dir, "pcp.conf")
    assert flags["-k"] == posixpath.join(secrets_dir, ".pgpoolkey")
    assert pgpool_conf(dev_run)["pool_passwd"] == posixpath.join(secrets_dir, "pool_passwd")
    assert "-n" in command  # foreground, so the container lives as long as pgpool


def test_secret_files_reach_pgpool_with_mode_0600(dev_run):
    assert volume(dev_run, "secret-files")["secret"] == {
        "secretName": object_name(dev_run, "core/v1:Secret", "pgpool-files"), "defaultMode": 0o600}
    assert volume(dev_run, "tls")["secret"] == {
        "secretName": object_name(dev_run, "core/v1:Secret", "pgpool-tls"), "defaultMode": 0o600}
    # Kubernetes gives Secret files to the fsGroup with group read: the init container copies them
    # (tests/test_pgpool_pod.py runs its script) into a memory emptyDir the pgpool container only reads.
    assert volume(dev_run, "prepared-secrets")["emptyDir"]["medium"] == "Memory"
    init = container(dev_run, "prepare-secrets")
    directories = init["command"][4:]
    assert {mount_dir(dev_run, "prepare-secrets", v) for v in ("secret-files", "tls", "prepared-secrets")} == set(
        directories)
    assert mount_dir(dev_run, "prepare-secrets", "prepared-secrets") == mount_dir(dev_run, "pgpool", "prepared-secrets")
    pgpool_mount = [m for m in container(dev_run, "pgpool")["volumeMounts"] if m["name"] == "prepared-secrets"]
    assert pgpool_mount[0]["readOnly"] is True
    assert not [m for m in container(dev_run, "pgpool")["volumeMounts"] if m["name"] in ("secret-files", "tls")]


@pytest.mark.parametrize("mode", ["configmap", "env"])
def test_config_maps_are_auto_named_secrets_keep_their_names_and_the_pods_read_both_by_output(stack_run, mode):
    run = stack_run(pgpoolMode=mode, users='["app", "reporting"]')
    secrets = ["pgpool-files", "pgpool-tls", "pgpool-user-monitor"]
    if mode == "env":  # the entrypoint reads every user's password (in configmap mode pool_passwd has them)
        secrets += ["pgpool-pcp", "pgpool-user-app", "pgpool-user-reporting"]
    referenced = {v.get("configMap", {}).get("name") or v.get("secret", {}).get("secretName")
                  for v in pod_spec(run)["volumes"]}
    referenced |= {e["valueFrom"]["secretKeyRef"]["name"] for c in pod_spec(run)["containers"]
                   for e in c.get("env", []) if "valueFrom" in e}
    # A ConfigMap cannot change: a new config is a new, auto-named ConfigMap, created before the old goes.
    assert run.find("core/v1:ConfigMap", "pgpool-config").auto_named
    config_map = object_name(run, "core/v1:ConfigMap", "pgpool-config")
    assert config_map.startswith("pgpool-config-") and config_map in referenced
    # Secrets change in place under their names (the applications' ones are stack outputs).
    for user in ("app", "reporting"):
        assert object_name(run, "core/v1:Secret", f"pgpool-user-{user}") == f"pgpool-user-{user}"
    for name in secrets:
        assert object_name(run, "core/v1:Secret", name) == name and name in referenced, name
    for type_suffix, resource_name in [("core/v1:ConfigMap", "pgpool-config")] + [("core/v1:Secret", n) for n in secrets]:
        assert depends_on(run, ("apps/v1:Deployment", "pgpool"), (type_suffix, resource_name)), resource_name
    # What clients and the PodDisruptionBudget find by name keeps its name.
    for type_suffix in ("apps/v1:Deployment", "core/v1:Service", "policy/v1:PodDisruptionBudget"):
        assert object_name(run, type_suffix, "pgpool") == "pgpool"


# --- env mode -------------------------------------------------------------------------------


def test_env_mode_configures_through_pgpool_params(stack_run):
    run = stack_run(pgpoolMode="env", numInitChildren="20", statementLevelLoadBalance="true")
    env = env_of(run)
    assert env["PGPOOL_PARAMS_NUM_INIT_CHILDREN"]["value"] == "20"
    assert env["PGPOOL_PARAMS_STATEMENT_LEVEL_LOAD_BALANCE"]["value"] == "on"
    assert env["PGPOOL_PARAMS_BACKEND_HOSTNAME0"]["value"] == "pg.pgpool-dev.svc.cluster.local"
    assert env["PGPOOL_PARAMS_BACKEND_FLAG0"]["value"] == "ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER"
    assert env["PGPOOL_PARAMS_LOAD_BALANCE_MODE"]["value"] == "on"
    assert "command" not in container(run, "pgpool")  # the image's entrypoint writes pgpool.conf
    # Only pool_hba.conf is mounted; the image writes pool_passwd, pcp.conf and its key itself.
    assert set(config_files(run)) == {"pool_hba.conf"}
    assert set(secret_files(run)) == {"pcppass", "pgpass"}


def test_env_mode_credentials_only_by_secret_reference(stack_run):
    run = stack_run(pgpoolMode="env", users='["app", "reporting"]')
    env = env_of(run)
    expected = {"POSTGRES": ("pg-auth", "postgres"), "MONITOR": ("pgpool-user-monitor", "monitor"),
                "APP": ("pgpool-user-app", "app"), "REPORTING": ("pgpool-user-reporting", "reporting"),
                "PGPOOL_PCP": ("pgpool-pcp", "pcp")}
    for prefix, (secret, user) in expected.items():
        name_var = f"{prefix}_USER" if prefix == "PGPOOL_PCP" else f"{prefix}_USERNAME"
        for variable, key in ((name_var, "username"), (f"{prefix}_PASSWORD", "password")):
            assert "value" not in env[variable], variable
            assert env[variable]["valueFrom"]["secretKeyRef"] == {"name": object_name(run, "core/v1:Secret", secret),
                                                                  "key": key}
        assert run.find("core/v1:Secret", secret).props["stringData"]["username"] == user
    passwords = set(secret_values(run.secrets).values())
    for entry in env.values():
        assert entry.get("value") not in passwords


# --- TLS ------------------------------------------------------------------------------------


def test_ssl_on_accepts_only_tls_clients(dev_run):
    rows = hba_rows(dev_run)
    assert {row[0] for row in rows} == {"hostssl"}
    assert all(row[-1] != "trust" for row in rows)
    assert env_of(dev_run, "exporter")["SSLMODE"]["value"] == "require"
    conf = pgpool_conf(dev_run)
    assert conf["ssl"] == "on"
    secrets_dir = mount_dir(dev_run, "pgpool", "prepared-secrets")
    assert {conf["ssl_cert"], conf["ssl_key"]} == {f"{secrets_dir}/tls.crt", f"{secrets_dir}/tls.key"}
    tls = dev_run.find("core/v1:Secret", "pgpool-tls")
    assert tls.props["type"] == "kubernetes.io/tls"
    assert tls.props["stringData"] == {"tls.crt": dev_run.secrets["tlsCert"], "tls.key": dev_run.secrets["tlsKey"]}
    assert list(plain_strings(tls.inputs["stringData"])) == []


def test_ssl_off_uses_plain_host_lines(stack_run):
    run = stack_run(ssl="false")
    assert {row[0] for row in hba_rows(run)} == {"host"}
    assert env_of(run, "exporter")["SSLMODE"]["value"] == "disable"
    assert env_of(run)["PGSSLMODE"]["value"] == "disable"
    assert pgpool_conf(run)["ssl"] == "off" and "ssl_cert" not in pgpool_conf(run)
    assert "pgpool-tls" not in {s.name for s in run.of_type("core/v1:Secret")}
    assert "tls" not in {v["name"] for v in pod_spec(run)["volumes"]}


def test_user_supplied_tls_secret_replaces_the_generated_one(stack_run):
    run = stack_run(tlsSecretName="company-cert")
    assert "pgpool-tls" not in {s.name for s in run.of_type("core/v1:Secret")}
    assert volume(run, "tls")["secret"]["secretName"] == "company-cert"
    assert mount_dir(run, "prepare-secrets", "tls") in container(run, "prepare-secrets")["command"][4:]
    assert pgpool_conf(run)["ssl"] == "on"


# --- users, weights, load balancing ---------------------------------------------------------


def test_every_user_gets_a_pool_passwd_entry_and_a_secret(stack_run):
    run = stack_run(users='["app", "reporting", "etl"]')
    assert users_in(secret_files(run)["pool_passwd"]) == {"postgres", "monitor", "app", "reporting", "etl"}
    passwords = json.loads(run.secrets["userPasswords"])
    for user in ("app", "reporting", "etl"):
        secret = run.find("core/v1:Secret", f"pgpool-user-{user}")
        assert secret.props["type"] == "kubernetes.io/basic-auth"
        assert secret.props["stringData"] == {"username": user, "password": passwords[user]}
        assert list(plain_strings(secret.inputs["stringData"])) == []


def test_md5_client_auth(stack_run):
    run = stack_run(passwordEncryption="md5")
    entries = dict(line.split(":", 1) for line in secret_files(run)["pool_passwd"].splitlines())
    assert all(entry.startswith("md5") for entry in entries.values())
    assert {row[-1] for row in hba_rows(run) if row[0] != "local"} == {"md5"}


@pytest.mark.parametrize("overrides, weight0, weight1", [
    ({}, "1", "2"),  # default: the number of standbys behind the replica Service
    ({"postgresReplicas": "5"}, "1", "4"),
    ({"backendWeight0": "0", "backendWeight1": "7"}, "0", "7"),
])
def test_backend_weights(stack_run, overrides, weight0, weight1):
    conf = pgpool_conf(stack_run(**overrides))
    assert (conf["backend_weight0"], conf["backend_weight1"]) == (weight0, weight1)
    assert conf["backend_flag0"] == "ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER"
    assert conf["backend_flag1"] == "DISALLOW_TO_FAILOVER"


def test_streaming_replication_check_reads_its_password_from_pool_passwd(dev_run, stack_run):
    assert pgpool_conf(dev_run)["sr_check_period"] == "0"
    run = stack_run(srCheckPeriod="10", srCheckUser="monitor")
    conf = pgpool_conf(run)
    assert (conf["sr_check_period"], conf["sr_check_user"], conf["sr_check_password"]) == ("10", "monitor", "")
    assert "monitor" in users_in(secret_files(run)["pool_passwd"])


def test_load_balancing_settings(dev_run, stack_run):
    assert pgpool_conf(dev_run)["statement_level_load_balance"] == "off"
    conf = pgpool_conf(stack_run(statementLevelLoadBalance="true", disableLoadBalanceOnWrite="always"))
    assert conf["statement_level_load_balance"] == "on"
    assert conf["disable_load_balance_on_write"] == "always"
    assert conf["load_balance_mode"] == "on" and conf["connection_cache"] == "on"


# --- the Deployment -------------------------------------------------------------------------


def test_deployment_replicas_and_pinned_images(stack_run):
    run = stack_run(pgpoolReplicas="3", pgpoolImage="pgpool/pgpool:4.6.1", exporterImage="pgpool/pgpool2_exporter:1.2.1")
    assert deployment(run)["spec"]["replicas"] == 3
    assert container(run, "pgpool")["image"] == "pgpool/pgpool:4.6.1"
    assert container(run, "prepare-secrets")["image"] == "pgpool/pgpool:4.6.1"
    assert container(run, "exporter")["image"] == "pgpool/pgpool2_exporter:1.2.1"


@pytest.mark.parametrize("mode", ["configmap", "env"])
def test_probes_reach_this_pods_pgpool_with_the_stacks_credentials(stack_run, mode):
    """Each probe points at what the rest of the stack configures: the container's port, the monitor
    user's Secret, the PCP socket and .pcppass; tests/dataplane runs them for real."""
    run = stack_run(pgpoolMode=mode)
    pgpool = container(run, "pgpool")
    env = env_of(run)
    ready = pgpool["readinessProbe"]["exec"]["command"]
    assert pgpool["startupProbe"]["exec"]["command"] == ready
    flags = dict(zip(ready, ready[1:]))
    assert (flags["-h"], int(flags["-p"])) == ("127.0.0.1", {p["name"]: p["containerPort"]
                                                            for p in pgpool["ports"]}["postgres"])
    pgpass = env["PGPASSFILE"]["value"]  # a file: no password in the container's environment
    assert posixpath.dirname(pgpass) == mount_dir(run, "pgpool", "prepared-secrets")
    host, port, database, user, password = secret_files(run)[posixpath.basename(pgpass)].rstrip("\n").split(":")
    assert (host, port, database, user, password) == (flags["-h"], "*", flags["-d"], flags["-U"],
                                                      run.secrets["monitorPassword"])
    assert not [e for e in pgpool["env"] if "valueFrom" in e and "_" not in e["name"]]
    assert env["PGSSLMODE"]["value"] == "require" and {r[0] for r in hba_rows(run)} == {"hostssl"}
    alive = pgpool["livenessProbe"]["exec"]["command"]
    alive_flags = dict(zip(alive, alive[1:]))
    assert alive_flags["-h"] == mount_dir(run, "pgpool", "sockets")  # PCP's unix socket, not TCP
    assert "-w" in alive and alive_flags["-U"] == "pcp"
    pcppass = env["PCPPASSFILE"]["value"]
    assert posixpath.dirname(pcppass) == mount_dir(run, "pgpool", "prepared-secrets")
    host, port, user, password = secret_files(run)[posixpath.basename(pcppass)].rstrip("\n").split(":")
    assert (host, port, user, password) == ("*", alive_flags["-p"], "pcp", run.secrets["pcpPassword"])
    for probe in ("readinessProbe", "startupProbe", "livenessProbe"):
        assert set(pgpool[probe]) >= {"exec", "timeoutSeconds"} and pgpool[probe]["timeoutSeconds"] >= 5


def test_pcp_port_is_closed_unless_pcp_over_tcp(dev_run, stack_run):
    assert "pcp" not in {p["name"] for p in container(dev_run, "pgpool")["ports"]}
    assert pgpool_conf(dev_run)["pcp_listen_addresses"] == ""
    run = stack_run(pcpOverTcp="true", networkPolicy="true", pcpClientPodLabels='["app=pgpool-admin"]')
    assert {"name": "pcp", "containerPort": 9898} in container(run, "pgpool")["ports"]
    assert pgpool_conf(run)["pcp_listen_addresses"] == "*"
    ingress = run.find("networking.k8s.io/v1:NetworkPolicy", "pgpool").props["spec"]["ingress"]
    [pcp_rule] = [rule for rule in ingress if rule["ports"] == [{"port": 9898, "protocol": "TCP"}]]
    assert pcp_rule["from"] == [{"podSelector": {"matchLabels": {"app": "pgpool-admin"}}}]
    # Not through the client Service: each pod's PCP is its own.
    assert [p["port"] for p in run.find("core/v1:Service", "pgpool").props["spec"]["ports"]] == [9999]


def test_shutdown_settings_reach_the_pod(dev_run, stack_run):
    spec = pod_spec(dev_run)
    assert spec["terminationGracePeriodSeconds"] == 60
    assert container(dev_run, "pgpool")["lifecycle"]["preStop"]["exec"]["command"] == ["/bin/sleep", "10"]
    run = stack_run(pgpoolShutdownMode="fast", pgpoolPreStopSeconds="5", pgpoolTerminationGraceSeconds="20")
    assert pod_spec(run)["terminationGracePeriodSeconds"] == 20
    hook = container(run, "pgpool")["lifecycle"]["preStop"]["exec"]["command"]
    assert hook[4:] == ["5", "/opt/pgpool-II/bin/pgpool", "-f", posixpath.join(mount_dir(run, "pgpool", "config"),
                                                                                  "pgpool.conf"), "-m", "fast", "stop"]


def test_every_container_has_requests_and_limits(stack_run):
    run = stack_run(pgpoolCpuRequest="300m", pgpoolMemoryLimit="1Gi")
    for name in ("pgpool", "exporter", "prepare-secrets"):
        resources = container(run, name)["resources"]
        assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}, name
    assert container(run, "pgpool")["resources"]["requests"]["cpu"] == "300m"
    assert container(run, "pgpool")["resources"]["limits"]["memory"] == "1Gi"


@pytest.mark.parametrize("mode", ["configmap", "env"])
def test_every_container_is_restricted(stack_run, mode):
    run = stack_run(pgpoolMode=mode)
    pod = pod_spec(run)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
    assert pod["automountServiceAccountToken"] is False
    for c in pod["containers"] + pod["initContainers"]:
        context = c["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, c["name"]
        assert context["capabilities"] == {"drop": ["ALL"]}, c["name"]
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, c["name"]
        assert context["readOnlyRootFilesystem"] is True, c["name"]
        assert context["runAsNonRoot"] is True, c["name"]
        assert context.get("runAsUser", pod["securityContext"]["runAsUser"]) > 0, c["name"]
    # The exporter image's default user is root: it needs its own explicit UID.
    assert container(run, "exporter")["securityContext"]["runAsUser"] > 0
    # Writable paths on a read-only root filesystem are emptyDirs.
    for path in ("/tmp", mount_dir(run, "pgpool", "sockets")):
        [mount] = [m for m in container(run, "pgpool")["volumeMounts"] if m["mountPath"] == path]
        assert "emptyDir" in volume(run, mount["name"])


def test_soft_anti_affinity_and_one_selector(dev_run):
    spec = deployment(dev_run)["spec"]
    selector = spec["selector"]["matchLabels"]
    assert selector.items() <= spec["template"]["metadata"]["labels"].items()
    anti = spec["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in anti
    [term] = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == selector
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert re.fullmatch(r"[0-9a-f]{64}", checksum(dev_run))


def test_exporter_sidecar_logs_in_as_the_monitor_user(stack_run):
    run = stack_run(monitorUser="watcher")
    exporter = container(run, "exporter")
    assert exporter["ports"] == [{"name": "metrics", "containerPort": 9719}]
    # It listens only once logged in: a probe would restart it, or unready Pgpool-II, while it cannot.
    assert not {"livenessProbe", "readinessProbe", "startupProbe"} & exporter.keys()
    env = env_of(run, "exporter")
    secret_name = object_name(run, "core/v1:Secret", "pgpool-user-watcher")
    for variable, key in (("POSTGRES_USERNAME", "username"), ("POSTGRES_PASSWORD", "password")):
        assert "value" not in env[variable]
        assert env[variable]["valueFrom"]["secretKeyRef"] == {"name": secret_name, "key": key}
    monitor = run.find("core/v1:Secret", "pgpool-user-watcher").props["stringData"]
    assert monitor == {"username": "watcher", "password": run.secrets["monitorPassword"]}
    assert env["PGPOOL_SERVICE_PORT"]["value"] == "9999"


# --- Services, PodDisruptionBudget, NetworkPolicy ------------------------------------------


def test_services(stack_run):
    run = stack_run(pgpoolPort="6432")
    selector = deployment(run)["spec"]["selector"]["matchLabels"]
    for name in ("pgpool", "pgpool-metrics"):
        # The selector is plain data: read from the Deployment's output, the Service would wait for its rollout.
        assert not depends_on(run, ("core/v1:Service", name), ("apps/v1:Deployment", "pgpool")), name
    service = run.find("core/v1:Service", "pgpool").props["spec"]
    assert service["ports"] == [{"name": "postgres", "port": 6432, "targetPort": "postgres"}]
    assert {"name": "postgres", "containerPort": 6432} in container(run, "pgpool")["ports"]
    assert service["selector"] == selector
    metrics = run.find("core/v1:Service", "pgpool-metrics").props
    assert metrics["spec"]["ports"] == [{"name": "metrics", "port": 9719, "targetPort": "metrics"}]
    assert metrics["spec"]["selector"] == selector
    assert metrics["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true", "prometheus.io/port": "9719", "prometheus.io/path": "/metrics",
        "pgpool-k8s/stack": "pgpool-k8s/dev"}  # whose it is (components/ownership.py)


@pytest.mark.parametrize("replicas", ["1", "2", "3"])
def test_pod_disruption_budget_lets_drains_through_one_pod_at_a_time(stack_run, replicas):
    run = stack_run(pgpoolReplicas=replicas)
    spec = run.find("policy/v1:PodDisruptionBudget", "pgpool").props["spec"]
    # It covers exactly the Pgpool-II pods.
    covered = [d.name for d in run.of_type("apps/v1:Deployment") if spec["selector"]["matchLabels"].items()
               <= d.props["spec"]["template"]["metadata"]["labels"].items()]
    assert covered == ["pgpool"]
    # Evictions allowed at once with every pod healthy: a drain always makes progress, and the
    # rolling update (maxUnavailable 0) never takes a second pod with it.
    healthy = int(replicas)
    assert min(spec["maxUnavailable"], healthy) == 1
    # While the database is down no pod is Ready; AlwaysAllow still lets a drain evict them.
    assert spec["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def admitted(run) -> dict[int, list]:
    """NetworkPolicy peers by the port they may reach."""
    spec = run.find("networking.k8s.io/v1:NetworkPolicy", "pgpool").props["spec"]
    ports = {}
    for rule in spec["ingress"]:
        for port in rule["ports"]:
            assert port["protocol"] == "TCP"
            ports.setdefault(port["port"], []).extend(rule["from"])
    return ports


def test_network_policy_by_default_and_none_when_disabled(dev_run, stack_run):
    assert stack_run(networkPolicy="false").of_type("networking.k8s.io/v1:NetworkPolicy") == []
    run = dev_run
    spec = run.find("networking.k8s.io/v1:NetworkPolicy", "pgpool").props["spec"]
    assert spec["podSelector"]["matchLabels"] == deployment(run)["spec"]["selector"]["matchLabels"]
    assert spec["policyTypes"] == ["Ingress"]  # everything not admitted below is refused
    ports = admitted(run)
    assert set(ports) == {9999, 9719}  # no PCP
    # No client labels: any pod of the stack's namespace (an empty podSelector, no namespaceSelector).
    [client] = ports[9999]
    assert list(client) == ["podSelector"] and not any(client["podSelector"].values())
    prometheus_labels = run.find("apps/v1:Deployment", "prometheus").props["spec"]["template"]["metadata"]["labels"]
    [peer] = ports[9719]
    assert peer["podSelector"]["matchLabels"].items() <= prometheus_labels.items()
    assert "namespaceSelector" not in peer


def test_network_policy_admits_the_chosen_clients(stack_run):
    run = stack_run(networkPolicy="true", networkPolicyClientNamespaceLabels='["team=web"]',
                    networkPolicyClientPodLabels='["app=shop", "tier=backend"]')
    # One peer: namespace AND pod labels must both match.
    assert admitted(run)[9999] == [{"namespaceSelector": {"matchLabels": {"team": "web"}},
                                    "podSelector": {"matchLabels": {"app": "shop", "tier": "backend"}}}]


def test_network_policy_admits_the_operators_prometheus(stack_run):
    run = stack_run(networkPolicy="true", prometheusOperator="true")
    # The operator's Prometheus lives in a namespace of its own; these are the labels it gives its pods.
    assert admitted(run)[9719] == [{"namespaceSelector": {}, "podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "prometheus", "app.kubernetes.io/managed-by": "prometheus-operator"}}}]


def test_network_policy_without_prometheus_admits_only_clients(stack_run):
    run = stack_run(networkPolicy="true", prometheus="false")
    assert set(admitted(run)) == {9999}


# --- the checksum rolls the pods on every change that matters ------------------------------

CONF_CHANGES = [
    {"numInitChildren": "20"},
    {"maxPool": "1"},
    {"childLifeTime": "120"},
    {"connectionLifeTime": "60"},
    {"clientIdleLimit": "30"},
    {"reservedConnections": "2"},
    {"backendWeight1": "5"},
    {"backendWeight0": "0"},
    {"ssl": "false"},
    {"statementLevelLoadBalance": "true"},
    {"disableLoadBalanceOnWrite": "dml_adaptive"},
    {"srCheckPeriod": "10", "srCheckUser": "monitor"},
    {"passwordEncryption": "md5"},
    {"postgresPort": "5433"},
    {"clusterName": "db"},
    {"tlsSecretName": "company-cert"},
]


@pytest.mark.parametrize("change", CONF_CHANGES, ids=[",".join(c) for c in CONF_CHANGES])
def test_a_config_change_rolls_the_pods(dev_run, stack_run, change):
    assert checksum(stack_run(**change)) != checksum(dev_run)


SECRET_CHANGES = ["dbPassword", "monitorPassword", "pcpPassword", "userPasswords", "tlsKey", "tlsCert"]


# In env mode the image makes its own pool key, so poolKey only matters in configmap mode.
@pytest.mark.parametrize("mode, key", [("configmap", "poolKey")] + [(mode, key) for mode in ("configmap", "env")
                                                                   for key in SECRET_CHANGES])
def test_a_secret_change_rolls_the_pods(stack_run, mode, key):
    base = stack_run(pgpoolMode=mode)
    value = '{"app": "another-app-password"}' if key == "userPasswords" else base.secrets[key] + "X"
    assert checksum(stack_run(secrets={key: value}, pgpoolMode=mode)) != checksum(base)


@pytest.mark.parametrize("change", [{"prometheusRetention": "30d"}, {"grafanaDashboard": "false"},
                                    {"storageSize": "5Gi"}, {"pgpoolReplicas": "3"}])
def test_an_unrelated_change_keeps_the_pods(dev_run, stack_run, change):
    assert checksum(stack_run(**change)) == checksum(dev_run)


# --- no secret outside a secret ------------------------------------------------------------

LEAK_RUNS = [{}, {"pgpoolMode": "env"}, {"operator": "zalando"}, {"operator": "crunchy", "pgpoolMode": "env"},
             {"networkPolicy": "true", "prometheusOperator": "true"}, {"srCheckPeriod": "10", "srCheckUser": "app"}]


@pytest.mark.parametrize("overrides", LEAK_RUNS, ids=[",".join(f"{k}={v}" for k, v in o.items()) or "dev" for o in LEAK_RUNS])
def test_no_secret_appears_outside_a_secret_marker(stack_run, overrides):
    run = stack_run(**overrides)
    secrets = secret_values(run.secrets)
    # Values derived from secrets (pool_passwd and pcp.conf lines) are as sensitive as the secrets.
    for secret in run.of_type("core/v1:Secret"):
        for text in secret.props["stringData"].values():
            secrets.update({f"{secret.name} line": line for line in text.splitlines() if len(line) >= 16})
    for resource in run.resources:
        for path, text in plain_strings(resource.inputs):
            for key, value in secrets.items():
                assert value not in text, f"{key} in plaintext at {resource.type} {resource.name}{path}"
    # A ConfigMap holds no secret even behind a secret marker.
    for config_map in run.of_type("core/v1:ConfigMap"):
        for path, text in plain_strings(unwrap(config_map.inputs)):
            assert not [key for key, value in secrets.items() if value in text], f"ConfigMap {config_map.name}{path}"


def test_every_secret_value_is_secret_marked(dev_run):
    for secret in dev_run.of_type("core/v1:Secret"):
        data = secret.inputs["stringData"]
        assert is_secret(data) or all(is_secret(v) for v in data.values()), secret.name


# --- components and parents ----------------------------------------------------------------


def test_children_are_parented_to_their_component(dev_run):
    parent_types = {(r.type, r.name): dev_run.parent_type(r) for r in dev_run.resources}
    assert parent_types[("pgpool-k8s:index:PgpoolStack", "pgpool-k8s")] == "pulumi:pulumi:Stack"
    for component in ("Pgpool", "KubeDBPostgres", "Prometheus"):
        [(_, parent)] = [(k, p) for k, p in parent_types.items() if k[0] == f"pgpool-k8s:index:{component}"]
        assert parent == "pgpool-k8s:index:PgpoolStack"
    expected = {
        ("kubernetes:apps/v1:Deployment", "pgpool"): "Pgpool",
        ("kubernetes:core/v1:Service", "pgpool"): "Pgpool",
        ("kubernetes:core/v1:Secret", "pgpool-files"): "Pgpool",
        ("kubernetes:core/v1:ConfigMap", "pgpool-config"): "Pgpool",
        ("kubernetes:core/v1:Secret", "pg-auth"): "KubeDBPostgres",
        ("kubernetes:kubedb.com/v1:Postgres", "pg"): "KubeDBPostgres",
        ("kubernetes:apps/v1:Deployment", "prometheus"): "Prometheus",
        ("kubernetes:core/v1:Namespace", "pgpool-dev"): "PgpoolStack",
    }
    for key, component in expected.items():
        assert parent_types[key] == f"pgpool-k8s:index:{component}", key
    # No Kubernetes object hangs off the stack root: each belongs to a component.
    for resource in dev_run.kubernetes_objects():
        assert parent_types[(resource.type, resource.name)].startswith("pgpool-k8s:index:"), resource.name


def test_the_release_is_labelled_for_whoever_cannot_read_it_from_the_tag(stack_run):
    run = stack_run(pgpoolImage="registry.example/pgpool/pgpool:stable", pgpoolVersion="4.6.3")
    template = run.find("apps/v1:Deployment", "pgpool").props["spec"]["template"]
    assert template["metadata"]["labels"]["app.kubernetes.io/version"] == "4.6.3"
    found = evaluate([(r.type, r.name, r.inputs) for r in run.resources])
    assert [v for v in found if v.policy == "pgpool-supported-release"] == []
    resources = copy.deepcopy([(r.type, r.name, r.inputs) for r in run.resources])
    [deployment] = [props for kind, _, props in resources if kind.endswith("apps/v1:Deployment")
                    and props["metadata"]["name"] == "pgpool"]
    deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"] = "4.6.0"  # a hand edit
    assert [v.policy for v in evaluate(resources) if v.level == "mandatory"] == ["pgpool-supported-release"]
