"""Pgpool-II settings as Pgpool-II will see them: parsed pgpool.conf or PGPOOL_PARAMS_* env, plus defaults.

The reader follows Pgpool-II's own lexer and parse loop (src/config/pool_config.l, unchanged from 4.3
to 4.5): a name, an optional '=', then any one token as the value (a single-quoted string loses its
quotes, nothing is unescaped), `#` comments, names case-insensitive, the last assignment wins.
tests/test_policies.py holds it to the real `pgpool`'s verdicts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .values import UNKNOWN

ENV_PREFIX = "PGPOOL_PARAMS_"

PGPOOL_DEFAULTS = {
    # Pgpool-II 4.4/4.5 built-in defaults (src/config/pool_config_variables.c); pgpool.conf.sample
    # leaves all of these commented out, so they are also what the image's env mode starts from.
    "listen_addresses": "localhost",
    "load_balance_mode": "on",
    "connection_cache": "on",
    "failover_on_backend_error": "on",
    "sr_check_period": "10",
    "sr_check_user": "nobody",
    "sr_check_password": "",
    "health_check_period": "0",
    "use_watchdog": "off",
    "failover_command": "",
    "failback_command": "",
    "follow_primary_command": "",
    "recovery_1st_stage_command": "",
    "recovery_2nd_stage_command": "",
    "auto_failback": "off",
    "enable_pool_hba": "off",
    "ssl": "off",
    "reserved_connections": "0",
    "num_init_children": "32",
    "max_pool": "4",
    "memory_cache_enabled": "off",
    "memqcache_method": "shmem",
    "memqcache_expire": "0",
    "memqcache_auto_cache_invalidation": "on",
}
PER_NODE_DEFAULTS = {"backend_flag": "ALLOW_TO_FAILOVER", "backend_weight": "1"}

IMAGE_ENV_DEFAULTS = {
    # The pgpool/pgpool image's entrypoint.sh exports these PGPOOL_PARAMS_* defaults in env mode.
    "listen_addresses": "*",
    "backend_flag0": "ALLOW_TO_FAILOVER",
    "backend_weight0": "1",
    "sr_check_period": "0",
    "health_check_period": "0",
    "failover_on_backend_error": "off",
}
IMAGE_ALWAYS_DEFAULTS = {
    # Whenever the entrypoint runs it appends `failover_on_backend_error = 'off'` unless it is set.
    "failover_on_backend_error": "off",
}

_LETTER, _LETTER_OR_DIGIT = r"A-Za-z_\x80-\U0010ffff", r"A-Za-z_0-9\x80-\U0010ffff"
_TOKENS = [
    # Pgpool-II's flex rules in their order; the longest match wins, ties go to the earlier rule.
    ("SPACE", re.compile(r"[ \t\r]+")),
    ("COMMENT", re.compile(r"#.*")),
    ("KEY", re.compile(rf"[{_LETTER}][{_LETTER_OR_DIGIT}]*")),
    ("STRING", re.compile(r"'(?:\\.|[^'\n])*'")),
    ("UNQUOTED", re.compile(rf"[{_LETTER}][{_LETTER_OR_DIGIT}\-.:/]*")),
    ("INTEGER", re.compile(r"[+-]?0x[0-9a-fA-F]+[a-zA-Z]*")),
    ("INTEGER", re.compile(r"[+-]?[0-9]+[a-zA-Z]*")),
    ("REAL", re.compile(r"[+-]?[0-9]*\.[0-9]*(?:[Ee][+-]?[0-9]+)?")),
    ("EQUALS", re.compile(r"=")),
    ("ERROR", re.compile(r".")),
]
_KEY_AT_START = re.compile(rf"^\s*(?P<key>[{_LETTER}][{_LETTER_OR_DIGIT}]*)")
_SAFE_BARE = re.compile(r"^(?:on|off|[0-9]+)$")

_WORDS = (("true", True), ("false", False), ("yes", True), ("no", False), ("on", True), ("off", False),
          ("1", True), ("0", False))


@dataclass
class ParsedConf:
    params: dict[str, str] = field(default_factory=dict)
    """Lower-cased name -> value of its last assignment."""
    lines: dict[str, int] = field(default_factory=dict)
    """Lower-cased name -> line number of that assignment."""
    errors: list[tuple[int, str]] = field(default_factory=list)
    """(line number, line) Pgpool-II rejects with 'syntax error in configuration file'."""


def _tokens(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, line number) tokens, an EOL token ending each line."""
    tokens = []
    for number, line in enumerate(text.split("\n"), start=1):
        position = 0
        while position < len(line):
            kind, match = max(((k, r.match(line, position)) for k, r in _TOKENS),
                              key=lambda km: len(km[1].group()) if km[1] else -1)
            if kind not in ("SPACE", "COMMENT"):
                tokens.append((kind, match.group(), number))
            position = match.end()
        tokens.append(("EOL", "", number))
    return tokens


def parse_pgpool_conf(text: str) -> ParsedConf:
    """Settings as Pgpool-II's ParseConfigFile reads them: KEY, an optional '=', then any one token as the value."""
    parsed = ParsedConf()
    tokens = _tokens(text)
    lines = text.split("\n")
    index = 0
    while index < len(tokens):
        kind, key, number = tokens[index]
        index += 1
        if kind == "EOL":
            continue
        if kind != "KEY":
            parsed.errors.append((number, lines[number - 1].strip()))
            while tokens[index - 1][0] != "EOL":  # go on at the next line to find further errors
                index += 1
            continue
        if index < len(tokens) and tokens[index][0] == "EQUALS":
            index += 1
        value_kind, value, _ = tokens[index] if index < len(tokens) else ("EOL", "", number)
        index += 1
        parsed.params[key.lower()] = value[1:-1] if value_kind == "STRING" else value
        parsed.lines[key.lower()] = number
    return parsed


def render_value(value: str) -> str:
    return value if _SAFE_BARE.match(value) else f"'{value}'"


def set_params(text: str, changes: dict[str, str]) -> str:
    """pgpool.conf text with each name set: its first assignment replaced, later ones removed, else appended."""
    lines = text.split("\n")
    trailing_newline = bool(lines) and lines[-1] == ""
    if trailing_newline:
        lines.pop()
    done: set[str] = set()
    out = []
    for line in lines:
        match = _KEY_AT_START.match(line)
        key = match.group("key").lower() if match and not line.lstrip().startswith("#") else None
        if key in changes:
            if key not in done:
                out.append(f"{key} = {render_value(changes[key])}")
                done.add(key)
            continue
        out.append(line)
    out += [f"{key} = {render_value(value)}" for key, value in changes.items() if key not in done]
    return "\n".join(out) + ("\n" if trailing_newline else "")


def as_bool(value: Any) -> bool | None:
    """Pgpool-II's booleans (parse_bool_with_len): true, false, yes, no, on, off, 1, 0, case-insensitive, and
    unique prefixes of them (`t`, `of`; `o` is not unique); None for anything Pgpool-II rejects."""
    if not isinstance(value, str) or not value:
        return None
    lowered = value.lower()
    for word, meaning in _WORDS:
        if word.startswith(lowered) and len(lowered) >= (2 if word[0] == "o" else 1):
            return meaning
    return None


def as_number(value: Any) -> int | None:
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    return None


def flags(value: str) -> set[str]:
    return {part.strip().upper() for part in value.split("|") if part.strip()}


@dataclass(frozen=True)
class Referenced:
    """A setting whose value comes from a Secret or ConfigMap key: present, but unreadable here."""

    source: str

    def __str__(self) -> str:
        return f"<from {self.source}>"


@dataclass(frozen=True)
class Setting:
    name: str
    value: Any
    """The value (str), UNKNOWN during preview, a Referenced, or None when nothing sets it."""
    origin: str
    """set | image (the image's entrypoint default) | pgpool (Pgpool-II's default) | forced | none."""

    @property
    def text(self) -> str | None:
        """The value when it is readable text, else None (then checks on it are skipped)."""
        return self.value if isinstance(self.value, str) else None


@dataclass
class PgpoolConfig:
    """One place Pgpool-II's settings come from, with the defaults that fill what it leaves out."""

    subject: str
    """'ConfigMap "pgpool-config" pgpool.conf' or 'Deployment "pgpool" container "pgpool"'."""
    env_mode: bool
    params: dict[str, Any]
    complete: bool = True
    """False when part of the source is unknown (preview) or opaque (envFrom): absent names are then unknown."""
    entrypoint: bool = False
    """The image's entrypoint.sh prepares the config (so its defaults and overrides apply)."""
    forced: dict[str, tuple[str, str]] = field(default_factory=dict)
    """name -> (value, why): settings the entrypoint appends after everything else."""
    lines: dict[str, int] = field(default_factory=dict)
    """pgpool.conf line number of each setting."""
    errors: list[tuple[int, str]] = field(default_factory=list)
    """(line number, line) Pgpool-II cannot parse; in env mode (0, env var name) of values the entrypoint breaks."""

    def get(self, name: str) -> Setting:
        if name in self.forced:
            return Setting(name, self.forced[name][0], "forced")
        if name in self.params:
            return Setting(name, self.params[name], "set")
        if not self.complete:
            return Setting(name, UNKNOWN, "none")
        if self.entrypoint and self.env_mode and name in IMAGE_ENV_DEFAULTS:
            return Setting(name, IMAGE_ENV_DEFAULTS[name], "image")
        if self.entrypoint and name in IMAGE_ALWAYS_DEFAULTS:
            return Setting(name, IMAGE_ALWAYS_DEFAULTS[name], "image")
        if name in PGPOOL_DEFAULTS:
            return Setting(name, PGPOOL_DEFAULTS[name], "pgpool")
        node = re.fullmatch(r"(backend_flag|backend_weight)\d+", name)
        if node:
            return Setting(name, PER_NODE_DEFAULTS[node.group(1)], "pgpool")
        return Setting(name, None, "none")

    def per_node(self, prefix: str) -> dict[int, Setting]:
        """Explicit `<prefix><N>` settings by node number (e.g. backend_hostname -> {0: .., 1: ..})."""
        found = {}
        for name in self.params:
            match = re.fullmatch(re.escape(prefix) + r"(\d+)", name)
            if match:
                found[int(match.group(1))] = self.get(name)
        return found

    def env_name(self, name: str) -> str:
        return ENV_PREFIX + name.upper()

    def show(self, setting: Setting) -> str:
        """The setting as it stands, saying where its value comes from."""
        value = setting.value
        if setting.origin == "forced":
            return f"{setting.name} = '{value}' ({self.forced[setting.name][1]})"
        if setting.origin == "set":
            if self.env_mode:
                return f'{self.env_name(setting.name)}="{value}"'
            line = self.lines.get(setting.name)
            return f"{setting.name} = '{value}'" + (f" (line {line})" if line else "")
        unset = self.env_name(setting.name) if self.env_mode else setting.name
        if setting.origin == "image":
            return f"{unset} is not set, so the pgpool/pgpool image's default '{value}' applies"
        if setting.origin == "pgpool":
            return f"{unset} is not set, so Pgpool-II's default '{value}' applies"
        return f"{unset} is not set"

    def fix(self, name: str, value: str) -> str:
        if self.env_mode:
            return f'set env {self.env_name(name)}="{value}"'
        return f"set {name} = {render_value(value)} in pgpool.conf"
