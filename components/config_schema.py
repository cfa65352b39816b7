"""How a stack setting is declared and read: one declaration per setting, on its dataclass field.

    num_init_children: int = setting("numInitChildren", 32, Integer(1, 10000),
                                     "Pgpool-II child processes, i.e. concurrent client sessions per pod.")

names the config key, the default (written nowhere else), the kind (type, bounds or pattern, and the
fix a bad value's message gives) and the description. `read_fields` reads a dataclass's declared
fields from raw stack config through their kinds; `scripts/config_reference.py` writes Pulumi.yaml's
`config:` block and the README's table from the same declarations. No Pulumi import.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterator, Mapping

PROJECT = "pgpool-k8s"
Fail = Callable[[str, Any, str], None]
"""fail(key, value, fix): records one problem."""


class SettingsError(ValueError):
    """Invalid stack configuration; the message lists every problem found."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(
            "invalid stack configuration:\n" + "\n".join(f"  - {p}" for p in problems)
        )


def problem(key: str, value: Any, fix: str) -> str:
    """The one form of a bad-value message: the key, the value and the fix."""
    return f"{PROJECT}:{key} = {value!r}: {fix}"


# --- kinds: what a value may be, how it is read, how Pulumi.yaml states it ---------------------


class Kind:
    """Reads one raw config value (a string as the CLI stores it, or a YAML value) into its type.

    On a bad value it calls `fail` and returns what the rest of the reading goes on with: the
    default for a value of the wrong type, the value itself for one that only breaks a pattern."""

    pulumi_type: ClassVar[str] = "string"

    def read(self, key: str, value: Any, default: Any, fail: Fail) -> Any:
        return default if value is None else str(value)

    def config_default(self, default: Any) -> Any:
        """The default as Pulumi.yaml writes it."""
        return default


@dataclass(frozen=True)
class Text(Kind):
    """Any string."""


@dataclass(frozen=True)
class Pattern(Kind):
    """A string matching `pattern`; empty allowed when `allow_empty`."""

    pattern: re.Pattern[str]
    fix: str
    allow_empty: bool = False

    def read(self, key: str, value: Any, default: Any, fail: Fail) -> Any:
        text = super().read(key, value, default, fail)
        if (text or not self.allow_empty) and not self.pattern.fullmatch(text):
            fail(key, text, self.fix)
        return text


@dataclass(frozen=True)
class Choice(Kind):
    choices: tuple[str, ...]

    def read(self, key: str, value: Any, default: Any, fail: Fail) -> Any:
        text = super().read(key, value, default, fail)
        if text not in self.choices:
            fail(key, text, f"use one of {', '.join(self.choices)}")
            return default
        return text


@dataclass(frozen=True)
class Integer(Kind):
    low: int | None = None
    high: int | None = None
    pulumi_type: ClassVar[str] = "integer"

    def read(self, key: str, value: Any, default: Any, fail: Fail) -> Any:
        try:
            number = int(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        if number is None or (isinstance(value, str) and not re.fullmatch(r"-?[0-9]+", value.strip())):
            fail(key, value, "use a whole number")
            return default
        if (self.low is not None and number < self.low) or (self.high is not None and number > self.high):
            bounds = f"between {self.low} and {self.high}" if self.high is not None else f"at least {self.low}"
            fail(key, value, f"use a number {bounds}")
            return default
        return number


@dataclass(frozen=True)
class Boolean(Kind):
    pulumi_type: ClassVar[str] = "boolean"

    def read(self, key: str, value: Any, default: Any, fail: Fail) -> Any:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
        fail(key, value, "use true or false")
        return default


@dataclass(frozen=True)
class Image(Kind):
    """A container image pinned to a tag other than latest (a digest may follow)."""

    pattern: ClassVar[re.Pattern[str]] = re.compile(
        r"^[^\s:@]+(:[0-9]+)?(/[^\s:@]+)*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}(@sha256:[0-9a-f]{64})?$")

    def read(self, key: str, value: Any, default: Any, fail: Fail) -> Any:
        text = Pattern(self.pattern, f"pin an image tag, e.g. {default} (a missing tag means latest)").read(
            key, value, default, fail)
        if text.rsplit(":", 1)[-1].split("@")[0] == "latest":
            fail(key, text, f"pin a version tag such as {default}; latest changes under you")
        return text


@dataclass(frozen=True)
class Strings(Kind):
    """A list of strings (a YAML list, or its JSON text as the CLI stores it), each checked by `item`;
    duplicates dropped when `unique`."""

    item: Kind | None = None
    unique: bool = False
    pulumi_type: ClassVar[str] = "array"

    def read(self, key: str, value: Any, default: Any, fail: Fail) -> Any:
        items = self._items(key, value, default, fail)
        if self.unique:
            items = tuple(dict.fromkeys(items))
        if self.item is not None:
            items = tuple(self.item.read(key, item, item, fail) for item in items)
        return items

    def _items(self, key: str, value: Any, default: Any, fail: Fail) -> tuple[str, ...]:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                fail(key, value, 'use a list, e.g. ["a", "b"]')
                return default
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            fail(key, value, 'use a list of strings, e.g. ["a", "b"]')
            return default
        return tuple(value)

    def config_default(self, default: Any) -> Any:
        return list(default)


BINARY_SIZE = re.compile(r"^([0-9]+)(Ki|Mi|Gi)?$")
BINARY_UNITS = ("", "Ki", "Mi", "Gi")


@dataclass(frozen=True)
class ByteSize(Kind):
    """A size written as a Kubernetes binary quantity (64Mi, 400Ki) or a number of bytes, read into bytes;
    a multiple of `unit` between `low` and `high` bytes."""

    low: int
    high: int
    unit: int = 1

    def read(self, key: str, value: Any, default: Any, fail: Fail) -> Any:
        match = BINARY_SIZE.fullmatch(str(value).strip()) if not isinstance(value, bool) else None
        if not match:
            fail(key, value, f"use a size such as {self.config_default(default)} (Ki, Mi or Gi, or bytes)")
            return default
        size = int(match[1]) * 1024 ** BINARY_UNITS.index(match[2] or "")
        if not self.low <= size <= self.high or size % self.unit:
            unit = f" and a multiple of {self.config_default(self.unit)}" if self.unit > 1 else ""
            fail(key, value, f"use a size between {self.config_default(self.low)} and "
                             f"{self.config_default(self.high)}{unit}")
            return default
        return size

    def config_default(self, default: Any) -> Any:
        """The size in the largest binary unit that divides it, as stack config writes it."""
        power = max(p for p in range(len(BINARY_UNITS)) if default % 1024 ** p == 0)
        return f"{default // 1024 ** power}{BINARY_UNITS[power]}"


LABEL_PAIR = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_./]*=[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Labels(Strings):
    """key=value label pairs, read into ((key, value), ...)."""

    def read(self, key: str, value: Any, default: Any, fail: Fail) -> Any:
        pairs = []
        for item in self._items(key, value, (), fail):
            if not LABEL_PAIR.fullmatch(item):
                fail(key, item, "each entry is a label selector pair key=value, e.g. app=web")
                continue
            name, _, label = item.partition("=")
            pairs.append((name, label))
        return tuple(pairs)

    def config_default(self, default: Any) -> Any:
        return [f"{name}={label}" for name, label in default]


# --- the declaration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One stack setting: its config key, kind, default and description."""

    key: str
    kind: Kind
    description: str
    default: Any = None
    derived: str = ""
    """For a setting whose default depends on others: how it is worked out (README). Pulumi.yaml then
    declares no default, which would always apply, and `read_fields` must be given one."""

    @property
    def config_default(self) -> Any:
        return self.kind.config_default(self.default)


def setting(key: str, default: Any, kind: Kind, description: str, *, derived: str = "") -> Any:
    """A dataclass field declaring the stack setting `key` (see the module docstring).

    `derived` instead of a default: the field has none, and whoever reads it passes one."""
    declared = Setting(key, kind, description, None if derived else default, derived)
    if derived:
        return dataclasses.field(metadata={"setting": declared})
    return dataclasses.field(default=default, metadata={"setting": declared})


def declared(cls: type) -> Iterator[tuple[str, Setting]]:
    """(field name, declaration) of every declared setting of a settings dataclass, in field order."""
    for item in dataclasses.fields(cls):
        if "setting" in item.metadata:
            yield item.name, item.metadata["setting"]


def read_fields(cls: type, raw: Mapping[str, Any], fail: Fail, derived: Mapping[str, Any] | None = None) -> dict:
    """Every declared setting of `cls` read from raw config, by field name; `derived` gives the
    defaults of the settings declared `derived`, by key."""
    values = {}
    for name, declaration in declared(cls):
        default = (derived or {})[declaration.key] if declaration.derived else declaration.default
        value = raw.get(declaration.key)
        values[name] = default if value is None else declaration.kind.read(declaration.key, value, default, fail)
    return values
