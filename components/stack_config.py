"""Stack config as the settings layer reads it: the one place that touches pulumi.Config."""

from __future__ import annotations

import json
from typing import Any

import pulumi

from components.settings import PROJECT, SettingsError, StackSettings, load_settings
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
    return settings, load_secrets(settings, lambda key: _secret_value(config, key))


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
