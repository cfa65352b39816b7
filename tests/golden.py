"""Golden files: reviewed renderings kept in tests/golden/, regenerated with UPDATE_GOLDEN=1."""

import os
from pathlib import Path

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"


def assert_matches_golden(rendered: str, path: Path) -> None:
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered)
    assert rendered == path.read_text()
