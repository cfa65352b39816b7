#!/usr/bin/env python3
"""A local Kubernetes control plane on 127.0.0.1, with simulated nodes: no containers, no VM.

    scripts/cluster.py start|stop|status [--dir DIR]

etcd, kube-apiserver (client-certificate authentication, RBAC authorization, the default admission
plugins, PodSecurity among them), kube-controller-manager and kube-scheduler of one Kubernetes release,
and kwok, which runs simulated nodes and marks the pods scheduled on them Running and Ready: Deployments
roll out, Services get endpoints, namespaces are finalized, yet no container image is ever pulled. The
binaries are built from the Go module proxy by scripts/tools.sh. KubeDB's Postgres CRD is installed.

State (certificates, etcd's data, logs, the processes) lives in DIR (default .state/cluster); the admin
kubeconfig is DIR/kubeconfig. Ports are free ones picked at start. `stop` stops every process and
removes DIR; `start` on a running cluster only checks it.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / ".state" / "cluster"
CRDS = ROOT / "scripts" / "crds"
NODES = ("kwok-node-0", "kwok-node-1", "kwok-node-2")
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
SERVICE_CIDR = "10.96.0.0/16"
READY_TIMEOUT = 60


@dataclass
class ClusterState:
    """What a running cluster is made of; saved as DIR/cluster.json."""

    server: str
    pids: dict[str, int] = field(default_factory=dict)


def log(message: str) -> None:
    print(f"[cluster] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def built(tool: str) -> Path:
    """Path that scripts/tools.sh prints for a tool, building it on first use."""
    result = subprocess.run([str(ROOT / "scripts" / "tools.sh"), tool], stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise SystemExit(f"scripts/tools.sh {tool} failed")
    return Path(result.stdout.strip().splitlines()[-1])


# --- certificates -----------------------------------------------------------------------------------


def _write_key(key, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _certificate(subject: x509.Name, key, issuer: x509.Name, issuer_key, *, ca: bool = False,
                 server_names: tuple[str, ...] = (), client: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True)
    if server_names:
        names = [x509.IPAddress(ipaddress.ip_address(n)) if n[0].isdigit() else x509.DNSName(n) for n in server_names]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server_names else []) + ([ExtendedKeyUsageOID.CLIENT_AUTH]
                                                                              if client else [])
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _name(common_name: str, organization: str = "") -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def write_pki(pki: Path) -> None:
    """A CA, the API server's serving certificate, client certificates per component, the
    service-account signing key."""
    pki.mkdir(parents=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("pgpool-k8s local cluster CA")
    ca = _certificate(ca_name, ca_key, ca_name, ca_key, ca=True)
    (pki / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    _write_key(ca_key, pki / "ca.key")
    service_ip = str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))
    identities = {
        "apiserver": (_name("kube-apiserver"), ("127.0.0.1", "localhost", service_ip, "kubernetes",
                                                 "kubernetes.default", "kubernetes.default.svc",
                                                 "kubernetes.default.svc.cluster.local")),
        "admin": (_name("pgpool-k8s-admin", "system:masters"), ()),
        "controller-manager": (_name("system:kube-controller-manager"), ()),
        "scheduler": (_name("system:kube-scheduler"), ()),
        "kwok": (_name("kwok", "system:masters"), ()),
    }
    for identity, (subject, server_names) in identities.items():
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(subject, key, ca_name, ca_key, server_names=server_names, client=not server_names)
        (pki / f"{identity}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, pki / f"{identity}.key")
    signing = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(signing, pki / "service-account.key")
    (pki / "service-account.pub").write_bytes(signing.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def write_kubeconfig(path: Path, server: str, pki: Path, identity: str) -> None:
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "pgpool-k8s-local",
        "clusters": [{"name": "pgpool-k8s-local", "cluster": {
            "server": server, "certificate-authority": str(pki / "ca.crt")}}],
        "users": [{"name": identity, "user": {
            "client-certificate": str(pki / f"{identity}.crt"), "client-key": str(pki / f"{identity}.key")}}],
        "contexts": [{"name": "pgpool-k8s-local", "context": {"cluster": "pgpool-k8s-local", "user": identity}}],
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)


# --- processes --------------------------------------------------------------------------------------


class LocalCluster:
    def __init__(self, directory: Path = DEFAULT_DIR):
        self.dir = directory
        self.pki = directory / "pki"
        self.kubeconfig = directory / "kubeconfig"
        self.state_file = directory / "cluster.json"

    def state(self) -> ClusterState | None:
        if not self.state_file.exists():
            return None
        return ClusterState(**json.loads(self.state_file.read_text()))

    def _save(self, state: ClusterState) -> None:
        self.state_file.write_text(json.dumps(asdict(state)))

    def running(self) -> bool:
        state = self.state()
        return bool(state) and all(_alive(pid) for pid in state.pids.values()) and self._healthy(state.server)

    def _healthy(self, server: str) -> bool:
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        context.load_cert_chain(self.pki / "admin.crt", self.pki / "admin.key")
        try:
            with urllib.request.urlopen(f"{server}/readyz", context=context, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), *args], input=input,
                                capture_output=True, text=True)
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
        return result

    def start(self) -> None:
        if self.running():
            log(f"running; kubeconfig {self.kubeconfig}")
            return
        self.stop(quiet=True)
        binaries = {tool: built(tool) for tool in ("kubernetes", "etcd", "kwok")}
        began = time.monotonic()
        self.dir.mkdir(parents=True)
        (self.dir / "logs").mkdir()
        write_pki(self.pki)
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        server = f"https://127.0.0.1:{api_port}"
        state = ClusterState(server=server)
        write_kubeconfig(self.kubeconfig, server, self.pki, "admin")
        for identity in ("controller-manager", "scheduler", "kwok"):
            write_kubeconfig(self.dir / f"{identity}.kubeconfig", server, self.pki, identity)
        try:
            self._spawn(state, "etcd", [
                str(binaries["etcd"]), "--name=local", f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=local=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync",  # a throw-away cluster: speed over durability
            ])
            kubernetes = binaries["kubernetes"]
            self._spawn(state, "kube-apiserver", [
                str(kubernetes / "kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={api_port}",
                f"--tls-cert-file={self.pki / 'apiserver.crt'}", f"--tls-private-key-file={self.pki / 'apiserver.key'}",
                f"--client-ca-file={self.pki / 'ca.crt'}", "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={self.pki / 'service-account.pub'}",
                f"--service-account-signing-key-file={self.pki / 'service-account.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}", "--allow-privileged=false", "--profiling=false",
                # The default reconciler refuses a loopback address for the `kubernetes` Service's endpoint.
                "--endpoint-reconciler-type=none",
            ])
            self._wait(lambda: self._healthy(server), "the API server")
            self._spawn(state, "kube-controller-manager", [
                str(kubernetes / "kube-controller-manager"), f"--kubeconfig={self.dir / 'controller-manager.kubeconfig'}",
                f"--authentication-kubeconfig={self.dir / 'controller-manager.kubeconfig'}",
                f"--authorization-kubeconfig={self.dir / 'controller-manager.kubeconfig'}",
                "--bind-address=127.0.0.1", f"--secure-port={free_port()}", "--leader-elect=false",
                "--use-service-account-credentials=true", f"--root-ca-file={self.pki / 'ca.crt'}",
                f"--service-account-private-key-file={self.pki / 'service-account.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}", "--profiling=false",
            ])
            self._spawn(state, "kube-scheduler", [
                str(kubernetes / "kube-scheduler"), f"--kubeconfig={self.dir / 'scheduler.kubeconfig'}",
                f"--authentication-kubeconfig={self.dir / 'scheduler.kubeconfig'}",
                f"--authorization-kubeconfig={self.dir / 'scheduler.kubeconfig'}",
                "--bind-address=127.0.0.1", f"--secure-port={free_port()}", "--leader-elect=false",
                "--profiling=false",
            ])
            self._spawn(state, "kwok", [
                str(binaries["kwok"]), f"--config={binaries['kwok'].parent / 'kwok-stages.yaml'}",
                f"--kubeconfig={self.dir / 'kwok.kubeconfig'}",
                "--manage-all-nodes=false", f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
                # Node liveness by Lease, as kubelets report it; the heartbeat stage then updates status rarely.
                "--node-lease-duration-seconds=40",
                f"--server-address=127.0.0.1:{free_port()}",
            ])
            self._add_nodes()
            self.kubectl("apply", "--server-side", "-f", str(CRDS / "kubedb.com_postgreses.yaml"))
            self._wait(self._crds_established, "the CRDs")
            self._wait(self._nodes_ready, "the simulated nodes")
        except BaseException:
            self._stop_processes()  # the logs stay, to say why
            raise
        log(f"ready in {time.monotonic() - began:.1f}s; kubeconfig {self.kubeconfig}")

    def _spawn(self, state: ClusterState, name: str, command: list[str]) -> None:
        output = (self.dir / "logs" / f"{name}.log").open("w")
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
        state.pids[name] = process.pid
        self._save(state)

    def _wait(self, ready, what: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if ready():
                return
            state = self.state()
            dead = [name for name, pid in state.pids.items() if not _alive(pid)] if state else []
            if dead:
                raise SystemExit(f"{', '.join(dead)} exited; see {self.dir / 'logs'}")
            time.sleep(0.5)
        raise SystemExit(f"{what} not ready after {READY_TIMEOUT}s; see {self.dir / 'logs'}")

    def _add_nodes(self) -> None:
        nodes = [{
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": {FAKE_NODE_ANNOTATION: "fake"},
                         "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                    "kubernetes.io/arch": "amd64", "type": "kwok"}},
            "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                       "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110"}},
        } for name in NODES]
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(nodes))

    def _crds_established(self) -> bool:
        crds = json.loads(self.kubectl("get", "customresourcedefinitions", "-o", "json").stdout)["items"]
        return all(_condition_true(crd, "Established") for crd in crds)

    def _nodes_ready(self) -> bool:
        nodes = json.loads(self.kubectl("get", "nodes", "-o", "json").stdout)["items"]
        return sum(_condition_true(node, "Ready") for node in nodes) == len(NODES)

    def _stop_processes(self) -> None:
        state = self.state()
        if state:
            # Reverse start order, so nothing logs errors about what stopped before it.
            for pid in reversed(list(state.pids.values())):
                _terminate(pid)

    def stop(self, quiet: bool = False) -> None:
        self._stop_processes()
        if self.dir.exists():
            subprocess.run(["rm", "-rf", str(self.dir)], check=True)
            if not quiet:
                log("stopped")
        elif not quiet:
            log("not running")


def _condition_true(obj: dict, condition: str) -> bool:
    return any(c["type"] == condition and c["status"] == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie left by a parent that has not reaped it is not running.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _terminate(pid: int, grace: float = 10.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("start", "stop", "status"))
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args(argv)
    cluster = LocalCluster(args.dir.resolve())
    if args.command == "start":
        cluster.start()
    elif args.command == "stop":
        cluster.stop()
    else:
        running = cluster.running()
        print(f"{'running' if running else 'not running'}" + (f"; kubeconfig {cluster.kubeconfig}" if running else ""))
        return 0 if running else 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
