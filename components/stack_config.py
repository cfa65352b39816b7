"""Stack config as the settings layer reads it: the one place that touches pulumi.Config."""

from __future__ import annotations

import json
from typing import Any

import pulumi
from pulumi.runtime.config import is_config_secret

from components.settings import PROJECT, SECRET_KEYS, SettingsError, StackSettings, load_settings
from components.stack_secrets import PgpoolSecrets, load_secrets


class _ConfigMapping:
    """Read-only mapping over the project's stack config (values as the CLI stores them)."""

    def __init__(self, config: pulumi.Config):
        self._config = config

    def get(self, key: str, default: Any = None) -> Any:
        value = self._config.get(key)
        return default if value is None else value


def read_stack() -> tuple[StackSettings, PgpoolSecrets]:
    """Validated settings and secrets of the current stack; raises SettingsError naming every bad key."""
    config = pulumi.Config(PROJECT)
    settings = load_settings(_ConfigMapping(config), pulumi.get_stack())
    _refuse_unencrypted_secrets(config, settings.stack)
    return settings, load_secrets(settings, lambda key: _secret_value(config, key))


def _refuse_unencrypted_secrets(config: pulumi.Config, stack: str) -> None:
    """A secret key stored in plain text sits readable in the stack file: refuse it, whether this stack
    uses it or not (dbPasswordPrevious is only read during a rotation)."""
    unencrypted = [key for key in SECRET_KEYS
                   if config.get(key) is not None and not is_config_secret(config.full_key(key))]
    if unencrypted:
        raise SettingsError([f"{PROJECT}:{key} is stored unencrypted in Pulumi.{stack}.yaml (value not shown): set it "
                             f"again with `pulumi config set --secret{' --path' if key == 'userPasswords' else ''} "
                             f"--stack {stack} {key}{'.<user>' if key == 'userPasswords' else ''}` (value on stdin)"
                             for key in unencrypted])


def _secret_value(config: pulumi.Config, key: str) -> Any:
    """A secret config value: userPasswords is a JSON object, every other one a plain string.

    Parsed here rather than with Config.get_object, whose error message would print the secret.
    """
    value = config.get(key)
    if key != "userPasswords" or value is None:
        return value
    try:
        return json.loads(value)
    except ValueError:
        raise SettingsError([f"{PROJECT}:userPasswords is not a JSON object of user to password: set each with "
                             "`pulumi config set --secret --path userPasswords.<user>`"]) from None
