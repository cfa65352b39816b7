"""Stops `make up` early, naming the pod and the reason, when a pod of the stack cannot start.

The Kubernetes provider awaits a Deployment's rollout until its timeout (ten minutes) and then reports
that the rollout did not complete, whatever made its pods fail. A pod whose image cannot be had, whose
command is not in the image, whose probe names a program the image lacks, or that restarts in a loop,
will not get better by waiting. While `up` runs on a cluster, this watch reads the stack namespace's
pods and events; when such a state has lasted GRACE seconds it interrupts the Pulumi CLI as Ctrl-C
would (the engine cancels, nothing is replaced, the previous ReplicaSet keeps serving) and says why.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

GRACE = 10.0
POLL = 3.0
STUCK_REASONS = frozenset({"CrashLoopBackOff", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName",
                           "CreateContainerConfigError", "CreateContainerError", "RunContainerError"})
"""Waiting reasons that the kubelet keeps reporting until the pod's spec or the cluster changes."""
PROBE_CANNOT_RUN = re.compile(r"probe errored.*(executable file not found|no such file or directory|permission denied)",
                              re.IGNORECASE)
"""An exec probe whose program cannot be run at all: it can never succeed."""


def stuck_containers(pod: dict) -> list[str]:
    """`container NAME: REASON: message` for each container of the pod stuck in a state it will not leave."""
    found = []
    statuses = pod.get("status", {})
    for status in statuses.get("initContainerStatuses", []) + statuses.get("containerStatuses", []):
        waiting = status.get("state", {}).get("waiting") or {}
        if waiting.get("reason") not in STUCK_REASONS:
            continue
        last = status.get("lastState", {}).get("terminated")
        if last:  # why it stopped the last time says more than the back-off does
            detail = (f"last run {last.get('reason', 'ended')} with exit code {last.get('exitCode')}"
                      + (f": {last['message'].strip()}" if last.get("message") else ""))
        else:
            detail = (waiting.get("message") or "").strip()
        found.append(f"container {status['name']}: {waiting['reason']}" + (f" ({detail})" if detail else ""))
    return found


def probe_failures(events: list[dict]) -> dict[str, list[str]]:
    """Per pod name, the kubelet's reports of probes that cannot run."""
    found: dict[str, list[str]] = {}
    for event in events:
        message = event.get("message", "")
        if event.get("reason") == "Unhealthy" and PROBE_CANNOT_RUN.search(message):
            found.setdefault(event["involvedObject"]["name"], []).append(message.strip())
    return found


class PodWatch:
    """While open, watches NAMESPACE through `kubectl` (a function taking kubectl's arguments); `findings`
    lists what stopped the update, if anything did."""

    def __init__(self, kubectl: Callable[..., subprocess.CompletedProcess], namespace: str, grace: float = GRACE):
        self.kubectl = kubectl
        self.namespace = namespace
        self.grace = grace
        self.findings: list[str] = []
        self._seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "PodWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _items(self, kind: str) -> list[dict]:
        result = self.kubectl("get", kind, "--namespace", self.namespace, "--output", "json")
        return json.loads(result.stdout)["items"] if result.returncode == 0 else []

    def problems(self) -> dict[str, list[str]]:
        """Per pod, what keeps it from starting now."""
        current = {pod["metadata"]["name"]: stuck_containers(pod) for pod in self._items("pods")
                   if not pod["metadata"].get("deletionTimestamp")}
        for name, messages in probe_failures(self._items("events")).items():
            if name in current:
                current[name] += [f"probe cannot run: {message}" for message in dict.fromkeys(messages)]
        return {name: reasons for name, reasons in current.items() if reasons}

    def _run(self) -> None:
        while not self._stop.wait(POLL):
            now = time.monotonic()
            problems = self.problems()
            self._seen = {name: self._seen.get(name, now) for name in problems}
            lasting = {name: problems[name] for name, since in self._seen.items() if now - since >= self.grace}
            if lasting:
                self.findings = [f"pod {self.namespace}/{name} cannot start: {'; '.join(reasons)}"
                                 for name, reasons in sorted(lasting.items())]
                interrupt_pulumi()
                return


def interrupt_pulumi() -> None:
    """SIGINT to the Pulumi CLI processes this process started (the Automation API's), as Ctrl-C."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)
        except OSError:
            continue
        command, parent = fields[0].split(" (", 1)[1], int(fields[1].split()[1])
        if parent == os.getpid() and command == "pulumi":
            os.kill(int(stat.parent.name), signal.SIGINT)
