"""One real Kubernetes node: containerd with runc, the CNI plugins, kubelet and kube-proxy, in the network
and mount namespaces of network.py.

Inside the node's mount namespace, /run is a tmpfs of its own and /var/lib and /var/log are the state
directory's node/var-lib and node/var-log: every default path of containerd, the kubelet and the CNI
plugins (/run/containerd, /var/lib/containerd, /var/lib/kubelet, /var/lib/cni, /var/log/pods and
/var/log/containers) is the cluster's own, and every mount they make (the containers' root file
systems, the pods' Secret volumes) exists only there and goes with the namespace.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from localcluster.network import CLUSTER_CIDR, POD_CIDR, NodeNetwork
from localcluster.pki import Pki

NAME = "pgpool-k8s-node"
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
CNI_BIN_DIR = "/usr/lib/cni"
"""Debian's containernetworking-plugins (bridge, host-local, loopback, portmap)."""
IMAGE_PREFIX = "localhost/pgpool-k8s"


CAP_SYS_RESOURCE = 24


def can_lower_oom_scores() -> bool:
    """Whether this machine lets root lower a process's oom_score_adj (CAP_SYS_RESOURCE in the bounding set):
    sandboxes and some VMs drop it, and then a pod's negative score (-998 for every sandbox, -997 for
    Guaranteed pods) makes runc fail to start it."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            return bool(int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1)
    return True


def holder_command(var_lib: Path, var_log: Path) -> list[str]:
    """A process in new network and mount namespaces that sets up the node's private paths and then only
    keeps the namespaces alive."""
    setup = ("set -e; mount -t tmpfs -o mode=0755,size=256m pgpool-k8s-node-run /run; mkdir /run/lock; "
             'mount --bind "$1" /var/lib; mount --bind "$2" /var/log; exec sleep infinity')
    return ["unshare", "--mount", "--net", "--propagation", "private", "--", "sh", "-c", setup, "holder",
            str(var_lib), str(var_log)]


class Node:
    def __init__(self, directory: Path, network: NodeNetwork, holder_pid: int, cgroup_root: str):
        self.dir = directory
        self.network = network
        self.holder_pid = holder_pid
        self.cgroup_root = cgroup_root

    @property
    def enter(self) -> list[str]:
        """Prefix that runs a command inside the node's namespaces."""
        return ["nsenter", f"--target={self.holder_pid}", "--mount", "--net", "--"]

    def _write(self, name: str, text: str) -> Path:
        path = self.dir / name
        path.write_text(text)
        return path

    def containerd_config(self, runc: Path, sandbox_image: str) -> str:
        cri_runtime = "plugins.'io.containerd.cri.v1.runtime'"
        return "\n".join([
            "version = 3",
            f"[grpc]\n  address = {json.dumps(CONTAINERD_SOCKET)}",
            # Its default, /opt/containerd, would be the host's: the node's /var/lib is the cluster's own.
            "[plugins.'io.containerd.internal.v1.opt']\n  path = '/var/lib/containerd/opt'",
            # Without CAP_SYS_RESOURCE, no score below containerd's own (0): the pods' scores are clamped to it.
            f"[{cri_runtime}]\n  restrict_oom_score_adj = {json.dumps(not can_lower_oom_scores())}",
            "[plugins.'io.containerd.cri.v1.images'.pinned_images]",
            f"  sandbox = {json.dumps(sandbox_image)}",
            f"[{cri_runtime}.containerd.runtimes.runc]\n  runtime_type = 'io.containerd.runc.v2'",
            f"[{cri_runtime}.containerd.runtimes.runc.options]",
            f"  BinaryName = {json.dumps(str(runc))}\n  SystemdCgroup = false",
            f"[{cri_runtime}.cni]\n  bin_dirs = [{json.dumps(CNI_BIN_DIR)}]",
            f"  conf_dir = {json.dumps(str(self.dir / 'cni'))}",
            "",
        ])

    def cni_config(self) -> dict:
        return {"cniVersion": "1.0.0", "name": "pgpool-k8s", "plugins": [
            {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": True, "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR}]], "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ]}

    def kubelet_config(self, pki: Pki) -> dict:
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "failCgroupV1": False,  # cgroup v1 is deprecated, still supported by v1.37 when asked for
            "cgroupDriver": "cgroupfs", "cgroupRoot": self.cgroup_root,
            "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCKET}",
            "address": self.network.node_ip, "readOnlyPort": 0, "healthzBindAddress": "127.0.0.1",
            "tlsCertFile": str(pki.cert("kubelet-serving")), "tlsPrivateKeyFile": str(pki.key("kubelet-serving")),
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(pki.ca)}},
            "authorization": {"mode": "Webhook"},
            "clusterDomain": "cluster.local", "clusterDNS": [self.network.dns_ip],
            "resolvConf": str(self._write("resolv.conf", "nameserver 127.0.0.1\n")),
            # The images were imported, not pulled: no registry could bring back one the kubelet removed.
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            # The disk is shared with the host; evict only when it is really full.
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                             "nodefs.inodesFree": "1%"},
            "serializeImagePulls": False,
            "oomScoreAdj": -999 if can_lower_oom_scores() else 0,
        }

    def kube_proxy_config(self, kubeconfig: Path) -> dict:
        return {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "mode": "iptables", "hostnameOverride": NAME, "clusterCIDR": CLUSTER_CIDR,
            "bindAddress": self.network.node_ip, "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
            "nodePortAddresses": [f"{self.network.node_ip}/32"],
            # Leave the kernel's conntrack table sizes alone: they are the machine's, not this namespace's.
            "conntrack": {"maxPerCore": 0, "min": 0},
            "iptables": {"minSyncPeriod": "1s", "syncPeriod": "30s"},
        }

    def write_configs(self, pki: Pki, server: str, runc: Path, sandbox_image: str) -> None:
        (self.dir / "cni").mkdir()
        self._write("containerd.toml", self.containerd_config(runc, sandbox_image))
        self._write("cni/10-pgpool-k8s.conflist", json.dumps(self.cni_config(), indent=2))
        self._write("kubelet.yaml", yaml.safe_dump(self.kubelet_config(pki)))
        pki.write_kubeconfig(self.dir / "kubelet.kubeconfig", server, "kubelet")
        pki.write_kubeconfig(self.dir / "kube-proxy.kubeconfig", server, "kube-proxy")
        self._write("kube-proxy.yaml", yaml.safe_dump(self.kube_proxy_config(self.dir / "kube-proxy.kubeconfig")))

    def commands(self, containerd: Path, kubernetes_node: Path) -> dict[str, list[str]]:
        """The node's daemons, in start order, each run inside the node's namespaces."""
        return {
            "containerd": [*self.enter, str(containerd / "containerd"), f"--config={self.dir / 'containerd.toml'}"],
            "kubelet": [*self.enter, str(kubernetes_node / "kubelet"), f"--config={self.dir / 'kubelet.yaml'}",
                        f"--kubeconfig={self.dir / 'kubelet.kubeconfig'}", f"--hostname-override={NAME}",
                        f"--node-ip={self.network.node_ip}"],
            "kube-proxy": [*self.enter, str(kubernetes_node / "kube-proxy"), f"--config={self.dir / 'kube-proxy.yaml'}"],
        }

    def run(self, *command: str, check: bool = True, **options) -> subprocess.CompletedProcess:
        """A command inside the node's namespaces (ctr, crictl, iptables-save, ...)."""
        result = subprocess.run([*self.enter, *command], capture_output=True, text=True, **options)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed in the node: {result.stderr.strip()}")
        return result

    def import_image(self, ctr: Path, archive: Path, repository: str) -> None:
        """Imports an OCI archive into the runtime's Kubernetes namespace as REPOSITORY:<its tag>."""
        self.run(str(ctr), f"--address={CONTAINERD_SOCKET}", "--namespace=k8s.io", "images", "import",
                 f"--base-name={repository}", str(archive))
