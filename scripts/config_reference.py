#!/usr/bin/env python3
"""Print the README's configuration reference table from Pulumi.yaml's config block.

    scripts/config_reference.py        # print the table
    scripts/config_reference.py --check  # exit 1 when README.md's table differs
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- config-reference:begin -->", "<!-- config-reference:end -->"


def reference_table() -> str:
    block = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    for key, spec in block.items():
        default = spec.get("default")
        shown = "(empty)" if default in ("", []) else f"`{yaml.safe_dump(default, default_flow_style=True).strip().removesuffix('...').strip()}`"
        rows.append(f"| `{key.split(':', 1)[1]}` | {spec['type']} | {shown} | {spec['description']} |")
    return "\n".join(rows)


def readme_table() -> str:
    text = (ROOT / "README.md").read_text()
    return text[text.index(BEGIN) + len(BEGIN):text.index(END)].strip()


if __name__ == "__main__":
    if "--check" in sys.argv:
        sys.exit(0 if readme_table() == reference_table() else 1)
    print(reference_table())
