"""scripts/init_stack.py against the real Pulumi CLI, the one `make up` uses (scripts/env.sh): each test
initialises a copy of the project on a local file backend with a passphrase, runs the script, and reads
back what the CLI stored.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from components.settings import PROJECT, load_settings
from components.stack_secrets import load_secrets
from tests.built_tools import engine_environment
from tests.program_run import stack_settings

ROOT = Path(__file__).resolve().parent.parent
STACK = "dev"
GENERATED_DEV_KEYS = {"poolKey", "pcpPassword", "monitorPassword", "dbPassword", "userPasswords.app", "tlsCert",
                      "tlsKey"}
DEV_SERVICE_NAMES = {"pgpool", "pgpool.pgpool-dev", "pgpool.pgpool-dev.svc", "pgpool.pgpool-dev.svc.cluster.local"}


@pytest.fixture(scope="session")
def pulumi_cli() -> Path:
    """The Pulumi CLI scripts/env.sh chooses (an installed one, or scripts/bootstrap.sh's build)."""
    cli = Path(engine_environment()["PGPOOL_K8S_PULUMI"])
    if not os.access(cli, os.X_OK):
        pytest.fail(f"{cli} is missing: run scripts/bootstrap.sh")
    return cli


@dataclass
class Project:
    """A copy of the project with stack dev created on its own backend."""

    dir: Path
    env: dict[str, str]

    @property
    def stack_file(self) -> Path:
        return self.dir / f"Pulumi.{STACK}.yaml"

    def pulumi(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(["pulumi", *args], cwd=self.dir, env=self.env, input=stdin, capture_output=True,
                                text=True)
        assert result.returncode == 0, f"pulumi {' '.join(args)} failed:\n{result.stderr}"
        return result.stdout

    def init(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "scripts/init_stack.py", "--stack", STACK, *args], cwd=self.dir,
                              env=self.env, capture_output=True, text=True)

    def config(self) -> dict[str, dict]:
        """Every config entry of the stack, secrets decrypted, keys without the project prefix."""
        entries = json.loads(self.pulumi("config", "--json", "--show-secrets", "--stack", STACK))
        return {key.removeprefix(f"{PROJECT}:"): entry for key, entry in entries.items()}

    def secrets(self) -> dict[str, str]:
        """Decrypted secret values, userPasswords flattened to userPasswords.<user>."""
        values = {}
        for key, entry in self.config().items():
            if not entry["secret"]:
                continue
            if key == "userPasswords":
                values.update({f"userPasswords.{user}": v for user, v in entry["objectValue"].items()})
            else:
                values[key] = entry["value"]
        return values

    def stored(self) -> dict:
        """Pulumi.dev.yaml's config section as written, keys without the project prefix."""
        config = yaml.safe_load(self.stack_file.read_text())["config"]
        return {key.removeprefix(f"{PROJECT}:"): value for key, value in config.items()}


@pytest.fixture
def project(tmp_path: Path, pulumi_cli: Path) -> Project:
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    stack_file = f"Pulumi.{STACK}.yaml"
    (root / stack_file).write_text(yaml.safe_dump(stack_settings(ROOT / stack_file), sort_keys=False))
    for name in ("components", "policies"):  # the settings read the release table of the policy pack
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__", ".venv"))
    (root / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "init_stack.py", root / "scripts" / "init_stack.py")
    (tmp_path / "backend").mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PULUMI_", "KUBECONFIG"))}
    env.update(
        PATH=f"{pulumi_cli.parent}{os.pathsep}{os.environ['PATH']}",
        PULUMI_HOME=str(tmp_path / "pulumi-home"),
        PULUMI_BACKEND_URL=(tmp_path / "backend").as_uri(),
        PULUMI_CONFIG_PASSPHRASE="init-stack test passphrase",
        PULUMI_SKIP_UPDATE_CHECK="true",
        PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true",
    )
    project = Project(root, env)
    project.pulumi("login")
    project.pulumi("stack", "init", STACK)
    return project


def assert_encrypted(project: Project, keys: set[str]) -> None:
    stored = project.stored()
    for key in keys:
        path, _, leaf = key.partition(".")
        entry = stored[path][leaf] if leaf else stored[path]
        assert set(entry) == {"secure"} and entry["secure"].startswith("v1:"), f"{key} is stored as {entry!r}"


def assert_nowhere(values: dict[str, str], *texts: str) -> None:
    """No secret value, nor any line of a PEM body, shows up in the given texts."""
    for key, value in values.items():
        for piece in [line for line in value.splitlines() if not line.startswith("-----")] or [value]:
            for text in texts:
                assert piece not in text, f"the value of {key} appears in plaintext"


def generated_keys(stdout: str) -> set[str]:
    prefix = f"[init] generated {PROJECT}:"
    return {line.removeprefix(prefix) for line in stdout.splitlines() if line.startswith(prefix)}


def test_generates_every_secret_encrypted_and_never_shows_it(project: Project):
    before = project.stored()
    result = project.init()

    assert result.returncode == 0, result.stderr
    assert generated_keys(result.stdout) == GENERATED_DEV_KEYS
    secrets = project.secrets()
    assert set(secrets) == GENERATED_DEV_KEYS
    assert_encrypted(project, GENERATED_DEV_KEYS)
    assert_nowhere(secrets, project.stack_file.read_text(), result.stdout, result.stderr)
    stored = project.stored()
    assert {key: stored[key] for key in before} == before, "settings of the stack file changed"


def test_generated_values_satisfy_the_settings_layer(project: Project):
    assert project.init().returncode == 0
    config = project.config()
    plain = {key: entry.get("objectValue", entry["value"]) for key, entry in config.items() if not entry["secret"]}
    settings = load_settings(plain, STACK)

    secrets = load_secrets(settings, lambda key: config[key].get("objectValue", config[key]["value"])
                           if key in config else None)

    assert len(secrets.pool_key) == 64
    assert [user.name for user in secrets.users] == ["postgres", "monitor", "app"]
    assert all(user.password for user in secrets.users) and secrets.pcp.password
    assert len({user.password for user in secrets.users} | {secrets.pcp.password}) == 4
    cert = x509.load_pem_x509_certificate(secrets.tls_cert.encode())
    key = serialization.load_pem_private_key(secrets.tls_key.encode(), password=None)
    # Exact round trip: the stored PEM is what cryptography writes, final newline included.
    assert cert.public_bytes(serialization.Encoding.PEM).decode() == secrets.tls_cert
    assert key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode() == secrets.tls_key
    assert key.public_key() == cert.public_key()
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == DEV_SERVICE_NAMES


def test_second_run_changes_nothing(project: Project):
    assert project.init().returncode == 0
    stack_file = project.stack_file.read_bytes()
    secrets = project.secrets()

    result = project.init()

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"[init] stack {STACK}: every secret is already set"
    assert project.stack_file.read_bytes() == stack_file
    assert project.secrets() == secrets


def test_new_user_gets_only_its_password(project: Project):
    assert project.init().returncode == 0
    secrets = project.secrets()
    project.pulumi("config", "set", "--path", "users[1]", "reporting", "--stack", STACK)

    result = project.init()

    assert result.returncode == 0, result.stderr
    assert generated_keys(result.stdout) == {"userPasswords.reporting"}
    after = project.secrets()
    assert {key: after[key] for key in secrets} == secrets, "an existing secret changed"
    assert set(after) - set(secrets) == {"userPasswords.reporting"}
    assert_encrypted(project, {"userPasswords.app", "userPasswords.reporting"})


@pytest.mark.parametrize("key, value, message", [
    ("numInitChilden", "3", "pgpool-k8s:numInitChilden = '3': unknown setting; did you mean numInitChildren?"),
    ("pgpoolMode", "yaml", "pgpool-k8s:pgpoolMode = 'yaml': use one of configmap, env"),
])
def test_bad_config_is_rejected_before_anything_is_set(project: Project, key: str, value: str, message: str):
    project.pulumi("config", "set", key, value, "--stack", STACK)
    stack_file = project.stack_file.read_bytes()

    result = project.init()

    assert result.returncode == 1
    assert message in result.stderr
    assert project.stack_file.read_bytes() == stack_file
    assert project.secrets() == {}


def test_operator_owned_password_is_asked_for_not_generated(project: Project):
    project.pulumi("config", "set", "operator", "zalando", "--stack", STACK)
    owner = "postgres.pg.credentials.postgresql.acid.zalan.do"

    result = project.init()

    assert result.returncode == 1
    assert (f"pgpool-k8s:dbPassword is missing and cannot be generated: zalando owns this password. Copy it from "
            f"the Secret {owner}: kubectl -n pgpool-dev get secret {owner} -o jsonpath='{{.data.password}}' "
            f"| base64 -d | pulumi config set --secret --stack {STACK} dbPassword") in result.stderr
    assert project.secrets() == {}

    # The command the message gives, value on stdin as base64 -d writes it (no final newline).
    project.pulumi("config", "set", "--secret", "--stack", STACK, "dbPassword", stdin="Operator-Made-Password-1")
    result = project.init()

    assert result.returncode == 0, result.stderr
    assert generated_keys(result.stdout) == GENERATED_DEV_KEYS - {"dbPassword"}
    assert project.secrets()["dbPassword"] == "Operator-Made-Password-1"


@pytest.mark.parametrize("operator, expected", [
    ("kubedb", GENERATED_DEV_KEYS - {"poolKey"}),
    # Another operator's password is read from its Secret at pod start in env mode.
    ("zalando", GENERATED_DEV_KEYS - {"poolKey", "dbPassword"}),
])
def test_env_mode_generates_no_pool_key(project: Project, operator: str, expected: set[str]):
    project.pulumi("config", "set", "pgpoolMode", "env", "--stack", STACK)
    project.pulumi("config", "set", "operator", operator, "--stack", STACK)

    result = project.init()

    assert result.returncode == 0, result.stderr
    assert generated_keys(result.stdout) == expected
    assert set(project.secrets()) == expected


def test_plaintext_secret_is_reported_not_replaced(project: Project):
    assert project.init().returncode == 0
    project.pulumi("config", "set", "--plaintext", "--path", "userPasswords.app", "typed-by-hand", "--stack", STACK)
    stack_file = project.stack_file.read_bytes()

    result = project.init()

    assert result.returncode == 1
    assert ("pgpool-k8s:userPasswords.app is stored unencrypted in Pulumi.dev.yaml: set it again with "
            f"`pulumi config set --secret --path --stack {STACK} userPasswords.app`") in result.stderr
    assert "typed-by-hand" not in result.stderr + result.stdout
    assert project.stack_file.read_bytes() == stack_file


def test_half_a_certificate_pair_is_reported_not_completed(project: Project):
    assert project.init().returncode == 0
    cert = project.secrets()["tlsCert"]
    project.pulumi("config", "rm", "tlsKey", "--stack", STACK)

    result = project.init()

    assert result.returncode == 1
    assert "pgpool-k8s:tlsCert is set but pgpool-k8s:tlsKey is missing, and a new one would not match it" \
        in result.stderr
    assert project.secrets()["tlsCert"] == cert
    assert "tlsKey" not in project.secrets()


def test_cloudnativepg_superuser_is_asked_for_with_what_to_enable(project: Project):
    project.pulumi("config", "set", "operator", "cloudnativepg", "--stack", STACK)
    project.pulumi("config", "set", "--path", "users[0]", "orders", "--stack", STACK)

    result = project.init()

    assert result.returncode == 1
    assert ("pgpool-k8s:dbPassword is missing and cannot be generated: cloudnativepg owns this password. Copy it "
            "from the Secret pg-superuser: kubectl -n pgpool-dev get secret pg-superuser") in result.stderr
    assert "(that Secret exists only once you set spec.enableSuperuserAccess: true on the Cluster" in result.stderr


def rotated_keys(stdout: str) -> set[str]:
    prefix = f"[init] rotated {PROJECT}:"
    return {line.removeprefix(prefix) for line in stdout.splitlines() if line.startswith(prefix)}


def test_rotate_replaces_only_the_named_secrets_and_keeps_the_old_superuser_password(project: Project):
    assert project.init().returncode == 0
    before = project.secrets()

    result = project.init("--rotate", "userPasswords.app", "dbPassword", "tlsKey")

    assert result.returncode == 0, result.stderr
    assert rotated_keys(result.stdout) == {"userPasswords.app", "dbPassword", "tlsKey", "tlsCert"}
    after = project.secrets()
    for key in ("userPasswords.app", "dbPassword", "tlsCert", "tlsKey"):
        assert after[key] != before[key], key
    assert {k: after[k] for k in before if k not in rotated_keys(result.stdout)} == \
        {k: before[k] for k in before if k not in rotated_keys(result.stdout)}
    assert after["dbPasswordPrevious"] == before["dbPassword"]
    assert_encrypted(project, {"dbPasswordPrevious", "dbPassword", "userPasswords.app"})
    assert_nowhere(after, result.stdout, result.stderr)

    # A second rotation before `pulumi up` finished the first would lose the password PostgreSQL has.
    again = project.init("--rotate", "dbPassword")
    assert again.returncode == 1
    assert "pgpool-k8s:dbPasswordPrevious is still set from the last rotation of dbPassword" in again.stderr
    assert project.secrets() == after


@pytest.mark.parametrize("config, key, message", [
    ({}, "poolKeys", "pgpool-k8s:poolKeys is not a secret this stack uses; rotate one of"),
    ({"operator": "zalando"}, "dbPassword", "pgpool-k8s:dbPassword is not this stack's to rotate: rotate it in "
                                             "zalando, then copy it: zalando owns this password."),
])
def test_rotate_refuses_what_it_cannot_rotate(project: Project, config: dict, key: str, message: str):
    for name, value in config.items():
        project.pulumi("config", "set", name, value, "--stack", STACK)
    if config:
        project.pulumi("config", "set", "--secret", "--stack", STACK, "dbPassword", stdin="Operator-Made-Password-1")
    assert project.init().returncode == 0
    before = project.secrets()

    result = project.init("--rotate", key)

    assert result.returncode == 1
    assert message in result.stderr
    assert project.secrets() == before


@pytest.mark.parametrize("key, value", [
    ("dbpassword", "Mistyped-Secret-Value-1"),
    ("tlskey", "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"),
])
def test_a_mistyped_secret_key_is_refused_without_showing_its_value(project: Project, key: str, value: str):
    project.pulumi("config", "set", "--secret", "--raw", "--stack", STACK, key, stdin=value)

    result = project.init()

    assert result.returncode == 1
    assert f"pgpool-k8s:{key} (value not shown): unknown setting; did you mean " in result.stderr
    assert_nowhere({key: value}, result.stdout, result.stderr)


def test_a_previous_superuser_password_in_plain_text_is_reported_not_used(project: Project):
    assert project.init().returncode == 0
    project.pulumi("config", "set", "--plaintext", "--stack", STACK, "dbPasswordPrevious", "typed-in-clear")

    result = project.init()

    assert result.returncode == 1
    assert ("pgpool-k8s:dbPasswordPrevious is stored unencrypted in Pulumi.dev.yaml: set it again with "
            f"`pulumi config set --secret --stack {STACK} dbPasswordPrevious`") in result.stderr
    assert "every secret is already set" not in result.stdout
    assert "typed-in-clear" not in result.stderr + result.stdout
