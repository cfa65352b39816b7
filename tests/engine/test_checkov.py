"""checkov, the scanner many CI pipelines run on Kubernetes manifests, on every stack the project ships (dev,
local, prod), as the real engine renders them.

Each finding is fixed in the manifests or listed in SKIPPED with the reason, the same reason the README gives
("checkov"). The test fails on a finding SKIPPED does not list, and on a skip that no longer matches a
finding. checkov (tests/checkov-requirements.txt) runs from its own virtualenv in the cache, which
`scripts/bootstrap.sh --tests` makes. It ignores every path with a dot-directory in it, such as the rendered
`.state/manifests/`, so it scans a copy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.engine.harness import EngineProject, override_config
from tests.program_run import production_config

STACKS = ("dev", "local", "prod")
CLUSTER_KEYS = ("kubeconfig", "kubeContext")
"""Dropped from each stack's file: with neither, the engine renders the manifests it would apply."""

EXPORTER_WITHOUT_PROBES = (
    "the pgpool2_exporter sidecar has no probes: 1.2.2 opens its port only once it has logged in to Pgpool-II, "
    "so a liveness probe would restart it in a loop while the monitor user cannot log in, and a readiness probe "
    "would take Pgpool-II out of its Service for a monitoring fault; Prometheus' failed scrape (PgpoolDown) "
    "reports it. The pgpool container has both probes")
SKIPPED = {
    # (check, kind, name): why the manifest keeps what checkov reports
    ("CKV_K8S_40", "Deployment", "pgpool"):
        "uid 70 is the pgpool/pgpool image's user postgres (Dockerfile.pgpool), owner of /opt/pgpool-II; the pod "
        "runs it non-root, without privilege escalation or capabilities, with a read-only root file system",
    ("CKV_K8S_40", "Job", "pgpool-passwords"):
        "uid 70 is the postgres image's user postgres; the Job runs it non-root, without privilege escalation or "
        "capabilities, with a read-only root file system",
    ("CKV_K8S_35", "Deployment", "pgpool"):
        "the pgpool2_exporter image reads its password from the environment only (its CMD exports "
        "DATA_SOURCE_PASS from POSTGRES_PASSWORD), and in pgpoolMode env the pgpool/pgpool image reads every "
        "user's; from Secrets, by secretKeyRef. The readiness probe's password is a file (PGPASSFILE)",
    ("CKV_K8S_8", "Deployment", "pgpool"): EXPORTER_WITHOUT_PROBES,
    ("CKV_K8S_9", "Deployment", "pgpool"): EXPORTER_WITHOUT_PROBES,
    ("CKV_K8S_38", "Deployment", "prometheus"):
        "Prometheus' Kubernetes service discovery reads the API with its service account's token",
    ("CKV2_K8S_6", "Pod", "pgpool-passwords"):
        "the password Job's pod listens on no port: it only connects to PostgreSQL, whose NetworkPolicy admits it. "
        "Pgpool-II's, the database's and Prometheus' pods each have theirs (networkPolicy, on by default)",
}
TAG_PINNED = {
    # Development stacks pin images by tag; production stacks must pin digests (pinned-image-digests-in-production).
    (check, kind, name): "dev and local stacks pin images by tag; production stacks pin digests"
    for check in ("CKV_K8S_15", "CKV_K8S_43")
    for kind, name in (("Deployment", "pgpool"), ("Deployment", "prometheus"), ("Job", "pgpool-passwords"))
}
EXPECTED = {"dev": {**SKIPPED, **TAG_PINNED}, "local": {**SKIPPED, **TAG_PINNED}, "prod": SKIPPED}


def checkov() -> Path:
    binary = Path(os.environ.get("PGPOOL_K8S_CACHE", Path.home() / ".cache" / "pgpool-k8s")) / "venvs" / "checkov" \
        / "bin" / "checkov"
    if not binary.exists():
        pytest.fail(f"no {binary}: run scripts/bootstrap.sh --tests (scripts/test.sh does)")
    return binary


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> EngineProject:
    base = tmp_path_factory.mktemp("checkov")
    return EngineProject(base / "project", base / "state")


def render(project: EngineProject, stack: str) -> Path:
    stack_file = project.dir / f"Pulumi.{stack}.yaml"
    document = yaml.safe_load(stack_file.read_text())
    override_config(document["config"], dict.fromkeys(CLUSTER_KEYS))
    if stack == "prod":  # the example leaves its images to be pinned by the digests its user verified
        override_config(document["config"], production_config())
    stack_file.write_text(yaml.safe_dump(document, sort_keys=False))
    run = project.engine("up", stack)
    assert run.returncode == 0, run.output
    return project.render_dir(stack)


def findings(manifests: Path, scratch: Path) -> set[tuple[str, str, str]]:
    """(check, kind, name) of every failed check; the name without the pod template hash or Pulumi's suffix."""
    copy = scratch / "manifests"
    shutil.copytree(manifests, copy)
    result = subprocess.run([str(checkov()), "--directory", str(copy), "--framework", "kubernetes", "--output", "json",
                             "--quiet", "--compact"], capture_output=True, text=True, timeout=600)
    assert result.returncode in (0, 1) and result.stdout, result.stderr
    report = json.loads(result.stdout)
    found = set()
    for check in report["results"]["failed_checks"] if report else []:
        kind, _, name = check["resource"].split(".", 3)[:3]
        found.add((check["check_id"], kind, name))
    return found


def base_name(name: str) -> str:
    """pgpool-passwords-1ed7b2b5 -> pgpool-passwords: Pulumi's auto-name suffix changes with the content."""
    head, _, tail = name.rpartition("-")
    return head if head and len(tail) == 8 and all(c in "0123456789abcdef" for c in tail) else name


@pytest.mark.parametrize("stack", STACKS)
def test_every_checkov_finding_is_fixed_or_skipped_with_its_reason(project: EngineProject, stack: str,
                                                                   tmp_path: Path) -> None:
    found = {(check, kind, base_name(name)) for check, kind, name in findings(render(project, stack), tmp_path)}
    expected = EXPECTED[stack]
    assert found - set(expected) == set(), "new checkov findings: fix them or add them to SKIPPED with the reason"
    assert set(expected) - found == set(), "skips that match no finding any more: remove them"
