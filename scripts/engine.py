#!/usr/bin/env python3
"""Runs a stack on the Pulumi engine: the project's own __main__.py, or another project's (--project).

    scripts/engine.py up|preview|refresh|destroy [--stack NAME] [--project DIR] [--policy-config FILE]
                      [--events FILE] [--keep-cluster] [--allow-database-replacement]

The program runs inline through Pulumi's Automation API: the CLI talks to this process, which runs the
project's __main__.py, so the CLI needs no Python language host. Output streams as the engine prints it.

`up` creates or selects the stack, generates its missing secrets (scripts/init_stack.py), previews with
the policy pack and stops before anything is written when a mandatory policy is violated (the Automation
API's up skips its own preview, so stack policies would otherwise run only after the writes), or when the
pre-flight (scripts/preflight.py) finds the plan taking over an object the stack did not create, or
deleting its namespace or database without --allow-database-replacement; then updates with the pack and
prints the outputs and the rendered files. `preview` runs the pack and the pre-flight too. `destroy` on a
cluster first checks that every object it would delete is the one the stack created.
A stack whose config names neither a kubeconfig nor a context renders its manifests to a directory;
KUBECONFIG is then unset, so no cluster is ever touched. A stack whose kubeconfig is the local
cluster's (scripts/cluster.py, the `local` stack) starts that cluster when needed, and `destroy` stops
it (unless --keep-cluster). After `up` on a cluster, a `kubectl get` summary of the stack's namespace is printed.

`--events FILE` appends every engine event, as the engine sent it, one JSON object per line.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import runpy
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterator

import yaml
from pulumi import automation as auto
from pulumi.automation.events import EngineEvent

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import preflight  # noqa: E402
from cluster import LocalCluster  # noqa: E402
from components.ownership import owner  # noqa: E402
from components.settings import ClusterTarget, StackSettings, cluster_target  # noqa: E402
from pod_watch import PodWatch  # noqa: E402

POLICIES = ROOT / "policies"
SUMMARY_KINDS = "deployments,replicasets,pods,services,endpointslices,configmaps,secrets,poddisruptionbudgets," \
                "networkpolicies,serviceaccounts,roles,rolebindings"


class EngineFailed(Exception):
    """A command failed; its own output already said why."""

    def __init__(self, exit_code: int):
        super().__init__(exit_code)
        self.exit_code = exit_code


def project_name(project: Path) -> str:
    return yaml.safe_load((project / "Pulumi.yaml").read_text())["name"]


def inline_program(project: Path) -> Callable[[], None]:
    main = project / "__main__.py"

    def run() -> None:
        runpy.run_path(str(main), run_name="__main__")

    return run


def policy_pack() -> str:
    """The pack as a directory when a Python language host can start it (an official Pulumi install),
    else the launcher file, which the engine runs as an executable."""
    cli = shutil.which("pulumi")
    beside_cli = Path(cli).resolve().parent / "pulumi-language-python" if cli else None
    if shutil.which("pulumi-language-python") or (beside_cli and beside_cli.exists()):
        return str(POLICIES)
    return str(POLICIES / "launcher")


@contextlib.contextmanager
def raw_engine_events(sink: list[dict]) -> Iterator[None]:
    """Collects the engine's events as it sends them.

    The SDK's EngineEvent keeps only the kinds it knows and drops the policy summaries (which policies
    ran and passed), so its parser is wrapped while a command runs.
    """
    original = EngineEvent.__dict__["from_json"]
    parse = EngineEvent.from_json

    def keep(data: dict) -> EngineEvent:
        sink.append(data)
        return parse(data)

    EngineEvent.from_json = keep  # type: ignore[method-assign]
    try:
        yield
    finally:
        setattr(EngineEvent, "from_json", original)


def policy_report(events: list[dict]) -> tuple[list[str], dict[str, set[str]]]:
    """Lines naming every policy that ran and the policies each resource (or the stack) violated."""
    ran: dict[str, set[str]] = defaultdict(set)
    violated: dict[str, set[str]] = defaultdict(set)
    for event in events:
        summary = event.get("policyAnalyzeSummaryEvent") or event.get("policyAnalyzeStackSummaryEvent")
        if summary:
            pack = f"{summary['policyPackName']}@{summary['policyPackVersion']}"
            ran[pack].update(summary.get("passed", []), summary.get("failed", []))
        violation = event.get("policyEvent")
        if violation:
            where = violation.get("resourceUrn") or "the stack"
            violated[f"{violation['policyName']} ({violation['enforcementLevel']})"].add(where.split("::")[-1])
    lines = []
    for pack, names in sorted(ran.items()):
        lines.append(f"Policy pack {pack}: {len(names)} policies ran: {', '.join(sorted(names))}")
    for policy, resources in sorted(violated.items()):
        lines.append(f"  violated {policy} by {', '.join(sorted(resources))}")
    return lines, violated


class Engine:
    """One stack of one project, and the commands the driver runs on it."""

    def __init__(self, project: Path, stack_name: str, events_file: Path | None, create: bool,
                 policy_config: Path | None = None, allow_database_replacement: bool = False):
        self.project = project
        self.allow_database_replacement = allow_database_replacement
        self.policy_options = {"policy_packs": [policy_pack()]}
        if policy_config:
            self.policy_options["policy_pack_configs"] = [str(policy_config)]
        self.name = project_name(project)
        self.stack_name = stack_name
        self.events_file = events_file
        workspace = auto.LocalWorkspace(work_dir=str(project), program=inline_program(project))
        self.stack = (auto.Stack.create_or_select if create else auto.Stack.select)(stack_name, workspace)

    @functools.cached_property
    def raw_config(self) -> dict[str, str]:
        """The stack's own config values, by key without the project's prefix."""
        prefix = f"{self.name}:"
        return {key.removeprefix(prefix): entry.value
                for key, entry in self.stack.get_all_config().items() if key.startswith(prefix)}

    @functools.cached_property
    def target(self) -> ClusterTarget:
        """Where the stack's manifests go, read from its config as the program reads it."""
        return cluster_target(self.raw_config)

    @property
    def namespace(self) -> str:
        return self.raw_config.get("namespace") or {f.name: f.default for f in dataclasses.fields(StackSettings)}[
            "namespace"]

    def local_cluster(self) -> LocalCluster | None:
        """The local cluster, when the stack's kubeconfig is the one it writes."""
        kubeconfig = self.target.kubeconfig
        cluster = LocalCluster()
        return cluster if kubeconfig and (self.project / kubeconfig).resolve() == cluster.kubeconfig else None

    def kubectl(self, *args: str) -> subprocess.CompletedProcess:
        target = []
        if self.target.kubeconfig:
            target += ["--kubeconfig", str(self.project / self.target.kubeconfig)]
        if self.target.context:
            target += ["--context", self.target.context]
        return subprocess.run(["kubectl", *target, *args], capture_output=True, text=True)

    def run(self, title: str, command: Callable[..., object], **options) -> list[dict]:
        """Runs one engine command, streaming its output; returns its events; exits on failure."""
        print(f"\n=== {title}: project {self.name}, stack {self.stack_name}", flush=True)
        events: list[dict] = []
        try:
            with raw_engine_events(events):
                command(on_output=lambda line: print(line, flush=True),
                        on_error=lambda line: print(line, file=sys.stderr, flush=True),
                        # An event handler makes every command stream its events (refresh and
                        # destroy send none without one).
                        on_event=lambda event: None, color="never", suppress_progress=True, **options)
        except auto.CommandError:
            self._save(events)
            lines, violated = policy_report(events)
            for line in lines:
                print(line)
            print(f"\n{title} failed" + (": see the policy violations above" if violated else ""), file=sys.stderr)
            raise EngineFailed(1) from None
        self._save(events)
        return events

    def _save(self, events: list[dict]) -> None:
        if self.events_file:
            with self.events_file.open("a") as out:
                for event in events:
                    out.write(json.dumps(event) + "\n")

    def preview(self) -> None:
        events = self.run("preview", self.stack.preview, **self.policy_options)
        for line in policy_report(events)[0]:
            print(line)
        self.preflight(events)

    def preflight(self, events: list[dict]) -> None:
        """Stop before any write when the plan would take over an object the stack did not create, or
        delete its namespace or database (scripts/preflight.py)."""
        try:
            kubectl = None if self.target.renders else self.kubectl
            preflight.check_plan(events, self.stack.export_stack().deployment, kubectl,
                                 owner(self.name, self.stack_name), self.allow_database_replacement)
        except preflight.PreflightError as refused:
            print("\nThe plan is refused before anything is written:\n" +
                  "\n".join(f"  - {problem}" for problem in refused.problems), file=sys.stderr)
            raise EngineFailed(1) from None

    def up(self) -> None:
        if self.project == ROOT:
            initialise = subprocess.run([sys.executable, str(ROOT / "scripts" / "init_stack.py"),
                                         "--stack", self.stack_name])
            if initialise.returncode != 0:
                raise EngineFailed(initialise.returncode)
        # Preview first: the engine stops on mandatory violations here, before any write.
        self.preview()
        if self.target.renders:
            self.run("up", self.stack.up, **self.policy_options)
        else:
            self.update_cluster()
        outputs = self.stack.outputs()
        self.print_outputs(outputs)
        if not self.target.renders:
            self.print_cluster_summary(outputs["namespace"].value)
            cluster = self.local_cluster()
            if cluster and cluster.node():
                values = {key: output.value for key, output in outputs.items() if not output.secret}
                print(f"\nConnect through Pgpool-II's Service:\n  {cluster.psql_command(values)}")

    def update_cluster(self) -> None:
        """`up` on a cluster, stopped early (and saying why) when a pod of the stack cannot start."""
        with PodWatch(self.kubectl, self.namespace) as watch:
            try:
                self.run("up", self.stack.up, **self.policy_options)
            except EngineFailed:
                if watch.findings:
                    # The cancelled update had changed the cluster; the state must say so, or the next `up`
                    # would see no difference to undo.
                    self.run("refresh (the update was stopped)", self.stack.refresh)
                    for finding in watch.findings:
                        print(finding, file=sys.stderr)
                raise

    def refresh(self) -> None:
        if not self.target.renders:
            self.run("refresh", self.stack.refresh)
            return
        # Rendering needs no cluster, but the provider's read does: with none to read, it keeps what the
        # last update recorded (its skipUpdateUnreachable, set for this command only, where no Check runs).
        print("The stack renders its manifests: there is no cluster to read, so refresh keeps the recorded state.")
        os.environ["PULUMI_K8S_SKIP_UPDATE_UNREACHABLE"] = "true"
        try:
            self.run("refresh", self.stack.refresh)
        finally:
            del os.environ["PULUMI_K8S_SKIP_UPDATE_UNREACHABLE"]

    def destroy(self, keep_cluster: bool = False) -> None:
        try:
            preflight.check_destroy(self.stack.export_stack().deployment,
                                    None if self.target.renders else self.kubectl)
        except preflight.PreflightError as refused:
            print("\nDestroy is refused before anything is deleted:\n" +
                  "\n".join(f"  - {problem}" for problem in refused.problems), file=sys.stderr)
            raise EngineFailed(1) from None
        self.run("destroy", self.stack.destroy)
        cluster = self.local_cluster()
        if cluster and not keep_cluster:
            cluster.stop()

    def print_outputs(self, outputs: auto.OutputMap) -> None:
        print("\nOutputs:")
        for key, output in sorted(outputs.items()):
            print(f"  {key}: {'[secret]' if output.secret else json.dumps(output.value)}")
        rendered = outputs.get("renderedManifests")
        if rendered:
            directory = (self.project / rendered.value).resolve()
            print(f"\nRendered manifests in {directory}:")
            for path in sorted(directory.rglob("*.yaml")):
                print(f"  {path.relative_to(directory)}")

    def print_cluster_summary(self, namespace: str) -> None:
        print(f"\nWhat the stack runs in namespace {namespace}:")
        kinds = SUMMARY_KINDS
        if self.kubectl("get", "crd", "postgreses.kubedb.com").returncode == 0:
            kinds += ",postgreses.kubedb.com"
        summary = self.kubectl("get", kinds, "--namespace", namespace, "--output", "wide")
        print(summary.stdout + summary.stderr, end="")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("up", "preview", "refresh", "destroy"))
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--project", type=Path, default=ROOT, help="project directory (default: this one)")
    parser.add_argument("--events", type=Path, help="append the engine's events to this file (JSON lines)")
    parser.add_argument("--policy-config", type=Path, help="the policy pack's configuration (JSON)")
    parser.add_argument("--keep-cluster", action="store_true", help="destroy: leave the local cluster running")
    parser.add_argument(preflight.REPLACEMENT_FLAG, action="store_true",
                        help="up/preview: let this one update delete or replace the stack's namespace or database")
    args = parser.parse_args(argv)

    project = args.project.resolve()
    os.chdir(project)  # relative paths in the stack's config are the project's
    sys.path.insert(0, str(project))
    try:
        policy_config = args.policy_config.resolve() if args.policy_config else None
        engine = Engine(project, args.stack, args.events, create=args.command in ("up", "preview"),
                        policy_config=policy_config, allow_database_replacement=args.allow_database_replacement)
        cluster = engine.local_cluster()
        if engine.target.renders:
            os.environ.pop("KUBECONFIG", None)
        elif cluster:
            cluster.start()
        if args.command == "destroy":
            engine.destroy(keep_cluster=args.keep_cluster)
        else:
            getattr(engine, args.command)()
    except auto.StackNotFoundError:
        print(f"no stack {args.stack} in project {project_name(project)}: `make up STACK={args.stack}` creates it",
              file=sys.stderr)
        return 1
    except EngineFailed as failed:
        return failed.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
