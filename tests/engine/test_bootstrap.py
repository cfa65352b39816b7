"""scripts/bootstrap.sh and scripts/env.sh: one engine for everything, the user's Pulumi setup respected."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from tests.built_tools import ROOT, engine_environment


def pinned(requirement: str) -> str:
    [version] = re.findall(rf"^{re.escape(requirement)}==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    return version


def tools_script_value(name: str) -> str:
    [value] = re.findall(rf"^{name}=(\S+)$", (ROOT / "scripts" / "tools.sh").read_text(), re.M)
    return value


def sourced(env: dict[str, str]) -> dict[str, str]:
    shell = subprocess.run(["bash", "-c", "source scripts/env.sh && env -0"], cwd=ROOT, env=env, capture_output=True,
                           check=True)
    return dict(item.split("=", 1) for item in shell.stdout.decode().split("\0") if "=" in item)


def test_the_built_provider_is_the_version_the_sdk_pins():
    assert tools_script_value("kubernetes_provider_version") == pinned("pulumi-kubernetes")


def test_the_engine_has_the_pinned_kubernetes_plugin_registered():
    env = engine_environment()
    listing = subprocess.run([env["PGPOOL_K8S_PULUMI"], "plugin", "ls", "--json"], env=env, capture_output=True,
                             text=True, check=True)
    plugins = {(p["kind"], p["name"], p["version"]) for p in json.loads(listing.stdout)}
    assert ("resource", "kubernetes", pinned("pulumi-kubernetes")) in plugins


def test_the_engine_cli_is_at_least_as_new_as_the_sdk():
    env = engine_environment()
    version = subprocess.run([env["PGPOOL_K8S_PULUMI"], "version"], env=env, capture_output=True, text=True,
                             check=True).stdout.strip()

    def parts(text: str) -> tuple[int, ...]:
        return tuple(int(p) for p in text.lstrip("v").split("-")[0].split("."))

    assert parts(version) >= parts(pinned("pulumi")), version


def test_bootstrap_is_quiet_when_everything_is_there():
    result = subprocess.run([str(ROOT / "scripts" / "bootstrap.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == result.stderr == ""


def test_settings_of_the_user_win_over_the_project_defaults(tmp_path: Path):
    env = {**os.environ, "PULUMI_HOME": str(tmp_path / "home"), "PULUMI_BACKEND_URL": "s3://team-state/pgpool",
           "PULUMI_CONFIG_PASSPHRASE": "the team's passphrase"}
    env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
    result = sourced(env)
    assert result["PULUMI_HOME"] == str(tmp_path / "home")
    assert result["PULUMI_BACKEND_URL"] == "s3://team-state/pgpool"
    assert result["PULUMI_CONFIG_PASSPHRASE"] == "the team's passphrase"
    assert "PULUMI_CONFIG_PASSPHRASE_FILE" not in result


def test_the_project_defaults_keep_state_in_the_project():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    result = sourced(env)
    assert result["PULUMI_BACKEND_URL"] == (ROOT / ".state" / "backend").as_uri()
    assert result["PULUMI_CONFIG_PASSPHRASE_FILE"] == str(ROOT / ".state" / "passphrase")
    assert os.stat(result["PULUMI_CONFIG_PASSPHRASE_FILE"]).st_mode & 0o077 == 0


def test_an_installed_cli_new_enough_is_used_as_it_is(tmp_path: Path):
    """A user's own Pulumi install (here: the same CLI, installed elsewhere on PATH) is used, with the
    user's PULUMI_HOME (Pulumi's default when unset), not the project's."""
    installed = tmp_path / "bin"
    installed.mkdir()
    (installed / "pulumi").symlink_to(engine_environment()["PGPOOL_K8S_PULUMI"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    env["PATH"] = f"{installed}:{env['PATH']}"
    result = sourced(env)
    assert result["PGPOOL_K8S_PULUMI"] == str(installed / "pulumi")
    assert "PULUMI_HOME" not in result
