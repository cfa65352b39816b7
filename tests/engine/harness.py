"""Copies of this project run on the real Pulumi engine, as `make up` runs them.

Each copy gets the environment scripts/env.sh gives make's targets (the same Pulumi CLI and plugins),
but a file backend and a passphrase of its own, so the user's state and stack files are never touched.
`scripts/engine.py` runs in a child process with `--events`, so tests read the engine's own events.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.built_tools import engine_environment
from tests.program_run import stack_settings

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "pgpool-k8s"
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", ".state", "__pycache__", ".pytest_cache", "tests")
VENVS = (".venv", "policies/.venv")


def override_config(config: dict, settings: dict[str, str | None]) -> None:
    """Set settings (by key without the project's prefix) in a stack file's `config:`; None unsets one."""
    for key, value in settings.items():
        if value is None:
            config.pop(f"{PROJECT}:{key}", None)
        else:
            config[f"{PROJECT}:{key}"] = value


@dataclass
class EngineRun:
    """One `scripts/engine.py` command: its exit status, what it printed, the engine's events."""

    command: str
    returncode: int
    output: str
    events: list[dict] = field(repr=False)

    def steps(self) -> list[tuple[str, str, str]]:
        """(operation, type, name) of every step the engine took or planned, in the order it sent them."""
        found = []
        for event in self.events:
            pre = event.get("resourcePreEvent")
            if pre:
                metadata = pre["metadata"]
                found.append((metadata["op"], metadata["type"], metadata["urn"].split("::")[-1]))
        return found

    def changes(self) -> dict[str, int]:
        """The engine's summary: resources per operation ("same" = unchanged)."""
        summaries = [event["summaryEvent"]["resourceChanges"] for event in self.events if "summaryEvent" in event]
        assert summaries, f"{self.command}: the engine sent no summary\n{self.output}"
        return summaries[-1]

    def policies_ran(self) -> dict[str, set[str]]:
        """Policy names per policy pack that the engine reports as evaluated (passed or failed)."""
        ran: dict[str, set[str]] = {}
        for event in self.events:
            summary = event.get("policyAnalyzeSummaryEvent") or event.get("policyAnalyzeStackSummaryEvent")
            if summary:
                ran.setdefault(summary["policyPackName"], set()).update(summary.get("passed", []),
                                                                        summary.get("failed", []))
        return ran

    def violations(self) -> list[tuple[str, str, str]]:
        """(policy, enforcement level, resource name or "") of every policy violation."""
        return [(event["policyEvent"]["policyName"], event["policyEvent"]["enforcementLevel"],
                 event["policyEvent"].get("resourceUrn", "").split("::")[-1])
                for event in self.events if "policyEvent" in event]


def module_project(tmp_path_factory, name: str) -> "EngineProject":
    """A project copy of its own for one test module."""
    base = tmp_path_factory.mktemp(name)
    return EngineProject(base / "project", base / "state")


def first_up(project: "EngineProject", stack: str) -> EngineRun:
    """The stack's first `up`, which the module's tests build on."""
    run = project.engine("up", stack)
    assert run.returncode == 0, run.output
    return run


class EngineProject:
    """A copy of the project with its own Pulumi backend and passphrase."""

    def __init__(self, directory: Path, state: Path):
        shutil.copytree(ROOT, directory, ignore=COPY_IGNORE)
        for stack_file in directory.rglob("Pulumi.*.yaml"):
            stack_file.write_text(yaml.safe_dump(stack_settings(stack_file), sort_keys=False))
        for venv in VENVS:
            (directory / venv).symlink_to(ROOT / venv)
        self.dir = directory
        self.state = state
        (state / "backend").mkdir(parents=True)
        env = {key: value for key, value in engine_environment().items()
               if key not in ("PULUMI_CONFIG_PASSPHRASE_FILE", "KUBECONFIG")}
        env.update(PULUMI_BACKEND_URL=(state / "backend").as_uri(),
                   PULUMI_CONFIG_PASSPHRASE=secrets.token_urlsafe(24))
        self.env = env
        self._runs = 0

    def engine(self, command: str, stack: str = "dev", project: Path | None = None,
               extra: tuple[str, ...] = ()) -> EngineRun:
        self._runs += 1
        events_file = self.state / f"events-{self._runs}.jsonl"
        args = [sys.executable, str(self.dir / "scripts" / "engine.py"), command, "--stack", stack,
                "--events", str(events_file), *extra]
        if project:
            args += ["--project", str(project)]
        result = subprocess.run(args, cwd=self.dir, env=self.env, capture_output=True, text=True)
        events = [json.loads(line) for line in events_file.read_text().splitlines()] if events_file.exists() else []
        return EngineRun(command, result.returncode, result.stdout + result.stderr, events)

    def pulumi(self, *args: str, cwd: Path | None = None) -> str:
        result = subprocess.run(["pulumi", *args], cwd=cwd or self.dir, env=self.env, capture_output=True, text=True)
        assert result.returncode == 0, f"pulumi {' '.join(args)} failed:\n{result.stderr}"
        return result.stdout

    def set_config(self, stack: str, key: str, value: str) -> None:
        self.pulumi("config", "set", "--stack", stack, f"{PROJECT}:{key}", value)

    def write_stack_file(self, stack: str, config: dict[str, str | None]) -> None:
        """A stack file like Pulumi.dev.yaml, with these settings on top of the dev stack's (None unsets one)."""
        dev = yaml.safe_load((self.dir / "Pulumi.dev.yaml").read_text())["config"]
        override_config(dev, config)
        (self.dir / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": dev}))

    def secret_values(self, stack: str) -> dict[str, str]:
        """The stack's decrypted secret config values, userPasswords flattened to userPasswords.<user>."""
        entries = json.loads(self.pulumi("config", "--json", "--show-secrets", "--stack", stack))
        values = {}
        for key, entry in entries.items():
            if not entry["secret"]:
                continue
            if "objectValue" in entry:
                values.update({f"{key}.{leaf}": v for leaf, v in entry["objectValue"].items()})
            else:
                values[key] = entry["value"]
        return values

    def render_dir(self, stack: str) -> Path:
        return self.dir / ".state" / "manifests" / stack

    def rendered(self, stack: str) -> list[dict]:
        return rendered_objects(self.render_dir(stack))


def rendered_objects(directory: Path) -> list[dict]:
    """Every object rendered (renderYamlToDirectory) under a directory."""
    return [doc for path in sorted(directory.rglob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]
