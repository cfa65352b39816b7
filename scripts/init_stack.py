#!/usr/bin/env python3
"""Stack initialisation: validate a stack's config and generate its missing secrets, once.

Random values (pool key, passwords, the self-signed certificate) are stored as encrypted stack
config with `pulumi config set --secret`, the value passed on stdin so it never shows in a
process list or a log. Existing values are never replaced, so the pool key stays stable; a secret
stored in plaintext, or half of the certificate pair, is reported instead of being overwritten.
`--rotate KEY...` replaces existing secrets with new random values; the next `pulumi up` sets them in
PostgreSQL before Pgpool-II rolls (README, "Password rotation").

    scripts/init_stack.py [--stack NAME] [--rotate KEY...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components import generated_secrets  # noqa: E402
from components.settings import PROJECT, SECRET_KEYS, SettingsError, StackSettings, load_settings, unknown_keys  # noqa: E402
from components.stack_secrets import operator_password_fix, required_secrets  # noqa: E402

PREVIOUS_SUPERUSER_PASSWORD = "dbPasswordPrevious"


def pulumi(*args: str, stdin: str | None = None) -> str:
    if shutil.which("pulumi") is None:
        raise SystemExit("scripts/init_stack.py needs the Pulumi CLI on PATH (see README, 'The two commands')")
    result = subprocess.run(["pulumi", *args, "--cwd", str(ROOT)], input=stdin, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"pulumi {args[0]} {args[1] if len(args) > 1 else ''} failed:\n{result.stderr.strip()}")
    return result.stdout


def stack_config(stack: str) -> tuple[dict, dict]:
    """Plain settings and secret values of the stack, keys without the project prefix."""
    entries = json.loads(pulumi("config", "--json", "--show-secrets", "--stack", stack))
    plain, secret = {}, {}
    for full_key, entry in entries.items():
        namespace, _, key = full_key.partition(":")
        if namespace != PROJECT:
            continue
        value = entry.get("objectValue", entry.get("value"))
        (secret if entry.get("secret") else plain)[key] = value
    return plain, secret


def present(values: dict, key: str) -> bool:
    path, _, leaf = key.partition(".")
    value = values.get(path)
    if leaf:
        if isinstance(value, str):
            value = json.loads(value)
        return isinstance(value, dict) and bool(value.get(leaf))
    return bool(value)


def stored_in_plaintext(stack: str, plain: dict, secret: dict, key: str) -> bool:
    """Whether a set secret key is unencrypted in the stack file. The JSON listing flags a whole
    object secret when any leaf is, so a userPasswords leaf is asked about on its own."""
    if present(plain, key):
        return True
    if "." not in key or not present(secret, key):
        return False
    return not json.loads(pulumi("config", "get", "--path", "--json", "--stack", stack, key))["secret"]


def set_secret(stack: str, key: str, value: str) -> None:
    # --raw: without it the CLI strips the trailing newline of a value read from stdin (a PEM's).
    path_flag = ["--path"] if "." in key else []
    pulumi("config", "set", "--secret", "--raw", *path_flag, "--stack", stack, key, stdin=value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--rotate", nargs="+", default=[], metavar="KEY",
                        help="replace these secrets with new random values (dbPassword keeps the old one in "
                             f"{PREVIOUS_SUPERUSER_PASSWORD} for the Job that logs in to change it)")
    arguments = parser.parse_args()
    stack = arguments.stack

    plain, secret = stack_config(stack)
    try:
        problems = unknown_keys({**plain, **secret}, secret_keys=set(secret))
        if problems:
            raise SettingsError(problems)
        settings = load_settings(plain, stack)
    except SettingsError as error:
        print(error, file=sys.stderr)
        return 1

    required = required_secrets(settings)
    problems = []
    # Every secret that is set must be encrypted, needed or not (dbPasswordPrevious is not required).
    optional = [key for key in SECRET_KEYS if key not in required and (present(plain, key) or present(secret, key))]
    for key in [*required, *optional]:
        if stored_in_plaintext(stack, plain, secret, key):
            path_flag = " --path" if "." in key else ""
            problems.append(f"{PROJECT}:{key} is stored unencrypted in Pulumi.{stack}.yaml: set it again with "
                            f"`pulumi config set --secret{path_flag} --stack {stack} {key}` (value on stdin)")
    missing = {k: generatable for k, generatable in required.items()
               if not present(secret, k) and not present(plain, k)}
    if len({"tlsCert", "tlsKey"} & set(missing)) == 1:
        have, lacking = ("tlsKey", "tlsCert") if "tlsCert" in missing else ("tlsCert", "tlsKey")
        problems.append(f"{PROJECT}:{have} is set but {PROJECT}:{lacking} is missing, and a new one would not "
                        f"match it: set {lacking} from the same pair (`pulumi config set --secret --stack {stack} "
                        f"{lacking} < file.pem`), or remove {have} (`pulumi config rm --stack {stack} {have}`) "
                        "to generate a new pair")
    for key in [k for k, generatable in missing.items() if not generatable]:
        problems.append(f"{PROJECT}:{key} is missing and cannot be generated: {operator_password_fix(settings)}")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1

    values = generated_secrets.generate(list(missing), settings.pgpool.name, settings.namespace)
    for key, value in values.items():
        set_secret(stack, key, value)
        print(f"[init] generated {PROJECT}:{key}")
    if arguments.rotate:
        return rotate(settings, required, secret, arguments.rotate)
    if not values:
        print(f"[init] stack {stack}: every secret is already set")
    return 0


def rotate(settings: StackSettings, required: dict[str, bool], secret: dict, keys: list[str]) -> int:
    """New random values for existing secrets; dbPassword's old value is kept for the rotation Job."""
    stack, problems = settings.stack, []
    for key in keys:
        if key not in required:
            problems.append(f"{PROJECT}:{key} is not a secret this stack uses; rotate one of {', '.join(required)}")
        elif not required[key]:
            problems.append(f"{PROJECT}:{key} is not this stack's to rotate: rotate it in {settings.database.operator}, "
                            f"then copy it: {operator_password_fix(settings)}")
        elif not present(secret, key):
            problems.append(f"{PROJECT}:{key} is not set yet: run scripts/init_stack.py --stack {stack} to generate it")
    if "dbPassword" in keys and present(secret, PREVIOUS_SUPERUSER_PASSWORD):
        problems.append(f"{PROJECT}:{PREVIOUS_SUPERUSER_PASSWORD} is still set from the last rotation of dbPassword: run "
                        f"`pulumi up` to finish that one, then `pulumi config rm --stack {stack} "
                        f"{PREVIOUS_SUPERUSER_PASSWORD}`, then rotate again")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    pairs = {"tlsCert": "tlsKey", "tlsKey": "tlsCert"}  # a certificate and its key change together
    wanted = list(dict.fromkeys(keys + [pairs[k] for k in keys if k in pairs]))
    values = generated_secrets.generate(wanted, settings.pgpool.name, settings.namespace)
    if "dbPassword" in values:
        set_secret(stack, PREVIOUS_SUPERUSER_PASSWORD, secret["dbPassword"])
    for key, value in values.items():
        set_secret(stack, key, value)
        print(f"[init] rotated {PROJECT}:{key}")
    print(f"[init] run `pulumi up --stack {stack}`: its Job sets the new passwords in PostgreSQL before Pgpool-II rolls")
    return 0


if __name__ == "__main__":
    sys.exit(main())
