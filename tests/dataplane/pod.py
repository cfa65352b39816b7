"""One Pgpool-II pod of the dev stack on this machine, run the way the kubelet runs it.

Its volumes are directories filled as the kubelet fills them (ConfigMap files 0444; Secret files
owned by root and group-readable for the fsGroup; emptyDirs writable by the fsGroup). Its init step
copies the secrets. Every command of its containers (pgpool, the probes, the preStop hook, the init
step) runs as the pod's uid, with each container path mapped onto the volume mounted there, and with
the image contract's programs mapped onto the install's through an image view: a directory holding,
at each path the contract names (/opt/pgpool-II/bin/pcp_node_count, /usr/bin/psql, /bin/sh, ...), a
link to the install's program, and a PATH made of the image's PATH under that view. A command that
names a program by a path the image lacks, or relies on this machine's PATH, fails here as it would
in the cluster.
"""

from __future__ import annotations

import os
import posixpath
import subprocess
from pathlib import Path

from components.pgpool_config import PgpoolPaths
from components.pgpool_image import PGPOOL_IMAGE
from tests.dataplane.installs import Identity, PgpoolInstall
from tests.dataplane.pod_network import entered

CONTAINER_FILES = {
    "pgpool.conf": PgpoolPaths().pgpool_conf, "pool_hba.conf": PgpoolPaths().pool_hba,
    "pool_passwd": PgpoolPaths().pool_passwd, ".pgpoolkey": PgpoolPaths().pool_key,
    "pcp.conf": PgpoolPaths().pcp_conf, "pcppass": PgpoolPaths().pcppass, "pgpass": PgpoolPaths().pgpass,
    "tls.crt": PgpoolPaths().tls_cert, "tls.key": PgpoolPaths().tls_key,
}
"""Where the pgpool container reads each generated file (configmap mode)."""
IMAGE_SCRIPTS = {"entrypoint.sh", "start.sh"}
"""The image's own scripts: only an install that is the image's root has them (tests/dataplane/entrypoint.py
runs them there)."""


class LocalPod:
    """The pod's volumes under `base` (as the install's processes see it) and its commands, mapped."""

    def __init__(self, spec: dict, install: PgpoolInstall, base: str, ports: dict[int, int], netns: str | None = None):
        self.spec = spec
        self.netns = netns
        """The pod's network namespace (tests/dataplane/pod_network.py); None: this machine's."""
        self.install = install
        self.base = base
        self.ports = ports
        """Container port -> the free local port standing in for it."""
        context = spec["securityContext"]
        # The pod's own uid needs root to switch to; otherwise everything runs as this user.
        self.identity = (Identity(context["runAsUser"], context["fsGroup"]) if os.geteuid() == 0
                         else Identity.current())
        self.volumes = {v["name"]: v for v in spec["volumes"]}
        self.containers = {c["name"]: c for c in spec["containers"] + spec.get("initContainers", [])}
        self.view = f"{base}/image"

    def volume_dir(self, name: str) -> str:
        return f"{self.base}/v/{name}"

    def host(self, path: str) -> Path:
        """Where a path the pod's processes see is on this machine."""
        return self.install.host_path(path)

    # --- paths, programs, ports ------------------------------------------------------------------

    def mounts(self, container: str) -> list[tuple[str, str]]:
        """(container path, local path) of each of the container's mounts, the most specific first."""
        found = []
        for mount in self.containers[container].get("volumeMounts", []):
            local = self.volume_dir(mount["name"])
            found.append((mount["mountPath"], posixpath.join(local, mount["subPath"]) if "subPath" in mount else local))
        return sorted(found, key=lambda pair: len(pair[0]), reverse=True)

    def path(self, container: str, path: str) -> str:
        """The local path of a path in `container`; AssertionError if no volume is mounted there."""
        for mount, local in self.mounts(container):
            if path == mount or path.startswith(mount.rstrip("/") + "/"):
                return local + path[len(mount):]
        raise AssertionError(f"container {container}: {path} is on no volume of the pod")

    def command(self, container: str, argv: list[str] | tuple[str, ...]) -> list[str]:
        """`argv` of `container` as it runs here: the image's programs through the view, container paths
        on their volumes, container ports on the local ones."""
        mapped = []
        for index, arg in enumerate(argv):
            if arg in PGPOOL_IMAGE.programs:
                arg = self.view + arg
            elif arg.startswith("/"):
                arg = self.path(container, arg)
            elif index and argv[index - 1] == "-p":
                arg = str(self.ports[int(arg)])
            mapped.append(arg)
        return mapped

    def environment(self, container: str, env: dict[str, str]) -> dict[str, str]:
        """The container's environment here: paths on their volumes, and the image's PATH (under the view)."""
        mapped = {name: self.path(container, value) if value.startswith("/") else value for name, value in env.items()}
        return {**mapped, "PATH": ":".join(self.view + directory for directory in PGPOOL_IMAGE.path)}

    def popen(self, container: str, argv: list[str] | tuple[str, ...], env: dict[str, str]) -> tuple[list[str], dict]:
        """argv and subprocess arguments that run a command of `container` as the pod does."""
        command, kwargs = self.install.popen(self.command(container, argv), self.identity)
        return command, {**kwargs, "env": self.environment(container, env)}

    def run(self, container: str, argv: list[str] | tuple[str, ...], env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command, kwargs = self.popen(container, argv, env or {})
        try:
            with entered(self.netns):
                return subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
        except FileNotFoundError as error:  # what the container runtime reports as a failed exec
            return subprocess.CompletedProcess(command, 127, "", f"exec {command[0]}: {error.strerror}")

    # --- creating it -------------------------------------------------------------------------------

    def create(self, objects: dict[str, dict[str, str]]) -> None:
        """Every volume's directory, filled from `objects` (ConfigMap/Secret data by object name) as the
        kubelet fills it, and the image view."""
        for name, volume in self.volumes.items():
            directory = self._directory(self.volume_dir(name))
            if "emptyDir" in volume:
                self._own(directory, 0o2777)
                continue
            source = volume.get("configMap", {}).get("name") or volume["secret"]["secretName"]
            mode = volume.get("configMap", volume.get("secret"))["defaultMode"] | 0o440  # fsGroup gets read
            self._own(directory, 0o2750)
            for key, text in objects[source].items():
                path = directory / key
                path.write_text(text)
                self._own(path, mode)
        self._make_view()

    def _directory(self, path: str) -> Path:
        directory = self.host(path)
        directory.mkdir(parents=True, exist_ok=True)
        for part in [directory, *directory.parents]:
            part.chmod(0o711)  # the pod's uid passes through, as through the kubelet's directories
            if part == self.host(self.base):
                break
        return directory

    def _own(self, path: Path, mode: int) -> None:
        if os.geteuid() == 0:
            os.chown(path, 0, self.identity.gid)
        path.chmod(mode)

    def _make_view(self) -> None:
        for program in sorted(PGPOOL_IMAGE.programs):
            name = posixpath.basename(program)
            if name in IMAGE_SCRIPTS and not self.install.is_image:
                continue
            target = self.install.program(name) if program.startswith(PGPOOL_IMAGE.bin_dir + "/") else program
            if not self.host(target).exists():
                raise AssertionError(f"{self.install} has no {target} for the image's {program}")
            link = self.host(self.view + program)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target)
        self._directory(self.view)

    def write(self, container: str, path: str, text: str) -> None:
        """A file the pod's uid owns with mode 0600, at `path` of `container` (on a writable volume)."""
        host = self.host(self.path(container, path))
        host.write_text(text)
        host.chmod(0o600)
        if os.geteuid() == 0:
            os.chown(host, self.identity.uid, self.identity.gid)

    def files(self) -> dict[str, Path]:
        """Where on this machine pgpool reads each generated file the pod has (after the init step)."""
        found = {name: self.host(self.path("pgpool", path)) for name, path in CONTAINER_FILES.items()}
        return {name: path for name, path in found.items() if path.exists()}
