"""The settings layer: defaults, Pulumi.yaml agreement, and bad input named with key, value and fix."""

from __future__ import annotations

import pytest
import yaml

from components.settings import (
    DatabaseSettings,
    PgpoolSettings,
    SettingsError,
    load_settings,
    mebibytes,
    setting_keys,
    settings_warnings,
    unknown_keys,
)
from components.stack_secrets import load_secrets, required_secrets
from tests.program_run import ROOT, VERIFIED_DIGEST, production_config, project_defaults, stack_settings

BAD_INPUTS = [
    ({"pgpoolImage": "pgpool/pgpool:4.5.4"},
     "pgpool-k8s:pgpoolImage = 'pgpool/pgpool:4.5.4': Pgpool-II 4.5.4 has known vulnerabilities: CVE-2025-46801 "
     "(client authentication bypass (log in as any user)), fixed in 4.5.7. Use 4.5.7 or later of the 4.5 series"),
    ({"pgpoolImage": "pgpool/pgpool:4.3.5"}, "CVE-2024-45624 (rows readable by users without privilege through the "
     "query cache), fixed in 4.3.12. Use 4.3.15 or later of the 4.3 series"),
    ({"pgpoolImage": "pgpool/pgpool:4.2.22"}, "Pgpool-II 4.2.22 is outside the supported series (4.3, 4.4, 4.5, 4.6, 4.7)"),
    ({"pgpoolImage": "registry.example/pgpool:stable"}, "pgpool-k8s:pgpoolImage = 'registry.example/pgpool:stable': "
     "its tag names no Pgpool-II release"),
    ({"pgpoolImage": "pgpool/pgpool:4.7.2", "pgpoolVersion": "4.6.1"},
     "pgpool-k8s:pgpoolVersion = '4.6.1': pgpoolImage's tag says 4.7.2"),
    ({"pgpoolImage": "registry.example/pgpool:stable", "pgpoolVersion": "4.6.0"},
     "pgpool-k8s:pgpoolVersion = '4.6.0': Pgpool-II 4.6.0 has known vulnerabilities: CVE-2025-46801"),
    ({"pgpoolVersion": "4.7"}, "pgpool-k8s:pgpoolVersion = '4.7': use a release such as 4.7.2"),
    ({"pgpoolImage": "pgpool/pgpool:4.3.15", "pgpoolProcessManagementMode": "dynamic"},
     "pgpool-k8s:pgpoolProcessManagementMode = 'dynamic': Pgpool-II 4.3.15 has only static children"),
    ({"production": "true"}, "pgpool-k8s:exporterImage = 'pgpool/pgpool2_exporter:1.2.2': a production stack pins "
     "every image by digest"),
    ({"pgpoolMemoryLimit": "1Gi", "numInitChildren": "400", "postgresMaxConnections": "2000"},
     "pgpool-k8s:pgpoolMemoryLimit = '1Gi': Pgpool-II with numInitChildren 400 uses up to about 1220Mi once its "
     "children have served clients (15Mi + 3Mi per child + 5Mi of shared relation cache, measured), and a container "
     "over its limit is OOM-killed: raise it to at least 1220Mi or lower numInitChildren"),
    ({"queryCache": "shmem", "queryCacheMaxStaleSeconds": "5", "queryCacheTotalSize": "1Gi"},
     "pgpool-k8s:pgpoolMemoryLimit = '512Mi': Pgpool-II with numInitChildren 32 uses up to about 1239Mi once its "
     "children have served clients (15Mi + 3Mi per child + the query cache: its store 1032Mi and 3Mi per child "
     "serving cached reads, measured), and a container over its limit is OOM-killed: raise it to at least 1239Mi or "
     "lower numInitChildren, queryCacheTotalSize or queryCacheMaxEntries"),
    ({"pgpoolMode": "yaml"}, "pgpool-k8s:pgpoolMode = 'yaml': use one of configmap, env"),
    ({"operator": "stolon"}, "pgpool-k8s:operator = 'stolon': use one of kubedb, zalando, crunchy, cloudnativepg, external"),
    ({"backendWeight0": "-1"}, "pgpool-k8s:backendWeight0 = '-1': use a number between 0 and 100000"),
    ({"backendWeight1": "-3"}, "pgpool-k8s:backendWeight1 = '-3': use a number between 0 and 100000"),
    ({"backendWeight0": "0", "backendWeight1": "0"}, "at least one backend needs a weight above 0"),
    ({"numInitChildren": "100", "maxPool": "4"},
     "pgpoolReplicas * numInitChildren * maxPool = 2 * 100 * 4 = 800 exceeds what each backend accepts "
     "(postgresMaxConnections 200 - postgresSuperuserReservedConnections 3 = 197)"),
    ({"pgpoolReplicas": "5", "numInitChildren": "32", "maxPool": "2"}, "= 320 exceeds what each backend accepts"),
    ({"pgpoolMode": "env", "users": '["my_app"]'},
     "pgpool-k8s:users = 'my_app': in pgpoolMode env the image cuts the variable prefix at the first underscore"),
    ({"pgpoolMode": "env", "monitorUser": "pg_monitor"}, "pgpool-k8s:monitorUser = 'pg_monitor': in pgpoolMode env"),
    ({"users": '["' + "a" * 129 + '"]'}, "user names are limited to 128 bytes by pgpool"),
    ({"users": '["App"]'}, "pgpool-k8s:users = 'App': use a lower-case PostgreSQL role name"),
    ({"users": '["x:y"]'}, "pgpool-k8s:users = 'x:y': use a lower-case PostgreSQL role name"),
    ({"users": "app"}, "pgpool-k8s:users = 'app': use a list"),
    ({"users": '["app", "app"]'}, "user names must be unique"),
    ({"pgpoolPort": "70000"}, "pgpool-k8s:pgpoolPort = '70000': use a number between 1024 and 65535"),
    ({"pcpPort": "80"}, "pgpool-k8s:pcpPort = '80': use a number between 1024 and 65535"),
    ({"exporterPort": "9999"}, "pgpoolPort, pcpPort (9898) and exporterPort (9999) must differ"),
    ({"numInitChildren": "ten"}, "pgpool-k8s:numInitChildren = 'ten': use a whole number"),
    ({"ssl": "yes"}, "pgpool-k8s:ssl = 'yes': use true or false"),
    ({"pgpoolImage": "pgpool/pgpool:latest"}, "pgpool-k8s:pgpoolImage = 'pgpool/pgpool:latest': pin a version tag"),
    ({"exporterImage": "pgpool/pgpool2_exporter"}, "pgpool-k8s:exporterImage = 'pgpool/pgpool2_exporter': pin an image tag"),
    ({"namespace": "Pgpool_NS"}, "pgpool-k8s:namespace = 'Pgpool_NS': use lower-case letters, digits and '-'"),
    ({"reservedConnections": "0"}, "pgpool-k8s:reservedConnections = 0: use at least 1 so clients beyond numInitChildren get an error"),
    ({"srCheckPeriod": "10"}, "srCheckPeriod > 0 needs srCheckUser"),
    ({"srCheckPeriod": "10", "srCheckUser": "replicator"}, "pgpool-k8s:srCheckUser = 'replicator': pgpool reads its password from pool_passwd"),
    ({"srCheckUser": "postgres"}, "only used when srCheckPeriod > 0"),
    ({"pgpoolServiceType": "LoadBalancer"}, "exposing Pgpool-II outside the cluster needs allowLoadBalancer = true"),
    ({"tlsSecretName": "my-cert", "ssl": "false"}, "a certificate is only used with ssl = true"),
    ({"operator": "external"}, "pgpool-k8s:externalPrimaryHost = '': operator external needs the host name"),
    ({"externalPrimaryHost": "db.example"}, "only used with operator external (operator is kubedb); remove it"),
    ({"postgresReplicas": "1"}, "pgpool-k8s:postgresReplicas = 1: Pgpool-II's node 1 is the read-only Service, which needs a standby"),
    ({"postgresReplicas": "0"}, "pgpool-k8s:postgresReplicas = '0': use a number between 1 and 15"),
    ({"postgresSuperuserReservedConnections": "200"}, "must be below postgresMaxConnections (200)"),
    ({"storageSize": "lots"}, "pgpool-k8s:storageSize = 'lots': use a Kubernetes quantity such as 10Gi"),
    ({"prometheusRetention": "1 week"}, "pgpool-k8s:prometheusRetention = '1 week': use a Prometheus duration"),
    ({"prometheusStorage": "hostPath"}, "pgpool-k8s:prometheusStorage = 'hostPath': use one of emptyDir, pvc"),
    ({"passwordEncryption": "password"}, "pgpool-k8s:passwordEncryption = 'password': use one of scram-sha-256, md5"),
    ({"networkPolicyClientPodLabels": '["app"]'}, "each entry is a label selector pair key=value"),
    ({"networkPolicy": "false", "networkPolicyClientPodLabels": '["app=web"]'},
     "client label selectors are set but networkPolicy is false"),
    ({"deletionPolicy": "Keep"}, "pgpool-k8s:deletionPolicy = 'Keep': use one of Delete, Halt, WipeOut, DoNotTerminate"),
    # Roles the operators own (README, "Database operators"): a stack user of that name would fight them.
    ({"operator": "cloudnativepg"}, "pgpool-k8s:users = 'app': cloudnativepg creates and manages the role 'app' "
     "(the default application owner, bootstrap.initdb.owner; its password is in the Secret pg-app)"),
    ({"operator": "cloudnativepg", "users": '["orders"]', "monitorUser": "streaming_replica"},
     "pgpool-k8s:monitorUser = 'streaming_replica': cloudnativepg creates and manages the role"),
    ({"operator": "zalando", "users": '["standby"]'}, "pgpool-k8s:users = 'standby': zalando creates and manages "
     "the role 'standby' (the replication user, operator setting replication_username)"),
    ({"operator": "crunchy", "users": '["ccp_monitoring"]'}, "pgpool-k8s:users = 'ccp_monitoring': crunchy creates"),
    ({"operator": "crunchy", "users": '["_crunchyrepl"]'}, "pgpool-k8s:users = '_crunchyrepl': crunchy creates"),
    ({"operator": "zalando", "ssl": "false"}, "pgpool-k8s:ssl = False: operator zalando needs TLS to its PostgreSQL "
     "(Spilo's pg_hba.conf rejects connections without TLS)"),
    ({"operator": "crunchy", "ssl": "false"}, "pgpool-k8s:ssl = False: operator crunchy needs TLS"),
    ({"postgresClientImage": "postgres"}, "pgpool-k8s:postgresClientImage = 'postgres': pin an image tag"),
    ({"prometheusDiscoveryNamespaces": '["*", "team-a"]'}, 'use ["*"] alone or list the namespaces'),
    ({"prometheusDiscoveryNamespaces": '["Team_A"]'}, "pgpool-k8s:prometheusDiscoveryNamespaces = 'Team_A': use "
     "lower-case letters"),
    ({"prometheusOperator": "true", "prometheusDiscoveryNamespaces": '["team-a"]'},
     "with prometheusOperator the operator's Prometheus chooses its namespaces"),
    ({"prometheusOperatorLabels": '["release=kube-prometheus-stack"]'},
     "pgpool-k8s:prometheusOperatorLabels = ['release=kube-prometheus-stack']: labels for the Prometheus Operator's "
     "selectors are only used with prometheusOperator = true"),
    ({"prometheusOperator": "true", "prometheusOperatorLabels": '["release"]'},
     "pgpool-k8s:prometheusOperatorLabels = 'release': each entry is a label selector pair key=value"),
    ({"pcpOverTcp": "true"}, "pgpool-k8s:pcpOverTcp = True: PCP on TCP lets whoever reaches port 9898 detach backends"),
    ({"pcpOverTcp": "true", "networkPolicy": "true"}, "name the PCP clients in pcpClientPodLabels"),
    ({"pcpClientPodLabels": '["app=admin"]'},
     "pgpool-k8s:pcpClientPodLabels = ['app=admin']: PCP client labels are only used with pcpOverTcp = true"),
    ({"pgpoolShutdownMode": "immediate"}, "pgpool-k8s:pgpoolShutdownMode = 'immediate': use one of smart, fast"),
    ({"pgpoolPreStopSeconds": "60"},
     "pgpool-k8s:pgpoolTerminationGraceSeconds = 60: the grace period includes the preStop wait "
     "(pgpoolPreStopSeconds 60); use at least 65"),
    ({"pgpoolPreStopSeconds": "-1"}, "pgpool-k8s:pgpoolPreStopSeconds = '-1': use a number between 0 and 600"),
    # Roles PostgreSQL reserves (tests/dataplane/test_security.py asks PostgreSQL about each).
    ({"users": '["app", "pg_app"]'}, "pgpool-k8s:users = 'pg_app': PostgreSQL reserves role names starting with "
     "'pg_' and the names none, public: it refuses to create or alter such a role"),
    ({"monitorUser": "public"}, "pgpool-k8s:monitorUser = 'public': PostgreSQL reserves role names"),
    ({"users": '["none"]'}, "pgpool-k8s:users = 'none': PostgreSQL reserves role names"),
    ({"postgresSuperuser": "pg_admin"}, "pgpool-k8s:postgresSuperuser = 'pg_admin': PostgreSQL reserves role names"),
    ({"users": '["template1"]'}, "pgpool-k8s:users = 'template1': every PostgreSQL cluster already has a database "
     "'template1'"),
    ({"pgpoolServiceType": "NodePort"}, "pgpool-k8s:pgpoolServiceType = 'NodePort': a NodePort opens Pgpool-II on "
     "every node's address"),
    ({"production": "true", "deletionPolicy": "Delete"},
     "pgpool-k8s:deletionPolicy = 'Delete': a production database must keep its data when its object is deleted: use "
     "Halt or DoNotTerminate, or leave it unset (DoNotTerminate in production)"),
    ({"production": "true", "deletionPolicy": "WipeOut"}, "pgpool-k8s:deletionPolicy = 'WipeOut': a production"),
    ({"production": "true", "deletionPolicy": "Halt", "networkPolicy": "false"},
     "pgpool-k8s:networkPolicy = False: a production stack admits only what must talk"),
    ({"operator": "zalando", "postgresTlsIssuer": "pg-ca"},
     "pgpool-k8s:postgresTlsIssuer = 'pg-ca': only used with operator kubedb"),
    ({"postgresTlsIssuer": "pg-ca", "ssl": "false"}, "pgpool-k8s:postgresTlsIssuer = 'pg-ca': PostgreSQL then takes "
     "clients only over TLS"),
    ({"postgresTlsIssuerKind": "CertificateAuthority"}, "use one of Issuer, ClusterIssuer"),
    ({"networkPolicy": "false", "prometheusClientPodLabels": '["app=grafana"]'},
     "pgpool-k8s:prometheusClientPodLabels = ['app=grafana']: only used by the NetworkPolicy"),
    # The query cache (components/query_cache.py).
    ({"queryCache": "on"}, "pgpool-k8s:queryCache = 'on': use one of off, shmem, memcached"),
    ({"queryCache": "memcached"}, "pgpool-k8s:queryCache = 'memcached': the pgpool/pgpool image builds Pgpool-II "
     "without memcached (Dockerfile.pgpool configures --with-openssl only), and then every query fails"),
    ({"queryCache": "shmem"}, "pgpool-k8s:queryCacheMaxStaleSeconds = 0: the query cache removes a result only when "
     "its table is written through the same pod: with pgpoolReplicas 2, a read through one pod returns what it "
     "cached before a write through another"),
    ({"queryCache": "shmem", "pgpoolReplicas": "1"}, "pgpool-k8s:queryCacheMaxStaleSeconds = 0: the query cache "
     "removes a result only when its table is written through the same pod: and a read balanced to a standby"),
    ({"queryCacheMaxStaleSeconds": "-5"}, "pgpool-k8s:queryCacheMaxStaleSeconds = '-5': use a number between 0"),
    ({"queryCache": "shmem", "queryCacheMaxStaleSeconds": "5", "queryCacheTotalSize": "1500Ki"},
     "pgpool-k8s:queryCacheTotalSize = '1500Ki': use a size between 1Mi and 64Gi and a multiple of 1Mi"),
    ({"queryCache": "shmem", "queryCacheMaxStaleSeconds": "5", "queryCacheTotalSize": "64MB"},
     "pgpool-k8s:queryCacheTotalSize = '64MB': use a size such as 64Mi (Ki, Mi or Gi, or bytes)"),
    ({"queryCache": "shmem", "queryCacheMaxStaleSeconds": "5", "queryCacheMaxResultSize": "2Mi"},
     "pgpool-k8s:queryCacheMaxResultSize = '2Mi': use a size between 1 and 1Mi"),
    ({"queryCache": "shmem", "queryCacheMaxStaleSeconds": "5", "queryCacheMaxEntries": "0"},
     "pgpool-k8s:queryCacheMaxEntries = '0': use a number between 1 and 16777216"),
    ({"queryCache": "shmem", "queryCacheMaxStaleSeconds": "5", "queryCacheUnsafeTables": '["public.orders"]'},
     "pgpool-k8s:queryCacheUnsafeTables = 'public.orders': name a table, in lower case, without schema"),
    ({"queryCache": "shmem", "queryCacheMaxStaleSeconds": "5", "queryCacheSafeTables": '["Daily Report"]'},
     "pgpool-k8s:queryCacheSafeTables = 'Daily Report': name a table, optionally schema.table, in lower case"),
    ({"queryCacheTotalSize": "32Mi"}, "pgpool-k8s:queryCacheTotalSize = '32Mi': only used with queryCache shmem"),
    ({"queryCacheUnsafeTables": '["orders"]'}, "pgpool-k8s:queryCacheUnsafeTables = ['orders']: only used with "
     "queryCache shmem"),
]


@pytest.mark.parametrize("raw, expected", BAD_INPUTS, ids=[next(iter(raw)) for raw, _ in BAD_INPUTS])
def test_bad_input_is_rejected_with_key_value_and_fix(raw, expected):
    with pytest.raises(SettingsError) as error:
        load_settings(raw, "dev")
    assert expected in str(error.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(SettingsError) as error:
        load_settings({"pgpoolMode": "yaml", "ssl": "maybe", "pgpoolPort": "-1"}, "dev")
    assert len(error.value.problems) == 3


def test_defaults_follow_the_guide():
    settings = load_settings({}, "dev")
    assert settings.pgpool.mode == "configmap"
    assert settings.pgpool.reserved_connections == 1
    assert settings.pgpool.backend_weight1 == settings.database.replicas - 1 == 2
    assert settings.pgpool.sr_check_period == 0 and settings.pgpool.ssl
    assert settings.prometheus.enabled and not settings.production


def test_a_production_database_keeps_its_data_by_default_and_may_be_halted():
    assert load_settings(production_config(), "prod").database.deletion_policy == "DoNotTerminate"
    assert load_settings({}, "dev").database.deletion_policy == "Delete"  # KubeDB's own default outside production
    for policy in ("DoNotTerminate", "Halt"):
        settings = load_settings({**production_config(), "deletionPolicy": policy}, "prod")
        assert settings.production and settings.pgpool.network_policy and settings.database.deletion_policy == policy
    # Other operators' databases are theirs: their deletion is not the stack's to guard.
    assert load_settings({**production_config(), "operator": "zalando", "pgpoolMode": "env",
                          "deletionPolicy": "Delete"}, "prod").production


def test_backend_weight1_follows_the_standby_count_unless_set():
    assert load_settings({"postgresReplicas": "5"}, "dev").pgpool.backend_weight1 == 4
    assert load_settings({"postgresReplicas": "5", "backendWeight1": "1"}, "dev").pgpool.backend_weight1 == 1


def test_warnings_for_what_works_at_a_cost():
    assert settings_warnings(load_settings({}, "dev")) == []
    early = settings_warnings(load_settings({**production_config(), "pgpoolImage": "pgpool/pgpool:4.6.1"
                                             + VERIFIED_DIGEST}, "prod"))
    assert len(early) == 1 and "Pgpool-II 4.6.1 gives up on a backend at the first failed DNS lookup" in early[0]
    assert settings_warnings(load_settings({"pgpoolImage": "pgpool/pgpool:4.6.1"}, "dev")) == []  # not production
    [small] = settings_warnings(load_settings({"pgpoolMemoryRequest": "100Mi"}, "dev"))
    assert small.startswith("pgpoolMemoryRequest 100Mi: Pgpool-II with numInitChildren 32 uses up to about 116Mi")
    [cached] = settings_warnings(load_settings({"queryCache": "shmem", "queryCacheMaxStaleSeconds": "5"}, "dev"))
    assert cached == ("pgpoolMemoryRequest 256Mi: Pgpool-II with numInitChildren 32 uses up to about 279Mi once its "
                      "children have served clients (15Mi + 3Mi per child + the query cache: its store 72Mi and 3Mi "
                      "per child serving cached reads, measured), more than it requests, so it is among the first "
                      "pods evicted when its node runs short of memory: request at least 279Mi")


@pytest.mark.parametrize("quantity, mib", [("512Mi", 512), ("1Gi", 1024), ("536870912", 512), ("1G", 953.67)])
def test_memory_quantities_in_mebibytes(quantity: str, mib: float) -> None:
    assert mebibytes(quantity) == pytest.approx(mib, abs=0.01)


def test_production_is_explicit():
    assert not load_settings({}, "prod").production
    assert load_settings(production_config(), "dev").production


def test_pulumi_yaml_declares_every_setting_with_the_same_default():
    block = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    declared = {key.split(":", 1)[1] for key in block}
    # Undeclared on purpose: a declared default would hide "follow the standby count" and "follow production".
    assert declared == setting_keys() - {"backendWeight1", "deletionPolicy"}
    assert all(spec.get("description") and "type" in spec for spec in block.values())
    # What the engine hands the program for an empty stack is what the declarations default to.
    assert load_settings(project_defaults(), "dev") == load_settings({}, "dev")


def test_stack_files_are_valid():
    for stack in ("dev", "prod", "local"):
        raw = {k.split(":", 1)[1]: v for k, v in stack_settings(ROOT / f"Pulumi.{stack}.yaml")["config"].items()}
        assert unknown_keys(raw) == []
        # The example production stack leaves its images to be pinned by the digests its user verified.
        load_settings({**production_config(), **raw} if stack == "prod" else raw, stack)


def test_the_example_production_stack_asks_for_every_image_digest():
    raw = {k.split(":", 1)[1]: v for k, v in stack_settings(ROOT / "Pulumi.prod.yaml")["config"].items()}
    with pytest.raises(SettingsError) as error:
        load_settings(raw, "prod")
    assert {p.split(" = ")[0] for p in error.value.problems} == {
        f"pgpool-k8s:{key}" for key in ("pgpoolImage", "exporterImage", "postgresClientImage", "prometheusImage")}
    assert all("pins every image by digest" in p for p in error.value.problems)


def test_typos_are_caught_with_a_suggestion():
    assert unknown_keys({"numInitChilden": "3"}) == [
        "pgpool-k8s:numInitChilden = '3': unknown setting; did you mean numInitChildren?"]


@pytest.mark.parametrize("key, value", [
    ("dbpassword", "Typed-Secret-1"),  # a secret stored under a mistyped key
    ("tlskey", "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMG\n-----END PRIVATE KEY-----\n"),
])
def test_a_mistyped_secret_key_is_named_and_its_value_never_shown(key: str, value: str):
    for secret_keys in ({key}, set()):  # stored encrypted, or by mistake in plain text
        [problem] = unknown_keys({key: value}, secret_keys)
        assert problem.startswith(f"pgpool-k8s:{key} (value not shown): unknown setting; did you mean ")
        assert "MIGHAgEAMBMG" not in problem and "Typed-Secret-1" not in problem


def secrets_for(settings, **overrides):
    values = {"poolKey": "k" * 40, "dbPassword": "db", "pcpPassword": "pcp", "monitorPassword": "mon",
              "userPasswords": {u: f"pw-{u}" for u in settings.app_users},
              "tlsCert": "-----BEGIN CERTIFICATE-----\nx\n", "tlsKey": "-----BEGIN PRIVATE KEY-----\nx\n"}
    values.update(overrides)
    return lambda key: values.get(key)


def test_missing_secret_names_the_key_and_the_command():
    settings = load_settings({}, "dev")
    with pytest.raises(SettingsError) as error:
        load_secrets(settings, secrets_for(settings, poolKey=None, userPasswords={}))
    message = str(error.value)
    assert "pgpool-k8s:poolKey is missing: run `make init`" in message
    assert "pulumi config set --secret --path userPasswords.app`" in message


def test_secret_limits():
    settings = load_settings({}, "dev")
    with pytest.raises(SettingsError) as error:
        load_secrets(settings, secrets_for(settings, dbPassword="x" * 129, poolKey="a\nb", tlsCert="nope"))
    message = str(error.value)
    assert "pgpool-k8s:dbPassword is 129 bytes: at most 79 work" in message
    assert "pgpool-k8s:poolKey contains a line break" in message
    assert "pgpool-k8s:tlsCert is not a PEM certificate" in message
    assert "x" * 129 not in message  # the value itself never reaches the message


def test_login_passwords_must_survive_saslprep_unchanged_with_scram():
    """libpq and PostgreSQL run SCRAM passwords through SASLprep, Pgpool-II does not (src/auth/auth-scram.c
    hashes the raw password): tests/dataplane/test_password_rotation.py shows such a login fail."""
    settings = load_settings({}, "dev")
    with pytest.raises(SettingsError) as error:
        load_secrets(settings, secrets_for(settings, monitorPassword="no\u00a0break",
                                           userPasswords={"app": "soft\u00adhyphen"}, dbPassword="ﬁ"))
    message = str(error.value)
    for key in ("monitorPassword", "userPasswords.app", "dbPassword"):
        assert f"pgpool-k8s:{key} contains characters SCRAM's SASLprep changes" in message
    assert "\u00a0" not in message and "\u00ad" not in message  # never the value
    load_secrets(settings, secrets_for(settings, monitorPassword="café"))  # SASLprep leaves it as is
    md5 = load_settings({"passwordEncryption": "md5"}, "dev")
    load_secrets(md5, secrets_for(md5, monitorPassword="no\u00a0break"))  # md5 hashes the raw password


def test_kubedb_superuser_password_fits_the_exporters_connection_string():
    settings = load_settings({}, "dev")
    with pytest.raises(SettingsError) as error:
        load_secrets(settings, secrets_for(settings, dbPassword="with space"))
    assert "pgpool-k8s:dbPassword contains a space or a comma" in str(error.value)
    load_secrets(load_settings({"postgresMonitoring": "false"}, "dev"), secrets_for(settings, dbPassword="with space"))


@pytest.mark.parametrize("password", ["two words", "tab\there", "star*", "what?", "[abc]", "-dash", "-n",
                                      "x;touch${IFS}/tmp/pwned;#_USERNAME=y"])
def test_env_mode_refuses_passwords_the_entrypoint_would_mangle(password):
    # tests/test_pgpool_config.py shows the entrypoint's own lines registering another password for these.
    settings = load_settings({"pgpoolMode": "env"}, "dev")
    keys = {"monitorPassword": password, "pcpPassword": password, "userPasswords": {"app": password}}
    with pytest.raises(SettingsError) as error:
        load_secrets(settings, secrets_for(settings, **keys))
    for key in ("monitorPassword", "pcpPassword", "userPasswords.app"):
        assert f"pgpool-k8s:{key} contains whitespace or one of * ? [, starts with '-', or contains '_USERNAME='" \
            in str(error.value)
    assert password not in str(error.value)
    # configmap mode renders pool_passwd itself and takes them all.
    configmap = load_settings({}, "dev")
    load_secrets(configmap, secrets_for(configmap, **keys))


def test_secrets_in_order_superuser_monitor_apps():
    settings = load_settings({"users": '["app", "reporting"]'}, "dev")
    secrets = load_secrets(settings, secrets_for(settings))
    assert [u.name for u in secrets.users] == ["postgres", "monitor", "app", "reporting"]
    assert "pw-app" not in repr(secrets)


@pytest.mark.parametrize("operator, secret, requirement", [
    ("cloudnativepg", "pg-superuser", "set spec.enableSuperuserAccess: true on the Cluster"),
    ("crunchy", "pg-pguser-postgres", "list the superuser in the PostgresCluster's spec.users (- name: postgres)"),
    ("zalando", "postgres.pg.credentials.postgresql.acid.zalan.do", None),
])
def test_missing_operator_superuser_password_names_its_secret_and_what_to_enable(operator, secret, requirement):
    settings = load_settings({"operator": operator, "users": '["orders"]'}, "dev")
    with pytest.raises(SettingsError) as error:
        load_secrets(settings, secrets_for(settings, dbPassword=None))
    message = str(error.value)
    assert f"pgpool-k8s:dbPassword is missing: {operator} owns this password. Copy it from the Secret {secret}: " \
           f"kubectl -n pgpool get secret {secret} -o jsonpath=" in message
    assert "| pulumi config set --secret --stack dev dbPassword" in message
    assert (requirement in message) if requirement else "exists only once" not in message


def test_previous_superuser_password_is_only_for_kubedb():
    kubedb = load_settings({}, "dev")
    assert load_secrets(kubedb, secrets_for(kubedb, dbPasswordPrevious="old")).previous_superuser_password == "old"
    assert load_secrets(kubedb, secrets_for(kubedb)).previous_superuser_password == ""
    zalando = load_settings({"operator": "zalando"}, "dev")
    with pytest.raises(SettingsError) as error:
        load_secrets(zalando, secrets_for(zalando, dbPasswordPrevious="old"))
    assert ("pgpool-k8s:dbPasswordPrevious is set but only used with operator kubedb: zalando rotates its own "
            "superuser's password") in str(error.value)
    with pytest.raises(SettingsError) as error:
        load_secrets(kubedb, secrets_for(kubedb, dbPasswordPrevious="a\nb"))
    assert "pgpool-k8s:dbPasswordPrevious contains a line break" in str(error.value)


def test_required_secrets_per_operator_and_mode():
    kubedb = load_settings({}, "dev")
    assert required_secrets(kubedb)["dbPassword"] is True
    zalando_env = load_settings({"operator": "zalando", "pgpoolMode": "env"}, "dev")
    assert "dbPassword" not in required_secrets(zalando_env)
    zalando_conf = load_settings({"operator": "zalando"}, "dev")
    assert required_secrets(zalando_conf)["dbPassword"] is False  # the operator owns it: copy, don't invent
    assert "tlsCert" not in required_secrets(load_settings({"tlsSecretName": "mine"}, "dev"))
    assert "tlsCert" not in required_secrets(load_settings({"ssl": "false"}, "dev"))


def test_dataclass_defaults_are_the_declared_ones():
    # deletionPolicy has no default of its own: it follows production.
    with pytest.raises(TypeError, match="deletion_policy"):
        DatabaseSettings()
    assert DatabaseSettings(deletion_policy="Delete").replicas == 3
    assert DatabaseSettings(deletion_policy="Delete").standbys == 2
    assert load_settings({}, "dev").database == DatabaseSettings(deletion_policy="Delete")
    # backendWeight1 has no default of its own: it follows the standbys, so a PgpoolSettings needs one given.
    with pytest.raises(TypeError, match="backend_weight1"):
        PgpoolSettings()
    assert load_settings({}, "dev").pgpool == PgpoolSettings(backend_weight1=2)


def test_query_cache_sizes_read_as_kubernetes_binary_quantities_or_bytes():
    cache = load_settings({"queryCache": "shmem", "queryCacheMaxStaleSeconds": "5", "queryCacheTotalSize": "1Gi",
                           "queryCacheMaxResultSize": "524288", "queryCacheMaxEntries": "5000",
                           "queryCacheUnsafeTables": '["orders"]', "pgpoolMemoryLimit": "2Gi"}, "dev").pgpool.query_cache
    assert (cache.total_bytes, cache.max_result_bytes, cache.max_entries) == (1024 ** 3, 512 * 1024, 5000)
    assert cache.enabled and cache.unsafe_tables == ("orders",)
    assert not load_settings({}, "dev").pgpool.query_cache.enabled
