#!/usr/bin/env python3
"""Stack initialisation: validate a stack's config and generate its missing secrets, once.

Random values (pool key, passwords, the self-signed certificate) are stored as encrypted stack
config with `pulumi config set --secret`, the value passed on stdin so it never shows in a
process list or a log. Existing values are never replaced, so the pool key stays stable.

    scripts/init_stack.py [--stack NAME]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components import generated_secrets  # noqa: E402
from components.backends import backends_for  # noqa: E402
from components.settings import (  # noqa: E402
    PROJECT,
    SettingsError,
    load_settings,
    required_secrets,
    unknown_keys,
)


def pulumi(*args: str, stdin: str | None = None) -> str:
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


def present(secret: dict, key: str) -> bool:
    path, _, leaf = key.partition(".")
    value = secret.get(path)
    if leaf:
        if isinstance(value, str):
            value = json.loads(value)
        return isinstance(value, dict) and bool(value.get(leaf))
    return bool(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev")
    stack = parser.parse_args().stack

    plain, secret = stack_config(stack)
    try:
        problems = unknown_keys({**plain, **secret})
        if problems:
            raise SettingsError(problems)
        settings = load_settings(plain, stack)
    except SettingsError as error:
        print(error, file=sys.stderr)
        return 1

    missing = {k: generatable for k, generatable in required_secrets(settings).items() if not present(secret, k)}
    foreign = [k for k, generatable in missing.items() if not generatable]
    if foreign:
        owner = backends_for(settings.database).credentials_secret
        for key in foreign:
            print(f"{PROJECT}:{key} is missing and cannot be generated: {settings.database.operator} owns this "
                  f"password. Copy it from the Secret {owner}: kubectl -n {settings.namespace} get secret {owner} "
                  f"-o jsonpath='{{.data.password}}' | base64 -d | pulumi config set --secret {key}",
                  file=sys.stderr)
        return 1

    values = generated_secrets.generate(list(missing), settings.pgpool.name, settings.namespace)
    for key, value in values.items():
        path_flag = ["--path"] if "." in key else []
        pulumi("config", "set", "--secret", *path_flag, "--stack", stack, key, stdin=value)
        print(f"[init] generated {PROJECT}:{key}")
    if not values:
        print(f"[init] stack {stack}: every secret is already set")
    return 0


if __name__ == "__main__":
    sys.exit(main())
