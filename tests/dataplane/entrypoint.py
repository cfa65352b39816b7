"""The pgpool/pgpool image's containers run as a container runtime runs them, its entrypoint.sh included.

The image is its root file system (scripts/pgpool_image_root.sh, an install whose `is_image` is true) and
its Dockerfile.pgpool, from which ENV, USER, ENTRYPOINT and CMD are read, not restated. A container gets,
in a mount namespace of its own that ends with it: the image's root under an overlay of its own, made
read-only (readOnlyRootFilesystem) once the mount points exist; /dev with the usual devices, /proc; each
of the pod's volumes (tests/dataplane/pod.py fills them as the kubelet does) bound at its mountPath,
read-only where the spec says so, a subPath as the one file; a host name. Its process is chrooted into
that root as the pod's uid and gid, with the image's environment under the container's (Secret
references resolved), and runs `command`/`args` as Kubernetes combines them with ENTRYPOINT and CMD.
Probes run in the same namespace (nsenter), so they see what the container sees.

Only the ports and backend addresses differ from the cluster, in a fixed list of PGPOOL_PARAMS_*
variables (stack_files.LOCAL_PGPOOL_KEYS), so pgpool listens on free ports of 127.0.0.1 and reaches the
local PostgreSQL servers.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from components.pgpool_image import PGPOOL_IMAGE
from tests.dataplane.harness import Endpoint, PgpoolServer
from tests.dataplane.local_stack import LocalDevStack
from tests.dataplane.pod import LocalPod
from tests.dataplane.stack_files import LOCAL_PGPOOL_KEYS, DevStack, LocalPorts, local_objects, rewrite_pcppass

ROOT = Path(__file__).resolve().parents[2]
VENDOR = Path(os.environ.get("PGPOOL_K8S_VENDOR", ROOT.parent / "shared" / "vendor"))
"""The third-party sources beside the repository (scripts/env.sh)."""
DOCKERFILE = VENDOR / "pgpool2_on_k8s-0134b5e" / "pgpool.docker" / "Dockerfile.pgpool"
RUNTIME_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""The PATH a container runtime gives a container whose image sets none (Dockerfile.pgpool sets none)."""
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
"""The devices a container runtime gives every container."""
ENV_PREFIX = "PGPOOL_PARAMS_"


@dataclass(frozen=True)
class ImageConfig:
    """What an image's Dockerfile sets for its containers."""

    env: dict[str, str]
    user: str
    entrypoint: list[str]
    cmd: list[str]

    @classmethod
    def read(cls, dockerfile: Path = DOCKERFILE) -> "ImageConfig":
        env, user, entrypoint, cmd = {}, "root", [], []
        for line in dockerfile.read_text().splitlines():
            instruction, _, rest = line.strip().partition(" ")
            rest = rest.strip()
            if instruction == "ENV":  # `ENV KEY VALUE` or `ENV KEY=VALUE`
                key, value = re.split(r"[ =]", rest, maxsplit=1)
                env[key] = value.strip()
            elif instruction == "USER":
                user = rest
            elif instruction == "ENTRYPOINT":
                entrypoint = json.loads(rest)
            elif instruction == "CMD":
                cmd = json.loads(rest)
        return cls(env, user, entrypoint, cmd)

    def argv(self, spec: dict) -> list[str]:
        """What a container of `spec` runs: `command` replaces ENTRYPOINT (and drops CMD), `args` replaces CMD."""
        if spec.get("command"):
            return [*spec["command"], *spec.get("args", [])]
        return [*self.entrypoint, *spec.get("args", self.cmd)]


class ImageContainer:
    """One container of `pod` (whose install is an image root), run as a container runtime runs it."""

    def __init__(self, pod: LocalPod, name: str, env: dict[str, str], layers: Path, image: ImageConfig | None = None):
        """`layers`: an empty directory outside the image's root for the container's overlay."""
        assert pod.install.is_image, f"{pod.install} is not the image's root"
        self.pod = pod
        self.name = name
        self.spec = pod.containers[name]
        self.image = image or ImageConfig.read()
        self.upper, self.work, self.merged = layers / "upper", layers / "work", layers / "root"
        for directory in (self.upper, self.work, self.merged):
            directory.mkdir(parents=True, exist_ok=True)
        passwd = {line.split(":")[0]: line.split(":") for line in pod.host("/etc/passwd").read_text().splitlines()}
        home = passwd[self.image.user][5] if self.image.user in passwd else "/"
        self.env = {"PATH": RUNTIME_PATH, **self.image.env, "HOSTNAME": f"{name}-pod", "HOME": home, **env}

    def _setup(self) -> str:
        """The shell commands that build the container's file system (run as root in its mount namespace)."""
        q, merged = shlex.quote, str(self.merged)
        steps = ["set -eu",
                 f"mount -t overlay overlay -o lowerdir={q(str(self.pod.install.root))},upperdir={q(str(self.upper))},"
                 f"workdir={q(str(self.work))} {q(merged)}",
                 f"mount -t tmpfs -o mode=755,size=1m tmpfs {q(merged)}/dev"]
        for device in DEVICES:
            steps += [f"touch {q(merged)}/dev/{device}", f"mount --bind /dev/{device} {q(merged)}/dev/{device}"]
        steps += [f"mkdir {q(merged)}/dev/shm", f"mount -t tmpfs -o mode=1777,size=64m tmpfs {q(merged)}/dev/shm",
                  f"mount -t proc proc {q(merged)}/proc"]
        for mount in self.spec.get("volumeMounts", []):
            source = self.pod.host(self.pod.volume_dir(mount["name"]))
            if "subPath" in mount:
                source = source / mount["subPath"]
            target = q(merged + in_root(self.pod.install.root, mount["mountPath"]))
            make = f"touch {target}" if source.is_file() else f"mkdir -p {target}"
            steps += [f"mkdir -p $(dirname {target})", make, f"mount --bind {q(str(source))} {target}"]
            if mount.get("readOnly"):
                steps.append(f"mount -o remount,bind,ro {target}")
        if self.spec.get("securityContext", {}).get("readOnlyRootFilesystem"):
            steps.append(f"mount -o remount,ro {q(merged)}")
        steps.append(f"hostname {q(self.env['HOSTNAME'])}")
        return "; ".join(steps)

    def _chroot(self) -> list[str]:
        identity = self.pod.identity
        return ["chroot", f"--userspec={identity.uid}:{identity.gid}", f"--groups={identity.gid}", str(self.merged)]

    def popen(self) -> tuple[list[str], dict]:
        """argv and subprocess arguments that start the container (its process keeps the pid)."""
        script = self._setup() + '; exec "$@"'
        argv = ["unshare", "--mount", "--uts", "--propagation", "private", "--", "/bin/sh", "-c", script, self.name,
                *self._chroot(), *self.image.argv(self.spec)]
        return argv, {"env": self.env}

    def run(self, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the container to its end (an init container)."""
        argv, kwargs = self.popen()
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)

    def exec(self, pid: int, argv: list[str] | tuple[str, ...], env: dict[str, str],
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A probe or hook of the running container whose process is `pid`: in its namespaces, root and user."""
        command = ["nsenter", f"--target={pid}", "--mount", "--uts", "--", *self._chroot(), *argv]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env={**self.env, **env})


def in_root(root: Path, path: str) -> str:
    """`path` with the symbolic links on its way resolved inside `root`, as a container runtime resolves a
    mountPath (the image's /var/run is a link to /run: mounting through it would reach the host's /run)."""
    resolved = "/"
    for part in path.strip("/").split("/"):
        candidate = posixpath.join(resolved, part)
        for _ in range(40):
            host = root / candidate.lstrip("/")
            if not host.is_symlink():
                break
            target = os.readlink(host)
            candidate = posixpath.normpath(posixpath.join(posixpath.dirname(candidate), target))
        else:
            raise AssertionError(f"too many links resolving {path} in {root}")
        resolved = candidate
    return resolved


def container_env(stack: DevStack, container: str) -> dict[str, str]:
    """A container's environment from the pod spec, Secret references resolved as the kubelet resolves them."""
    spec = {c["name"]: c for c in stack.pod["containers"] + stack.pod["initContainers"]}[container]
    values = {}
    for var in spec.get("env", []):
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        values[var["name"]] = stack.objects[ref["name"]][ref["key"]] if ref else var["value"]
    return values


def local_env(env: dict[str, str], ports: LocalPorts) -> dict[str, str]:
    """The env-mode variables of LOCAL_PGPOOL_KEYS on 127.0.0.1 and the free ports; every other one as it is."""
    local = {"listen_addresses": ports.host, "pcp_listen_addresses": ports.host, "port": ports.port,
             "pcp_port": ports.pcp_port, "backend_hostname0": ports.host, "backend_hostname1": ports.host,
             "backend_port0": ports.primary_port, "backend_port1": ports.standby_port}
    assert set(local) <= set(LOCAL_PGPOOL_KEYS)
    changed = dict(env)
    for key, value in local.items():
        name = ENV_PREFIX + key.upper()
        if env.get(name):  # an empty listen address stays empty: that listener is off
            changed[name] = str(value)
    return changed


class EntrypointPgpool(PgpoolServer):
    """A Pgpool-II pod in env mode: its init step, then the pgpool container through the image's entrypoint.sh."""

    def __init__(self, local: LocalDevStack, stack: DevStack, name: str):
        self.stack = stack
        pod, ports = local.pod(stack)
        self.pod = pod
        files = {**stack.config_files, **stack.secret_files}
        files["pcppass"] = rewrite_pcppass(files["pcppass"], ports.pcp_port)
        pod.create(local_objects(stack, files))
        layers = local.workspace.directory(name)
        init = ImageContainer(pod, "prepare-secrets", container_env(stack, "prepare-secrets"), layers / "init").run()
        if init.returncode != 0:
            raise RuntimeError(f"{name}: the init step exited {init.returncode}: {init.stdout}{init.stderr}")
        self.container = ImageContainer(pod, "pgpool", local_env(container_env(stack, "pgpool"), ports),
                                        layers / "pgpool")
        argv, popen = self.container.popen()
        sslmode = "require" if stack.settings.pgpool.ssl else "disable"
        super().__init__(local.workspace, name, argv, Endpoint(ports.port, sslmode), ports.pcp_port, popen)
        local.pgpools.append(self)

    def volume(self, name: str) -> Path:
        """Where a volume of the pod is on this machine."""
        return self.pod.host(self.pod.volume_dir(name))

    @property
    def written(self) -> Path:
        """The image's etc dir as the entrypoint left it (pgpool.conf, pool_passwd, pcp.conf, ...)."""
        mount = next(m for m in self.container.spec["volumeMounts"] if m["mountPath"] == PGPOOL_IMAGE.etc_dir)
        return self.volume(mount["name"])

    def probe(self, argv: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
        """A probe of the pgpool container, its container ports mapped onto the local ones."""
        mapped = [str(self.pod.ports[int(arg)]) if index and argv[index - 1] == "-p" else arg
                  for index, arg in enumerate(argv)]
        return self.container.exec(self.pid, mapped, {})
