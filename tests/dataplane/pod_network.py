"""Pods with network namespaces of their own, and the stack's NetworkPolicies enforced between them.

Each pod is a network namespace with one address on a bridge made for the test run; its processes are
started inside it (the starting thread enters the namespace, so the child is born there) and listen on
their container ports. The host is on the bridge too, as a node is: the kubelet's probes and the test's
own administration come from it, and NetworkPolicy implementations admit a pod's node. A pod that a
NetworkPolicy with policyTypes Ingress selects gets, in its own namespace, iptables rules that accept
established traffic, loopback, its node, and each ingress rule's peers on the rule's ports, then drop
the rest: the rule set a CNI's policy agent installs per pod. Which peers a rule admits follows the
NetworkPolicy API (matchLabels pod and namespace selectors; an empty selector is every pod, or every
namespace; no `from` is every source; no `ports` is every port). Everything is removed afterwards.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import subprocess
from dataclasses import dataclass, field
from typing import Iterator

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"setns: {os.strerror(error)}")


@contextlib.contextmanager
def entered(netns: str | None) -> Iterator[None]:
    """This thread in network namespace `netns` (None: where it is): the processes it starts and the
    sockets it opens belong there; afterwards the thread is back where it was."""
    if netns is None:
        yield
        return
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        _setns(target)
        yield
    finally:
        _setns(own)
        os.close(own)
        os.close(target)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass(frozen=True)
class Pod:
    name: str
    netns: str
    address: str
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)


class PodNetwork:
    """A bridge and network namespaces named for one test run; `close` removes them all."""

    def __init__(self, namespace_labels: dict[str, dict[str, str]]):
        self.tag = f"{os.getpid() % 10000:04d}"
        self.bridge = f"pn{self.tag}br"
        self.namespace_labels = namespace_labels
        """Labels of each Kubernetes namespace the pods live in, by name."""
        self.subnet = self._free_subnet()
        hosts = self.subnet.hosts()
        self.node = str(next(hosts))
        self._addresses = hosts
        self.pods: dict[str, Pod] = {}
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.node}/{self.subnet.prefixlen}", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")

    @staticmethod
    def _free_subnet() -> ipaddress.IPv4Network:
        routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=True).stdout
        for third in range(os.getpid() % 200, os.getpid() % 200 + 200):
            subnet = ipaddress.ip_network(f"10.234.{third % 250}.0/24")
            if str(subnet) not in routes:
                return subnet
        raise RuntimeError("no free 10.234.x.0/24 subnet for the pods")

    def add(self, name: str, namespace: str, labels: dict[str, str]) -> Pod:
        netns, veth = f"pn{self.tag}-{name}", f"pn{self.tag}{len(self.pods)}"
        pod = Pod(name, netns, str(next(self._addresses)), namespace, dict(labels))
        ip("netns", "add", netns)
        ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
        ip("link", "set", veth, "master", self.bridge, "up")
        ip("-n", netns, "addr", "add", f"{pod.address}/{self.subnet.prefixlen}", "dev", "eth0")
        ip("-n", netns, "link", "set", "eth0", "up")
        ip("-n", netns, "link", "set", "lo", "up")
        self.pods[name] = pod
        return pod

    def enforce(self, policies: list[dict]) -> dict[str, list[str]]:
        """Install every pod's ingress rules from `policies` (NetworkPolicy objects, camelCase); returns
        the rules by pod, for the test's report."""
        installed = {}
        for pod in self.pods.values():
            selecting = [p for p in policies if p["metadata"]["namespace"] == pod.namespace
                         and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
                         and _matches(p["spec"]["podSelector"], pod.labels)]
            if not selecting:
                continue
            rules = ["-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT", "-i lo -j ACCEPT",
                     f"-s {self.node} -j ACCEPT"]
            for policy in selecting:
                for ingress in policy["spec"].get("ingress", []):
                    sources = [peer for peer in self.pods.values() if self._admits(ingress, policy, peer)]
                    ports = [str(p["port"]) for p in ingress.get("ports", [])] or [None]
                    rules += [f"-s {peer.address} -p tcp" + (f" --dport {port}" if port else "") + " -j ACCEPT"
                              for peer in sources for port in ports]
            rules.append("-j DROP")
            for rule in rules:
                subprocess.run(["ip", "netns", "exec", pod.netns, "iptables", "-A", "INPUT", *rule.split()],
                               check=True, capture_output=True, text=True)
            installed[pod.name] = rules
        return installed

    def _admits(self, ingress: dict, policy: dict, peer: Pod) -> bool:
        if "from" not in ingress:
            return True
        for source in ingress["from"]:
            namespaces = source.get("namespaceSelector")
            if namespaces is None:
                in_namespace = peer.namespace == policy["metadata"]["namespace"]
            else:
                in_namespace = _matches(namespaces, self.namespace_labels.get(peer.namespace, {}))
            if in_namespace and _matches(source.get("podSelector", {}), peer.labels):
                return True
        return False

    def close(self) -> None:
        for pod in self.pods.values():
            subprocess.run(["ip", "netns", "del", pod.netns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


def _matches(selector: dict, labels: dict[str, str]) -> bool:
    """A label selector (matchLabels only, as the stack writes them) selects these labels."""
    if set(selector) - {"matchLabels"}:
        raise NotImplementedError(f"selector {selector}: only matchLabels is enforced here")
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())
