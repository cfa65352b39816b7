#!/usr/bin/env python3
"""Write Pulumi.yaml's `config:` block and the README's configuration reference from the settings'
declarations (components/settings.py), the one place each setting is stated.

    scripts/config_reference.py          # rewrite both
    scripts/config_reference.py --check  # exit 1, naming the stale file, when either differs
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.config_schema import PROJECT, Setting, declared  # noqa: E402
from components.settings import SECTIONS  # noqa: E402

PULUMI_YAML = ROOT / "Pulumi.yaml"
README = ROOT / "README.md"
CONFIG_LINE = "config:\n"
BEGIN, END = "<!-- config-reference:begin -->", "<!-- config-reference:end -->"


def declarations() -> list[tuple[str, list[Setting]]]:
    return [(title, [setting for _, setting in declared(cls)]) for title, cls in SECTIONS]


def pulumi_type(setting: Setting) -> dict:
    spec: dict = {"type": setting.kind.pulumi_type}
    if spec["type"] == "array":
        spec["items"] = {"type": "string"}
    return spec


def config_block() -> str:
    """Pulumi.yaml's `config:` block. A derived setting is left out: a declared default would always
    apply, and one without a default would be required of every stack."""
    lines = [CONFIG_LINE.rstrip("\n")]
    for title, settings in declarations():
        lines.append(f"  # --- {title} " + "-" * (79 - len(title)))
        for setting in settings:
            if setting.derived:
                lines.append(f"  # {setting.key} is not declared here: unset, it is {setting.derived}.")
                continue
            spec = {**pulumi_type(setting), "description": setting.description, "default": setting.config_default}
            entry = yaml.safe_dump({f"{PROJECT}:{setting.key}": spec}, sort_keys=False, width=4096,
                                   allow_unicode=True)
            lines += [f"  {line}" for line in entry.splitlines()]
    return "\n".join(lines) + "\n"


def pulumi_yaml() -> str:
    text = PULUMI_YAML.read_text()
    return text[:text.index(CONFIG_LINE)] + config_block()


def _shown(setting: Setting) -> str:
    if setting.derived:
        return f"{setting.derived} (unset)"
    default = setting.config_default
    if default in ("", []):
        return "(empty)"
    return f"`{yaml.safe_dump(default, default_flow_style=True).strip().removesuffix('...').strip()}`"


def reference_table() -> str:
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    for _, settings in declarations():
        rows += [f"| `{s.key}` | {s.kind.pulumi_type} | {_shown(s)} | {s.description} |" for s in settings]
    return "\n".join(rows)


def readme() -> str:
    text = README.read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{reference_table()}\n{END}{tail}"


def main(argv: list[str]) -> int:
    wanted = {PULUMI_YAML: pulumi_yaml(), README: readme()}
    stale = [path for path, text in wanted.items() if path.read_text() != text]
    if "--check" in argv:
        for path in stale:
            print(f"{path.name} is stale: run scripts/config_reference.py", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(wanted[path])
        print(f"wrote {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
