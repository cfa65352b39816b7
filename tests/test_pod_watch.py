"""What makes `make up` stop early on a cluster (scripts/pod_watch.py): pods that will not start by waiting."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import pod_watch  # noqa: E402
from pod_watch import PodWatch, probe_failures, stuck_containers  # noqa: E402

START_ERROR = ('failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create '
               'failed: unable to start container process: error during container init: exec: '
               '"/opt/pgpool-II/bin/pgpool": stat /opt/pgpool-II/bin/pgpool: no such file or directory')


def pod(name: str, waiting: dict | None = None, last: dict | None = None, init: bool = False) -> dict:
    status = {"name": "pgpool", "restartCount": 1, "state": {"waiting": waiting} if waiting else {"running": {}},
              "lastState": {"terminated": last} if last else {}}
    key = "initContainerStatuses" if init else "containerStatuses"
    return {"metadata": {"name": name}, "status": {key: [status]}}


def test_a_crash_loop_is_reported_with_why_the_last_run_ended():
    stuck = pod("pgpool-1", {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container"},
                {"reason": "StartError", "exitCode": 128, "message": START_ERROR})
    [found] = stuck_containers(stuck)
    assert found.startswith("container pgpool: CrashLoopBackOff (last run StartError with exit code 128: ")
    assert "/opt/pgpool-II/bin/pgpool: no such file or directory" in found


def test_states_that_pass_by_themselves_are_not_reported():
    for waiting in ({"reason": "ContainerCreating"}, {"reason": "PodInitializing"}, {"reason": "ErrImagePull"}):
        assert stuck_containers(pod("p", waiting)) == []
    assert stuck_containers(pod("p")) == []
    assert stuck_containers(pod("p", {"reason": "CreateContainerConfigError", "message": 'secret "x" not found'},
                                init=True)) == ['container pgpool: CreateContainerConfigError (secret "x" not found)']


def test_only_probes_that_cannot_run_count():
    events = [
        {"reason": "Unhealthy", "involvedObject": {"name": "a"},
         "message": 'Startup probe errored: exec failed: exec: "/opt/pgpool-II/bin/nope": stat: no such file or directory'},
        {"reason": "Unhealthy", "involvedObject": {"name": "b"}, "message": "Readiness probe failed: connection refused"},
        {"reason": "Unhealthy", "involvedObject": {"name": "c"},
         "message": "Readiness probe errored: rpc error: container is not running"},
    ]
    assert list(probe_failures(events)) == ["a"]


def test_a_lasting_problem_interrupts_the_update_and_is_named(monkeypatch):
    broken = pod("pgpool-2", {"reason": "RunContainerError", "message": START_ERROR})
    interrupted = []
    monkeypatch.setattr(pod_watch, "POLL", 0.05)
    monkeypatch.setattr(pod_watch, "interrupt_pulumi", lambda: interrupted.append(True))

    def kubectl(*args: str) -> subprocess.CompletedProcess:
        items = [broken] if args[1] == "pods" else []
        return subprocess.CompletedProcess(args, 0, json.dumps({"items": items}), "")

    with PodWatch(kubectl, "ns", grace=0.2) as watch:
        deadline = time.monotonic() + 5
        while not interrupted and time.monotonic() < deadline:
            time.sleep(0.05)
    assert interrupted
    assert watch.findings == [f"pod ns/pgpool-2 cannot start: container pgpool: RunContainerError ({START_ERROR})"]
