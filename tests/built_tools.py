"""Tools the tests need that no package provides, built by scripts/tools.sh (once; cached between runs)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS_SCRIPT = ROOT / "scripts" / "tools.sh"


def built_tool(name: str) -> Path:
    """Path of `scripts/tools.sh NAME`'s build; fails (never skips) the test when it cannot be had."""
    result = subprocess.run([str(TOOLS_SCRIPT), name], capture_output=True, text=True)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        pytest.fail(f"scripts/tools.sh {name} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    path = Path(lines[-1])
    if not os.access(path, os.X_OK):
        pytest.fail(f"scripts/tools.sh {name} printed {path}, which is not an executable")
    return path


def engine_environment() -> dict[str, str]:
    """What scripts/env.sh exports to make's targets (the Pulumi CLI it chose, PULUMI_HOME, state paths),
    read from a shell that sourced it."""
    shell = subprocess.run(["bash", "-c", "source scripts/env.sh && env -0"], cwd=ROOT, capture_output=True,
                           check=True)
    return dict(item.split("=", 1) for item in shell.stdout.decode().split("\0") if "=" in item)
