"""Pgpool-II runs the program's own files, and breaks when one of them is broken.

The first tests prove the local copy is the program's output with only the named keys
rewritten. The damage tests then start a Pgpool-II on a copy with one entry broken, as the
issue's list of ways a config that looks right fails at the first login, and expect exactly
the affected login to fail while an unaffected one still works (so the failure is the damage,
not a broken setup).
"""

from __future__ import annotations

import stat
from typing import Callable

import psycopg
import pytest

from components.pgpool_config import pool_passwd_entry
from tests.dataplane.local_stack import LocalDevStack, StackPgpool
from tests.dataplane.stack_files import (
    CONF_LINE,
    LOCAL_PGPOOL_KEYS,
    DevStack,
    changed_lines,
    check_local_copy,
    local_files,
)

UNCHANGED_FILES = ("pool_hba.conf", "pool_passwd", ".pgpoolkey", "pcp.conf", "tls.crt", "tls.key")
CONFIG_MAP_FILES = ("pgpool.conf", "pool_hba.conf")


def test_local_pgpool_conf_differs_only_in_the_named_keys(stack: DevStack, pgpool: StackPgpool) -> None:
    generated = stack.config_files["pgpool.conf"]
    running = pgpool.files["pgpool.conf"].read_text()
    changed = {CONF_LINE.match(before)["name"] for before, _ in changed_lines(generated, running)}
    assert changed and changed <= set(LOCAL_PGPOOL_KEYS)
    check_local_copy(stack, {name: path.read_text() for name, path in pgpool.files.items()})


def test_other_files_are_the_programs_bytes(stack: DevStack, pgpool: StackPgpool) -> None:
    generated = {**stack.config_files, **stack.secret_files}
    for name in UNCHANGED_FILES:
        assert pgpool.files[name].read_bytes() == generated[name].encode(), name


def test_pgpool_reads_its_secrets_as_0600_copies_it_owns(stack: DevStack, pgpool: StackPgpool) -> None:
    """The init step's copies (the Secret volume's files are root's, group-readable for the fsGroup,
    which pgpool refuses for its keys); the ConfigMap's files stay read-only."""
    for name, path in pgpool.files.items():
        info = path.stat()
        if name in CONFIG_MAP_FILES:
            assert stat.S_IMODE(info.st_mode) == 0o444, name
        else:
            assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o600, pgpool.pod.identity.uid), name


def test_pgpool_runs_the_deployments_command_on_these_files(stack: DevStack, pgpool: StackPgpool) -> None:
    command = pgpool.pod.command("pgpool", stack.pgpool_command)
    assert pgpool.argv[-len(command):] == command  # after chroot's own arguments, for an install in a root
    assert [arg for arg in command if arg.startswith("-")] == [arg for arg in stack.pgpool_command
                                                               if arg.startswith("-")]
    options = dict(zip(command, command[1:]))
    read = {flag: pgpool.pod.host(options[flag]) for flag in ("-f", "-F", "-a", "-k")}
    assert read == {flag: pgpool.files[name] for flag, name in
                    (("-f", "pgpool.conf"), ("-F", "pcp.conf"), ("-a", "pool_hba.conf"), ("-k", ".pgpoolkey"))}
    assert pgpool.running


@pytest.mark.parametrize(("name", "old", "new"), [
    ("pgpool.conf", "num_init_children = ", "num_init_children = 1"),
    ("pgpool.conf", "ssl = on\n", "ssl = on\nssl_ca_cert = '/tmp/ca.crt'\n"),  # an added line
    ("pool_hba.conf", "scram-sha-256", "trust"),
    ("pcppass", ":pcp:", ":pcp2:"),
    ("pool_passwd", "\n", "\r\n"),
])
def test_the_local_copy_check_catches_any_other_change(name: str, old: str, new: str, stack: DevStack,
                                                       local: LocalDevStack) -> None:
    files = local_files(stack, *local.pod())
    assert old in files[name]
    files[name] = files[name].replace(old, new, 1)
    with pytest.raises(AssertionError, match=name):
        check_local_copy(stack, files)


# --- one entry broken on purpose -----------------------------------------------------------


def _replace_line(files: dict[str, str], name: str, old: str, new: str) -> None:
    assert old in files[name], f"{name} has no {old!r} to damage"
    files[name] = files[name].replace(old, new)


def wrong_aes_entry(stack: DevStack) -> Callable[[dict[str, str]], None]:
    """The app user's AES entry encrypts another password (right key, wrong secret)."""
    key = stack.secret_files[".pgpoolkey"].rstrip("\n")
    user = stack.app_user
    good = pool_passwd_entry(user, stack.passwords[user], "scram-sha-256", key)
    bad = pool_passwd_entry(user, stack.passwords[user] + "-old", "scram-sha-256", key)
    return lambda files: _replace_line(files, "pool_passwd", good, bad)


def other_pool_key(stack: DevStack) -> Callable[[dict[str, str]], None]:
    """A new .pgpoolkey, as the image writes at every start: no AES entry decrypts any more."""
    return lambda files: files.update({".pgpoolkey": "a-key-generated-at-pod-start\n"})


def hba_without_this_network(stack: DevStack) -> Callable[[dict[str, str]], None]:
    """The IPv4 hostssl line admits 10.0.0.0/8 only, which 127.0.0.1 is not in."""
    return lambda files: _replace_line(files, "pool_hba.conf", "0.0.0.0/0", "10.0.0.0/8")


def missing_certificate(stack: DevStack) -> Callable[[dict[str, str]], None]:
    """ssl_cert names a file that is not there (a wrong TLS mount path)."""
    return lambda files: _replace_line(files, "pgpool.conf", "/tls.crt'", "/tls/tls.crt'")


ALL = ("superuser", "monitor", "app")
DAMAGES = {
    # damage: (roles whose TLS login must now fail, with what error, whether the readiness probe,
    # the monitor's own TLS login, still passes)
    "wrong AES entry": (wrong_aes_entry, ("app",), "password does not exist in backend", True),
    "pool key mismatch": (other_pool_key, ALL, "unable to decrypt password from pool_passwd", False),
    "hba line": (hba_without_this_network, ALL, "no pool_hba.conf entry", False),
    # pgpool starts without TLS when it cannot load the certificate: the hostssl-only
    # pool_hba.conf then refuses every TCP client, and the probe, a TLS client too, fails.
    "TLS certificate path": (missing_certificate, ALL, "server does not support SSL", False),
}


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda d: d.replace(" ", "-"))
def test_a_broken_entry_fails_the_login(damage: str, stack: DevStack, local: LocalDevStack) -> None:
    make_damage, refused_roles, error, probe_passes = DAMAGES[damage]
    broken = local.pgpool(f"broken-{damage.replace(' ', '-').lower()}", edit=make_damage(stack))
    refused = {stack.user(role) for role in refused_roles}
    try:
        for user, password in stack.passwords.items():
            if user in refused:
                with pytest.raises(psycopg.OperationalError, match=error):
                    broken.endpoint.connect(user, password).close()
            else:
                with broken.endpoint.connect(user, password) as conn:
                    assert conn.execute("SELECT 1").fetchone() == (1,)
        # The readiness probe: a pod with any of these faults must not become Ready.
        probe = broken.probe(stack.readiness_command)
        assert (probe.returncode == 0) is probe_passes, probe.stderr
    finally:
        broken.stop()
