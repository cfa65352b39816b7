"""Tools the tests need that no package provides, built by scripts/tools.sh (once; cached between runs)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

TOOLS_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "tools.sh"


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
