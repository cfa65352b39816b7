"""The stack's secrets: which it needs, read and checked against what Pgpool-II really accepts.

Every user has a role: the superuser (the database operator's, or with KubeDB the stack's), the
monitor user (the exporter and the readiness probe), the application users, and the PCP user. They
are kept by role, never by position. No Pulumi import.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from components.config_schema import PROJECT, SettingsError
from components.scram import saslprep
from components.settings import (
    ENTRYPOINT_MANGLES,
    MAX_AES_PASSWORD_BYTES,
    MAX_NAME_BYTES,
    MAX_POOL_KEY_BYTES,
    StackSettings,
)

INIT = "run `make init` (scripts/init_stack.py) to generate it, or `pulumi config set --secret"
PEM_LIMIT = 1 << 20


@dataclass(frozen=True)
class Credential:
    """A PostgreSQL (or PCP) user and its password, known to the program."""

    name: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class PgpoolSecrets:
    """Everything secret Pgpool-II needs, by role; kept out of repr so it never reaches a log."""

    pool_key: str = field(repr=False)
    superuser: Credential = field(repr=False)
    """Its password is empty when the operator's Secret supplies it at pod start (env mode)."""
    monitor: Credential = field(repr=False)
    apps: tuple[Credential, ...] = field(repr=False)
    pcp: Credential = field(repr=False)
    tls_cert: str = field(default="", repr=False)
    tls_key: str = field(default="", repr=False)
    previous_superuser_password: str = field(default="", repr=False)
    """dbPasswordPrevious: what PostgreSQL still has while a KubeDB superuser password is rotated; empty otherwise."""

    @property
    def users(self) -> tuple[Credential, ...]:
        """Every user clients may log in as (the pool_passwd entries): superuser, monitor, applications."""
        return (self.superuser, self.monitor, *self.apps)

    @property
    def stack_roles(self) -> tuple[Credential, ...]:
        """The roles the stack creates and keeps a Secret for: the monitor and the application users (the
        superuser's Secret is the database operator's)."""
        return (self.monitor, *self.apps)


def superuser_password_known(settings: StackSettings) -> bool:
    """Whether the program needs the superuser password itself.

    The stack's own database (KubeDB) has the stack's password. For the other operators the operator
    owns the password: env mode reads it from their Secret at pod start, while configmap mode must
    render its pool_passwd entry and so needs a copy in stack config.
    """
    return settings.database.operator_facts.created_by_stack or settings.pgpool.mode == "configmap"


def required_secrets(settings: StackSettings) -> dict[str, bool]:
    """Secret config keys this stack needs, each mapped to whether it may be generated.

    userPasswords.<user> stands for one entry of the secret object userPasswords.
    """
    keys = {"pcpPassword": True, "monitorPassword": True}
    if settings.pgpool.mode == "configmap":  # in env mode the image makes its own key at each start
        keys["poolKey"] = True
    if superuser_password_known(settings):
        keys["dbPassword"] = settings.database.operator_facts.created_by_stack
    keys.update({f"userPasswords.{u}": True for u in settings.app_users})
    if settings.pgpool.ssl and not settings.pgpool.tls_secret_name:
        keys.update({"tlsCert": True, "tlsKey": True})
    return keys


class _SecretReader:
    """Reads secrets through `secret(key)`, recording every problem without ever showing a value."""

    def __init__(self, settings: StackSettings, secret: Callable[[str], Any]):
        self.settings, self.secret = settings, secret
        self.problems: list[str] = []
        self.scram = settings.pgpool.password_encryption == "scram-sha-256"
        self.password_limit = MAX_AES_PASSWORD_BYTES if self.scram else MAX_NAME_BYTES

    def fail(self, key: str, why: str) -> None:
        self.problems.append(f"{PROJECT}:{key} {why}")

    def need(self, key: str, limit: int | None = None, multiline: bool = False, optional: bool = False,
             login: bool = False) -> str:
        """The value of `key` (user.leaf for an entry of an object), checked; "" when missing."""
        path, _, leaf = key.partition(".")
        value = self.secret(path)
        if leaf:
            value = value.get(leaf) if isinstance(value, Mapping) else None
        if not value:
            if not optional:
                self.fail(key, f"is missing: {self.missing_fix(key, leaf)}")
            return ""
        value = str(value)
        self.check(key, value, self.password_limit if limit is None else limit, multiline, login)
        return value

    def missing_fix(self, key: str, leaf: str) -> str:
        if key == "dbPassword" and not self.settings.database.operator_facts.created_by_stack:
            return operator_password_fix(self.settings)
        return f"{INIT}{' --path' if leaf else ''} {key}`"

    def check(self, key: str, value: str, limit: int, multiline: bool, login: bool) -> None:
        size = len(value.encode())
        if size > limit:
            why = ("its AES entry would outgrow what pgpool reads of pool_passwd"
                   if limit == MAX_AES_PASSWORD_BYTES else "pgpool reads no more")
            self.fail(key, f"is {size} bytes: at most {limit} work ({why}); set a shorter one")
        if "\x00" in value:
            self.fail(key, "contains a NUL byte: set one without it")
        if not multiline and ("\n" in value or "\r" in value):
            self.fail(key, "contains a line break: every file and variable it reaches is line-based; set one without it")
        if login and self.scram and saslprep(value) != value:
            self.fail(key, "contains characters SCRAM's SASLprep changes (non-ASCII spaces, soft hyphens, "
                      "compatibility forms): clients and PostgreSQL prepare the password, Pgpool-II does not, so "
                      "every login through it fails; set one without them (ASCII never changes)")
        if (self.settings.pgpool.mode == "env" and not multiline and key != "poolKey"
                and ENTRYPOINT_MANGLES.search(value)):
            self.fail(key, "contains whitespace or one of * ? [, starts with '-', or contains '_USERNAME=' (value not "
                      "shown): in pgpoolMode env the image's entrypoint passes passwords to pg_enc/pg_md5 unquoted "
                      "and would register a different one, and evaluates part of any environment line with "
                      "'_USERNAME='; set one without them, or use pgpoolMode configmap")


def load_secrets(settings: StackSettings, secret: Callable[[str], Any]) -> PgpoolSecrets:
    """Read the stack's secrets through `secret(key)` (None when absent) and validate them."""
    reader = _SecretReader(settings, secret)
    pool_key = reader.need("poolKey", MAX_POOL_KEY_BYTES) if settings.pgpool.mode == "configmap" else ""
    tls_cert, tls_key = _tls_pair(reader)
    secrets = PgpoolSecrets(
        pool_key=pool_key,
        superuser=_superuser(reader),
        monitor=Credential(settings.monitor_user, reader.need("monitorPassword", login=True)),
        apps=tuple(Credential(u, reader.need(f"userPasswords.{u}", login=True)) for u in settings.app_users),
        pcp=Credential(settings.pcp_user, reader.need("pcpPassword", MAX_NAME_BYTES)),
        tls_cert=tls_cert, tls_key=tls_key,
        previous_superuser_password=_previous_superuser_password(reader),
    )
    if reader.problems:
        raise SettingsError(reader.problems)
    return secrets


def _superuser(reader: _SecretReader) -> Credential:
    db = reader.settings.database
    password = reader.need("dbPassword", login=True) if superuser_password_known(reader.settings) else ""
    if db.exporter_service and re.search(r"[\s,]", password):
        reader.fail("dbPassword", "contains a space or a comma: KubeDB passes it to postgres_exporter in a "
                    "connection string that these break (and then logs whole); set one without them")
    return Credential(db.superuser, password)


def _previous_superuser_password(reader: _SecretReader) -> str:
    previous = reader.need("dbPasswordPrevious", optional=True, login=True)
    db = reader.settings.database
    if previous and not db.operator_facts.created_by_stack:
        reader.fail("dbPasswordPrevious", f"is set but only used with operator kubedb: {db.operator} rotates its own "
                    "superuser's password; remove it (`pulumi config rm dbPasswordPrevious`)")
    return previous


def _tls_pair(reader: _SecretReader) -> tuple[str, str]:
    pgpool = reader.settings.pgpool
    if not pgpool.ssl or pgpool.tls_secret_name:
        return "", ""
    cert, key = reader.need("tlsCert", PEM_LIMIT, multiline=True), reader.need("tlsKey", PEM_LIMIT, multiline=True)
    if cert and "-----BEGIN CERTIFICATE-----" not in cert:
        reader.fail("tlsCert", f"is not a PEM certificate: {INIT} tlsCert` with a PEM file")
    if key and "PRIVATE KEY-----" not in key:
        reader.fail("tlsKey", f"is not a PEM private key: {INIT} tlsKey` with a PEM file")
    return cert, key


def operator_password_fix(settings: StackSettings) -> str:
    """How to copy the superuser's password out of an operator's own Secret into dbPassword."""
    db = settings.database
    backends = db.backends
    secret, key = backends.credentials_secret, backends.password_key
    fix = (f"{db.operator} owns this password. Copy it from the Secret {secret}: kubectl -n {settings.namespace} "
           f"get secret {secret} -o jsonpath='{{.data.{key}}}' | base64 -d | pulumi config set --secret "
           f"--stack {settings.stack} dbPassword")
    requirement = db.operator_facts.enable_first
    return fix + (f" (that Secret exists only once you {requirement})" if requirement else "")
