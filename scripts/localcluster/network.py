"""The node's own network and mount namespaces, and the one veth pair that joins them to the host.

The node (containerd, kubelet, kube-proxy, the pods' bridge and every iptables rule kube-proxy and the
CNI plugins write) runs in a network namespace of its own, so nothing of it touches the host's tables
and several local clusters can run side by side. A holder process keeps the namespaces alive; when the
last process inside them exits, the kernel removes them, with the veth pair, the routes over it and
every mount made inside. Each cluster takes a free slot K (under a machine-wide lock), which names its
addresses:

    host  pgk8s-K   172.30.K.1/30  --veth--  eth0 172.30.K.2/30  node (kubelet, kube-proxy, NodePorts)
    Services        10.96.K.0/24   routed by the host to 172.30.K.2, where kube-proxy takes them
    pods            10.244.0.0/24  on the node's bridge cni0, masqueraded when they leave the node

The API server listens on 172.30.K.1 and etcd on 127.0.0.1: only the host and this cluster reach them.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

LOCK = Path("/run/lock/pgpool-k8s-network.lock")
SLOTS = range(1, 255)
POD_CIDR = "10.244.0.0/24"
CLUSTER_CIDR = "10.244.0.0/16"


@dataclass(frozen=True)
class NodeNetwork:
    slot: int

    @property
    def host_link(self) -> str:
        return f"pgk8s-{self.slot}"

    @property
    def host_ip(self) -> str:
        return f"172.30.{self.slot}.1"

    @property
    def node_ip(self) -> str:
        return f"172.30.{self.slot}.2"

    @property
    def link_cidr(self) -> str:
        return f"172.30.{self.slot}.0/30"

    @property
    def service_cidr(self) -> str:
        return f"10.96.{self.slot}.0/24"

    def service_ip(self, index: int) -> str:
        return str(ipaddress.ip_network(self.service_cidr)[index])

    @property
    def kubernetes_ip(self) -> str:
        """The `kubernetes` Service: the first address of the range."""
        return self.service_ip(1)

    @property
    def dns_ip(self) -> str:
        return self.service_ip(10)


def _run(*command: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()}")
    return result.stdout


def _host_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the host has an address or a route in."""
    networks = []
    for route in json.loads(_run("ip", "-j", "-4", "route", "show", "table", "all")):
        if route.get("dst", "").replace("default", "0.0.0.0/0") not in ("", "0.0.0.0/0"):
            networks.append(ipaddress.ip_network(route["dst"], strict=False))
    for link in json.loads(_run("ip", "-j", "-4", "addr")):
        for address in link.get("addr_info", []):
            networks.append(ipaddress.ip_network(f"{address['local']}/{address['prefixlen']}", strict=False))
    return networks


def _free(network: NodeNetwork, taken: list[ipaddress.IPv4Network]) -> bool:
    if Path("/sys/class/net", network.host_link).exists():
        return False
    ours = [ipaddress.ip_network(network.link_cidr), ipaddress.ip_network(network.service_cidr)]
    return not any(mine.overlaps(other) for mine in ours for other in taken)


@contextlib.contextmanager
def machine_lock():
    """Held while a slot is chosen and its link created, so two clusters never take the same one."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def connect(holder_pid: int) -> NodeNetwork:
    """Takes a free slot and joins the holder's network namespace to the host."""
    with machine_lock():
        taken = _host_networks()
        network = next((n for n in map(NodeNetwork, SLOTS) if _free(n, taken)), None)
        if network is None:
            raise RuntimeError(f"no free slot for a local cluster's network (172.30.K.0/30, 10.96.K.0/24, K in "
                               f"{SLOTS.start}..{SLOTS.stop - 1})")
        _run("ip", "link", "add", network.host_link, "type", "veth", "peer", "name", "eth0",
             "netns", str(holder_pid))
    inside = ["nsenter", f"--target={holder_pid}", "--net", "--"]
    _run(*inside, "ip", "link", "set", "lo", "up")
    _run(*inside, "ip", "address", "add", f"{network.node_ip}/30", "dev", "eth0")
    _run(*inside, "ip", "link", "set", "eth0", "up")
    _run(*inside, "ip", "route", "add", "default", "via", network.host_ip)
    _run(*inside, "sysctl", "-qw", "net.ipv4.ip_forward=1")  # this namespace's own setting
    _run("ip", "address", "add", f"{network.host_ip}/30", "dev", network.host_link)
    _run("ip", "link", "set", network.host_link, "up")
    _run("ip", "route", "add", network.service_cidr, "via", network.node_ip, "dev", network.host_link)
    return network


def link_index(network: NodeNetwork) -> int | None:
    try:
        return int(Path("/sys/class/net", network.host_link, "ifindex").read_text())
    except FileNotFoundError:
        return None


def disconnect(network: NodeNetwork, index: int | None) -> None:
    """Deletes the host's end of the veth pair (and so both ends and the routes over it), if it is still
    the one this cluster created; gone already when the node's namespace went."""
    if index is not None and link_index(network) == index:
        subprocess.run(["ip", "link", "delete", network.host_link], capture_output=True)
