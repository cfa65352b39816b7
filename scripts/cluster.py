#!/usr/bin/env python3
"""A local Kubernetes cluster: a control plane on the host and one real node, or simulated nodes.

    scripts/cluster.py start [--nodes real|kwok] [--dir DIR]
    scripts/cluster.py stop|status [--dir DIR]

The control plane: etcd (TLS, client certificates only), kube-apiserver (client certificates and
service-account tokens, no anonymous requests, Node and RBAC authorization, the default admission
plugins with PodSecurity and NodeRestriction), kube-controller-manager and kube-scheduler of one
Kubernetes release, built from the Go module proxy by scripts/tools.sh; KubeDB's Postgres CRD installed.

--nodes real (the default; needs root, cgroup v1 and the Debian packages of scripts/install_test_packages.sh):
one node that runs the containers, in network and mount namespaces of its own (localcluster/network.py,
localcluster/node.py): containerd and runc, the CNI bridge, kubelet, kube-proxy, CoreDNS as the cluster DNS,
the images of scripts/images.sh imported before anything is scheduled, and a stand-in for KubeDB's operator
(localcluster/standin.py). The host reaches the Services' ClusterIPs through the node.
--nodes kwok: three simulated nodes (kwok), which mark pods Running and Ready without running them:
what the control plane admits and schedules, in seconds, for tests that need no container.

State (certificates, etcd's data, the node's files, logs, the processes) lives in DIR (default
.state/cluster), readable by its owner only; the admin kubeconfig is DIR/kubeconfig. `stop` ends every
process the cluster started (recognised by pid and start time) and everything in the node, then removes
DIR; a directory that is not a cluster's is never used or removed.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import hashlib
import json
import os
import shlex
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from localcluster import addons, cgroups, network, pki, processes  # noqa: E402
from localcluster.node import CONTAINERD_SOCKET, IMAGE_PREFIX, Node, holder_command  # noqa: E402
from localcluster.processes import Process  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / ".state" / "cluster"
CRDS = ROOT / "scripts" / "crds"
KWOK_NODES = ("kwok-node-0", "kwok-node-1", "kwok-node-2")
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_SERVICE_CIDR = "10.96.0.0/16"
READY_TIMEOUT = 120
STATE_FILE = "cluster.json"


@dataclass
class ClusterState:
    """What a running cluster is made of; saved as DIR/cluster.json."""

    server: str
    nodes: str = "kwok"
    processes: dict[str, dict] = field(default_factory=dict)
    slot: int = 0
    link_index: int | None = None
    cgroup: str = ""

    def process(self, name: str) -> Process:
        return Process(**self.processes[name])


def log(message: str) -> None:
    print(f"[cluster] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def built(*command: str) -> list[str]:
    """The lines a build script prints on stdout (scripts/tools.sh NAME: the path), building on first use."""
    result = subprocess.run([str(ROOT / "scripts" / command[0]), *command[1:]], stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise SystemExit(f"scripts/{' '.join(command)} failed")
    return result.stdout.strip().splitlines()


def tool(name: str) -> Path:
    return Path(built("tools.sh", name)[-1])


@contextlib.contextmanager
def owner_only():
    """Files and directories this process creates meanwhile are its owner's only (the processes it starts get
    the usual umask back: see localcluster/processes.py)."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


class LocalCluster:
    def __init__(self, directory: Path = DEFAULT_DIR):
        self.dir = directory
        self.pki = pki.Pki(directory / "pki")
        self.kubeconfig = directory / "kubeconfig"
        self.state_file = directory / STATE_FILE

    # --- state ------------------------------------------------------------------------------------------

    def state(self) -> ClusterState | None:
        if not self.state_file.exists():
            return None
        return ClusterState(**json.loads(self.state_file.read_text()))

    def _save(self, state: ClusterState) -> None:
        temporary = self.state_file.with_suffix(".tmp")
        temporary.unlink(missing_ok=True)
        pki.write_private(temporary, json.dumps(asdict(state)).encode())
        temporary.replace(self.state_file)

    def running(self) -> bool:
        state = self.state()
        return (bool(state) and all(processes.is_running(state.process(name)) for name in state.processes)
                and self._healthy(state.server))

    def _healthy(self, server: str) -> bool:
        context = ssl.create_default_context(cafile=str(self.pki.ca))
        context.load_cert_chain(self.pki.cert("admin"), self.pki.key("admin"))
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

    def apply(self, manifests: list[dict]) -> None:
        self.kubectl("apply", "--server-side", "--field-manager=pgpool-k8s-local-cluster", "-f", "-",
                     input=yaml.safe_dump_all(manifests))

    def node(self, state: ClusterState | None = None) -> Node | None:
        state = state or self.state()
        if not state or state.nodes != "real":
            return None
        return Node(self.dir / "node", network.NodeNetwork(state.slot), state.process("node").pid,
                    cgroups.NodeCgroup(state.cgroup).path)

    # --- start ------------------------------------------------------------------------------------------

    def _claim_directory(self) -> None:
        """Makes DIR a new cluster's, owner-only; a stale cluster there is stopped first, and a directory that
        holds anything else is refused, never removed."""
        if self.state_file.exists():
            self.stop(quiet=True)
        if self.dir.exists() and any(self.dir.iterdir()):
            raise SystemExit(f"{self.dir} exists and is not a local cluster's directory (no {STATE_FILE}): "
                             "choose another --dir, or empty it yourself")
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        (self.dir / "logs").mkdir(mode=0o700)

    def start(self, nodes: str = "real") -> None:
        if self.running():
            log(f"running; kubeconfig {self.kubeconfig}")
            return
        if nodes == "real":
            check_real_node_host()
            built("install_test_packages.sh")  # the node's Debian packages, once; quiet when installed
        binaries = {name: tool(name) for name in ("kubernetes", "etcd", "kwok" if nodes == "kwok" else "kubernetes-node")}
        if nodes == "real":
            binaries.update({name: tool(name) for name in ("containerd", "runc")})
            images = dict(line.split() for line in built("images.sh", "all"))
        began = time.monotonic()
        with owner_only():
            self._claim_directory()
            state = ClusterState(server="", nodes=nodes)
            self._save(state)
            try:
                if nodes == "real":
                    self._start_real(state, binaries, images)
                else:
                    self._start_kwok(state, binaries)
            except BaseException:
                self._stop_processes(state)  # the logs stay, to say why
                raise
        log(f"ready in {time.monotonic() - began:.1f}s; kubeconfig {self.kubeconfig}")

    def _spawn(self, state: ClusterState, name: str, command: list[str], **options) -> Process:
        process = processes.spawn(command, self.dir / "logs" / f"{name}.log", **options)
        state.processes[name] = asdict(process)
        self._save(state)
        return process

    def _identities(self, api_names: tuple[str, ...], real: Node | None) -> dict:
        identities = {
            "apiserver": pki.server("kube-apiserver", api_names + (
                "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local")),
            "etcd": pki.server("etcd", ("127.0.0.1", "localhost"), also_client=True),
            "apiserver-etcd-client": pki.client("kube-apiserver-etcd-client"),
            "admin": pki.client("pgpool-k8s-admin", "system:masters"),
            "controller-manager": pki.client("system:kube-controller-manager"),
            "scheduler": pki.client("system:kube-scheduler"),
        }
        if real is None:
            identities["kwok"] = pki.client("kwok", "system:masters")
            return identities
        from localcluster.node import NAME
        identities.update({
            "kubelet": pki.client(f"system:node:{NAME}", "system:nodes"),
            "kubelet-serving": pki.server(f"system:node:{NAME}", (real.network.node_ip, NAME)),
            "kube-proxy": pki.client("system:kube-proxy"),
            "apiserver-kubelet-client": pki.client("kube-apiserver-kubelet-client", "system:masters"),
            "kubedb-standin": pki.client(addons.STANDIN_USER),
        })
        return identities

    def _etcd(self, state: ClusterState, etcd: Path) -> str:
        """etcd on 127.0.0.1 that serves only clients (and peers) with a certificate of the cluster's CA."""
        client_port, peer_port = free_port(), free_port()
        tls = [f"--trusted-ca-file={self.pki.ca}", f"--cert-file={self.pki.cert('etcd')}",
               f"--key-file={self.pki.key('etcd')}", "--client-cert-auth",
               f"--peer-trusted-ca-file={self.pki.ca}", f"--peer-cert-file={self.pki.cert('etcd')}",
               f"--peer-key-file={self.pki.key('etcd')}", "--peer-client-cert-auth"]
        self._spawn(state, "etcd", [
            str(etcd), "--name=local", f"--data-dir={self.dir / 'etcd'}", *tls,
            f"--listen-client-urls=https://127.0.0.1:{client_port}",
            f"--advertise-client-urls=https://127.0.0.1:{client_port}",
            f"--listen-peer-urls=https://127.0.0.1:{peer_port}",
            f"--initial-advertise-peer-urls=https://127.0.0.1:{peer_port}",
            f"--initial-cluster=local=https://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync",  # a throw-away cluster: speed over durability
        ])
        return f"https://127.0.0.1:{client_port}"

    def _apiserver_flags(self, real: Node | None) -> list[str]:
        if real is None:
            return ["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--authorization-mode=RBAC",
                    f"--service-cluster-ip-range={KWOK_SERVICE_CIDR}",
                    # The default reconciler refuses a loopback address for the `kubernetes` Service's endpoint.
                    "--endpoint-reconciler-type=none"]
        host = real.network.host_ip
        return [f"--bind-address={host}", f"--advertise-address={host}", "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction", f"--service-cluster-ip-range={real.network.service_cidr}",
                f"--kubelet-client-certificate={self.pki.cert('apiserver-kubelet-client')}",
                f"--kubelet-client-key={self.pki.key('apiserver-kubelet-client')}",
                f"--kubelet-certificate-authority={self.pki.ca}", "--kubelet-preferred-address-types=InternalIP"]

    def _control_plane(self, state: ClusterState, binaries: dict[str, Path], real: Node | None) -> None:
        etcd = self._etcd(state, binaries["etcd"])
        kubernetes = binaries["kubernetes"]
        self._spawn(state, "kube-apiserver", [
            str(kubernetes / "kube-apiserver"), f"--etcd-servers={etcd}", f"--etcd-cafile={self.pki.ca}",
            f"--etcd-certfile={self.pki.cert('apiserver-etcd-client')}",
            f"--etcd-keyfile={self.pki.key('apiserver-etcd-client')}",
            f"--secure-port={state.server.rsplit(':', 1)[1]}", "--anonymous-auth=false",
            f"--tls-cert-file={self.pki.cert('apiserver')}", f"--tls-private-key-file={self.pki.key('apiserver')}",
            f"--client-ca-file={self.pki.ca}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={self.pki.dir / 'service-account.pub'}",
            f"--service-account-signing-key-file={self.pki.dir / 'service-account.key'}",
            "--allow-privileged=false", "--profiling=false", *self._apiserver_flags(real),
        ])
        self._wait(lambda: self._healthy(state.server), "the API server")
        for component in ("controller-manager", "scheduler"):
            kubeconfig = self.dir / f"{component}.kubeconfig"
            self.pki.write_kubeconfig(kubeconfig, state.server, component)
            extra = ([f"--root-ca-file={self.pki.ca}", "--use-service-account-credentials=true",
                      f"--service-account-private-key-file={self.pki.dir / 'service-account.key'}",
                      f"--service-cluster-ip-range={real.network.service_cidr if real else KWOK_SERVICE_CIDR}"]
                     if component == "controller-manager" else [])
            self._spawn(state, f"kube-{component}", [
                str(kubernetes / f"kube-{component}"), f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1", f"--secure-port={free_port()}", "--leader-elect=false",
                "--profiling=false", *extra,
            ])

    def _start_kwok(self, state: ClusterState, binaries: dict[str, Path]) -> None:
        self.pki.create(self._identities(("127.0.0.1", "10.96.0.1"), None))
        state.server = f"https://127.0.0.1:{free_port()}"
        self.pki.write_kubeconfig(self.kubeconfig, state.server, "admin")
        self._save(state)
        self._control_plane(state, binaries, None)
        kwok = binaries["kwok"]
        self.pki.write_kubeconfig(self.dir / "kwok.kubeconfig", state.server, "kwok")
        self._spawn(state, "kwok", [
            str(kwok), f"--config={kwok.parent / 'kwok-stages.yaml'}", f"--kubeconfig={self.dir / 'kwok.kubeconfig'}",
            "--manage-all-nodes=false", f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
            # Node liveness by Lease, as kubelets report it; the heartbeat stage then updates status rarely.
            "--node-lease-duration-seconds=40", f"--server-address=127.0.0.1:{free_port()}",
        ])
        self.apply(kwok_nodes())
        self._install_crds()
        self._wait(lambda: self._ready_nodes() == len(KWOK_NODES), "the simulated nodes")

    def _start_real(self, state: ClusterState, binaries: dict[str, Path], images: dict[str, str]) -> None:
        node_dir = self.dir / "node"
        for directory in (node_dir / "var-lib", node_dir / "var-log"):
            directory.mkdir(parents=True)
        cgroup = cgroups.NodeCgroup("pgpool-k8s-" + hashlib.sha256(str(self.dir).encode()).hexdigest()[:12])
        cgroup.create()
        state.cgroup = cgroup.name
        holder = self._spawn(state, "node", holder_command(node_dir / "var-lib", node_dir / "var-log"),
                             before_exec=cgroup.join)
        self._wait(lambda: Path(f"/proc/{holder.pid}/comm").read_text().strip() == "sleep", "the node's namespaces")
        net = network.connect(holder.pid)
        state.slot, state.link_index = net.slot, network.link_index(net)
        node = self.node(state)
        self.pki.create(self._identities((net.host_ip, net.kubernetes_ip), node))
        state.server = f"https://{net.host_ip}:{free_port()}"
        self.pki.write_kubeconfig(self.kubeconfig, state.server, "admin")
        self._save(state)
        environment = self._start_runtime(state, node, binaries, cgroup, image_reference(images, "pause"))
        importing = concurrent.futures.ThreadPoolExecutor(1).submit(self._import_images, node, binaries, images)
        self._control_plane(state, binaries, node)
        importing.result()  # before the kubelet starts: no pod may ask for an image that is not there yet
        for name, command in node.commands(binaries["containerd"], binaries["kubernetes-node"]).items():
            if name != "containerd":
                self._spawn(state, name, command, env=environment, before_exec=cgroup.join)
        self._install_crds()
        self.apply(addons.standin_rbac() + addons.coredns(image_reference(images, "coredns"), net.dns_ip))
        self._spawn(state, "kubedb-standin", [
            sys.executable, "-m", "localcluster.standin", f"--server={state.server}", f"--ca={self.pki.ca}",
            f"--cert={self.pki.cert('kubedb-standin')}", f"--key={self.pki.key('kubedb-standin')}",
            f"--image={image_reference(images, 'postgresql')}",
        ], env={**os.environ, "PYTHONPATH": str(ROOT / "scripts")})
        self._wait(lambda: self._ready_nodes() == 1, "the node")
        self._wait(lambda: self._deployment_available("kube-system", addons.COREDNS_NAME), "CoreDNS")

    def _start_runtime(self, state: ClusterState, node: Node, binaries: dict[str, Path], cgroup: cgroups.NodeCgroup,
                       sandbox_image: str) -> dict[str, str]:
        """The node's configuration and containerd; returns the environment of the node's daemons."""
        node.write_configs(self.pki, state.server, binaries["runc"], sandbox_image)
        path = f"{binaries['containerd']}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        environment = {"PATH": path, "HOME": str(self.dir / "node")}
        command = node.commands(binaries["containerd"], binaries["kubernetes-node"])["containerd"]
        self._spawn(state, "containerd", command, env=environment, before_exec=cgroup.join)
        self._wait(lambda: node.run(str(binaries["containerd"] / "ctr"), f"--address={CONTAINERD_SOCKET}", "version",
                                    check=False).returncode == 0, "containerd")
        return environment

    @staticmethod
    def _import_images(node: Node, binaries: dict[str, Path], images: dict[str, str]) -> None:
        began = time.monotonic()
        for reference, archive in images.items():
            node.import_image(binaries["containerd"] / "ctr", Path(archive), reference.rsplit(":", 1)[0])
        log(f"{len(images)} images imported in {time.monotonic() - began:.1f}s")

    def _install_crds(self) -> None:
        self.kubectl("apply", "--server-side", "-f", str(CRDS / "kubedb.com_postgreses.yaml"))
        self._wait(self._crds_established, "the CRDs")

    def _wait(self, ready, what: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if ready():
                return
            state = self.state()
            dead = [name for name in (state.processes if state else {})
                    if not processes.is_running(state.process(name))]
            if dead:
                raise SystemExit(f"{', '.join(dead)} exited; see {self.dir / 'logs'}")
            time.sleep(0.5)
        raise SystemExit(f"{what} not ready after {READY_TIMEOUT}s; see {self.dir / 'logs'}")

    def _items(self, *args: str) -> list[dict]:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)["items"]

    def _crds_established(self) -> bool:
        return all(_condition_true(crd, "Established") for crd in self._items("customresourcedefinitions"))

    def _ready_nodes(self) -> int:
        return sum(_condition_true(node, "Ready") for node in self._items("nodes"))

    def _deployment_available(self, namespace: str, name: str) -> bool:
        deployment = json.loads(self.kubectl("get", "deployment", name, "-n", namespace, "-o", "json").stdout)
        return _condition_true(deployment, "Available")

    # --- stop -------------------------------------------------------------------------------------------

    def _stop_processes(self, state: ClusterState) -> None:
        """The node first (its daemons, then whatever is left in its cgroup: containers, shims, the namespaces'
        holder), then the control plane in reverse start order; only processes that are still the recorded ones."""
        node_daemons = ("kubedb-standin", "kube-proxy", "kubelet", "containerd")
        processes.terminate([state.process(name) for name in node_daemons if name in state.processes])
        if state.cgroup:
            cgroup = cgroups.NodeCgroup(state.cgroup)
            cgroup.kill_all()
            cgroup.remove()
        if state.slot:
            network.disconnect(network.NodeNetwork(state.slot), state.link_index)
        control_plane = [name for name in state.processes if name not in node_daemons]
        processes.terminate([state.process(name) for name in control_plane if name != "etcd"])
        processes.terminate([state.process("etcd")] if "etcd" in state.processes else [])

    def stop(self, quiet: bool = False) -> None:
        state = self.state()
        if state is None:
            if not quiet:
                log(f"not running (no {STATE_FILE} in {self.dir}; nothing there is touched)")
            return
        self._stop_processes(state)
        mounted = [point for point in mount_points() if point == self.dir or self.dir in point.parents]
        if mounted:
            raise SystemExit(f"stopped, but {self.dir} is not removed: still mounted there: {mounted}")
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.dir)], check=True)
        if not quiet:
            log("stopped")

    def psql_command(self, outputs: dict) -> str:
        """The command that connects from this machine to Pgpool-II's Service (its ClusterIP, routed to the
        node), over TLS, as the application user whose Secret the stack's outputs name."""
        namespace, secret = outputs["namespace"], outputs["credentialsSecret"]
        service = outputs["pgpoolHost"].split(".", 1)[0]
        address = self.kubectl("get", "service", service, "--namespace", namespace, "--output",
                               "jsonpath={.spec.clusterIP}").stdout
        user = base64.b64decode(self.kubectl("get", "secret", secret, "--namespace", namespace, "--output",
                                             "jsonpath={.data.username}").stdout).decode()
        kubectl = f"kubectl --kubeconfig {shlex.quote(str(self.kubeconfig))} --namespace {namespace}"
        password = f"{kubectl} get secret {secret} --output 'jsonpath={{.data.password}}' | base64 -d"
        return (f'PGPASSWORD="$({password})" psql "host={address} port={outputs["pgpoolPort"]} dbname={user} '
                f'user={user} sslmode=require"')

    def describe(self) -> str:
        state = self.state()
        if state is None or not self.running():
            return "not running"
        description = f"running, {state.nodes} nodes; kubeconfig {self.kubeconfig}"
        node = self.node(state)
        if node:
            description += (f"; node {node.network.node_ip} in network namespace of pid {node.holder_pid}, "
                            f"Services {node.network.service_cidr} routed through {node.network.host_link}")
        return description


def check_real_node_host() -> None:
    """What a real node needs of the host, said before anything is installed, built or started (the Debian
    packages it needs, scripts/install_test_packages.sh installs)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("root (network namespaces, mounts, cgroups, iptables)")
    if not cgroups.version1_available():
        problems.append("cgroup v1 hierarchies under /sys/fs/cgroup")
    if problems:
        raise SystemExit("a real node needs " + "; ".join(problems) + " (or start with --nodes kwok)")


def image_reference(images: dict[str, str], name: str) -> str:
    """The imported image localhost/pgpool-k8s/NAME:<its version>."""
    return next(reference for reference in images if reference.rsplit(":", 1)[0] == f"{IMAGE_PREFIX}/{name}")


def mount_points() -> list[Path]:
    return [Path(line.split()[4]) for line in cgroups.MOUNTINFO.read_text().splitlines()]


def kwok_nodes() -> list[dict]:
    return [{
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "annotations": {FAKE_NODE_ANNOTATION: "fake"},
                     "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                "kubernetes.io/arch": "amd64", "type": "kwok"}},
        "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                   "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110"}},
    } for name in KWOK_NODES]


def _condition_true(obj: dict, condition: str) -> bool:
    return any(c["type"] == condition and c["status"] == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("start", "stop", "status"))
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--nodes", choices=("real", "kwok"), default="real",
                        help="start: one real node (default) or three simulated ones")
    args = parser.parse_args(argv)
    cluster = LocalCluster(args.dir.resolve())
    if args.command == "start":
        cluster.start(args.nodes)
    elif args.command == "stop":
        cluster.stop()
    else:
        description = cluster.describe()
        print(description)
        return 0 if description.startswith("running") else 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
