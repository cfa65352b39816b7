"""Adding a setting is one declaration plus its use (README, "Adding a setting").

A copy of the project gets a throwaway setting, `logMinMessages` (Pgpool-II's log_min_messages): one
line declaring it on PgpoolSettings and one line using it in pgpool.conf, nothing else. Then the
reference check says Pulumi.yaml and the README are stale, scripts/config_reference.py writes both,
and the copy's program reads the setting, validates it with the declared kind's message, writes it
to pgpool.conf, and knows the key.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.program_run import ROOT

DECLARATION = (
    '    log_min_messages: str = setting("logMinMessages", "warning", Choice(("warning", "notice", "info")),\n'
    '                                    "How much Pgpool-II logs.")\n'
)
USE = '        ("log_min_messages", pgpool.log_min_messages),\n'


def add_throwaway_setting(project: Path) -> None:
    """The two edits, each anchored on a line of the real files."""
    settings = project / "components" / "settings.py"
    anchor = "    run_as_user: int = PGPOOL_IMAGE.uid\n"
    text = settings.read_text()
    assert text.count(anchor) == 1
    settings.write_text(text.replace(anchor, DECLARATION + anchor))
    config = project / "components" / "pgpool_config.py"
    anchor = '        ("log_line_prefix", LOG_LINE_PREFIX),\n'
    text = config.read_text()
    assert text.count(anchor) == 1
    config.write_text(text.replace(anchor, anchor + USE))


def run(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=project, capture_output=True, text=True)


PROBE = """
import json
from components.pgpool_config import render_pgpool_conf
from components.settings import SettingsError, load_settings, unknown_keys
settings = load_settings({"logMinMessages": "info"}, "dev")
conf = render_pgpool_conf(settings.pgpool, settings.database.backends, settings.namespace)
try:
    load_settings({"logMinMessages": "verbose"}, "dev")
    bad = ""
except SettingsError as error:
    bad = error.problems
print(json.dumps({"conf": conf, "default": load_settings({}, "dev").pgpool.log_min_messages, "bad": bad,
                  "unknown": unknown_keys({"logMinMessages": "info"})}))
"""


def test_a_setting_is_one_declaration_plus_its_use(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("components", "scripts", "policies"):  # the settings read the release table of the policy pack
        shutil.copytree(ROOT / name, project / name,
                        ignore=shutil.ignore_patterns("__pycache__", "crds", "tools", ".venv"))
    for name in ("Pulumi.yaml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    add_throwaway_setting(project)

    stale = run(project, "scripts/config_reference.py", "--check")
    assert stale.returncode == 1
    assert "Pulumi.yaml is stale" in stale.stderr and "README.md is stale" in stale.stderr
    assert run(project, "scripts/config_reference.py").returncode == 0
    assert run(project, "scripts/config_reference.py", "--check").returncode == 0

    declared = yaml.safe_load((project / "Pulumi.yaml").read_text())["config"]["pgpool-k8s:logMinMessages"]
    assert declared == {"type": "string", "description": "How much Pgpool-II logs.", "default": "warning"}
    assert "| `logMinMessages` | string | `warning` | How much Pgpool-II logs. |" in (project / "README.md").read_text()

    probe = run(project, "-c", PROBE)
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout)
    assert "log_min_messages = 'info'" in seen["conf"].splitlines()
    assert seen["default"] == "warning"
    assert seen["bad"] == ["pgpool-k8s:logMinMessages = 'verbose': use one of warning, notice, info"]
    assert seen["unknown"] == []
