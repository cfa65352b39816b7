"""The local cluster (scripts/cluster.py) keeps other local users out and touches only what it started.

Its control plane (the same for both kinds of nodes) runs here with simulated nodes, which start in seconds.
Another local user is played by `nobody`; a process that took over a saved pid by a `sleep`.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "cluster.py"
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]

sys.path.insert(0, str(ROOT / "scripts"))
from localcluster import pki  # noqa: E402


def cluster(*args: str, umask: int = 0o022) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          preexec_fn=lambda: os.umask(umask))


@pytest.fixture(scope="module")
def running(tmp_path_factory) -> Path:
    """A cluster started under umask 000, so that nothing is private unless the cluster makes it so."""
    directory = tmp_path_factory.mktemp("secured") / "cluster"
    started = cluster("start", "--nodes", "kwok", "--dir", str(directory), umask=0)
    assert started.returncode == 0, started.stderr
    yield directory
    cluster("stop", "--dir", str(directory))


def state(directory: Path) -> dict:
    return json.loads((directory / "cluster.json").read_text())


def listen_url(pid: int, flag: str) -> str:
    """What any local user sees of a process: its command line."""
    arguments = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    return next(a.split("=", 1)[1] for a in arguments if a.startswith(flag + "="))


def as_nobody(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([*AS_NOBODY, "/usr/bin/python3", "-c", code], capture_output=True, text=True, timeout=30)


READ_SECRETS = """
import base64, json, ssl, sys, urllib.request
url = sys.argv[1] if len(sys.argv) > 1 else {url!r}
body = json.dumps({{"key": base64.b64encode(b"/registry/secrets/").decode(),
                   "range_end": base64.b64encode(b"/registry/secrets0").decode()}}).encode()
for scheme in ("http", "https"):
    target = url.replace("https://", scheme + "://") + "/v3/kv/range"
    try:
        context = ssl._create_unverified_context()
        with urllib.request.urlopen(target, data=body, context=context, timeout=5) as answer:
            print(scheme, answer.status, answer.read()[:200])
    except Exception as error:
        print(scheme, "refused:", type(error).__name__, error)
"""


def test_etcd_serves_no_local_user_without_a_cluster_certificate(running: Path):
    url = listen_url(state(running)["processes"]["etcd"]["pid"], "--listen-client-urls")
    answer = as_nobody(READ_SECRETS.format(url=url))
    assert answer.returncode == 0, answer.stderr
    lines = answer.stdout.splitlines()
    assert len(lines) == 2 and all("refused" in line or " 400 " in line for line in lines), answer.stdout
    assert "kvs" not in answer.stdout


def test_api_server_refuses_anonymous_requests(running: Path):
    server = state(running)["server"]
    for path in ("/version", "/healthz", "/api/v1/namespaces/kube-system/secrets"):
        answer = as_nobody(f"""
import ssl, urllib.request, urllib.error
try:
    urllib.request.urlopen({server + path!r}, context=ssl._create_unverified_context(), timeout=5)
    print("answered")
except urllib.error.HTTPError as error:
    print(error.code)
""")
        assert answer.stdout.strip() == "401", (path, answer.stdout, answer.stderr)


def test_state_is_readable_by_its_owner_only(running: Path):
    assert stat.S_IMODE(running.stat().st_mode) == 0o700
    exposed = []
    for path in [running, *running.rglob("*")]:
        if path.is_symlink():
            continue
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            exposed.append(f"{path.relative_to(running)} {stat.filemode(path.stat().st_mode)}")
    assert not exposed, exposed
    for name in ("cluster.json", "kubeconfig", "pki/ca.key", "logs/etcd.log"):
        denied = subprocess.run([*AS_NOBODY, "cat", str(running / name)], capture_output=True, text=True)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr, name


def test_key_files_are_created_private_not_chmodded_afterwards(tmp_path: Path, monkeypatch):
    """A key written first and chmod'ed after is readable by anyone in between: each must be created 0600."""
    created: dict[str, int] = {}
    original_open, original_write = os.open, Path.write_bytes

    def recording_open(path, flags, mode=0o777, *args, **kwargs):
        if flags & os.O_CREAT:
            created[str(path)] = mode if flags & os.O_EXCL else -1
        return original_open(path, flags, mode, *args, **kwargs)

    def recording_write(path: Path, data: bytes) -> int:
        created.setdefault(str(path), -1)  # created with the umask's mode, before any chmod
        return original_write(path, data)

    monkeypatch.setattr(os, "open", recording_open)
    monkeypatch.setattr(Path, "write_bytes", recording_write)
    previous = os.umask(0)
    try:
        keys = pki.Pki(tmp_path / "pki")
        keys.create({"admin": pki.client("admin", "system:masters")})
        keys.write_kubeconfig(tmp_path / "kubeconfig", "https://127.0.0.1:1", "admin")
    finally:
        os.umask(previous)
    private = {path: mode for path, mode in created.items() if path.endswith((".key", "kubeconfig"))}
    assert len(private) == 4, created  # ca.key, admin.key, service-account.key, kubeconfig
    assert set(private.values()) == {0o600}, private


def test_stop_signals_no_process_that_holds_a_saved_pid_now(tmp_path: Path):
    """After a crash or a reboot a saved pid may belong to anything; stop (and start over the stale state)
    must leave it alone."""
    directory = tmp_path / "cluster"
    started = cluster("start", "--nodes", "kwok", "--dir", str(directory))
    assert started.returncode == 0, started.stderr
    saved = state(directory)
    for record in saved["processes"].values():
        os.kill(record["pid"], 9)  # the cluster dies...
    # ...and an unrelated process, a session leader like the cluster's own, gets one of its pids.
    bystander = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        saved["processes"]["etcd"]["pid"] = bystander.pid
        (directory / "cluster.json").write_text(json.dumps(saved))
        restarted = cluster("start", "--nodes", "kwok", "--dir", str(directory))
        assert restarted.returncode == 0, restarted.stderr
        stopped = cluster("stop", "--dir", str(directory))
        assert stopped.returncode == 0, stopped.stderr
        with pytest.raises(subprocess.TimeoutExpired):
            bystander.wait(timeout=2)  # a signalled sleep would have ended at once
    finally:
        bystander.kill()
        cluster("stop", "--dir", str(directory))


def test_start_and_stop_leave_a_directory_that_is_not_a_clusters_alone(tmp_path: Path):
    directory = tmp_path / "mine"
    directory.mkdir()
    (directory / "precious").write_text("keep me")
    started = cluster("start", "--nodes", "kwok", "--dir", str(directory))
    assert started.returncode != 0
    assert "not a local cluster's directory" in started.stderr, started.stderr
    stopped = cluster("stop", "--dir", str(directory))
    assert stopped.returncode == 0, stopped.stderr
    assert (directory / "precious").read_text() == "keep me"
