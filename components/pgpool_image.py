"""The pgpool/pgpool image as a contract: where it installs Pgpool-II, what its PATH finds, the
uid it runs as, and what its entrypoint writes at start.

Read from the image's own build files, `pgpool.docker/` of github.com/pgpool/pgpool2_on_k8s
(commit 0134b5e): `Dockerfile.pgpool` (FROM alpine:3.17; `ENV PGPOOL_INSTALL_DIR /opt/pgpool-II`,
`ENV PGPOOL_CONF_VOLUME /config`; `./configure --prefix=${PGPOOL_INSTALL_DIR}`; user postgres with
uid/gid 70; `apk add bash postgresql openssl sed sudo`; no ENV PATH; `ENTRYPOINT entrypoint.sh`,
`CMD start.sh`, both in the bin dir), `entrypoint.sh` and `start.sh`. Every command and probe of the
Pgpool-II pod is built from PGPOOL_IMAGE, and tests/dataplane maps it onto local binaries on
purpose, so a command that relies on something the image lacks fails there as in a cluster.
No Pulumi import.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass


@dataclass(frozen=True)
class ImageContract:
    install_dir: str = "/opt/pgpool-II"
    """PGPOOL_INSTALL_DIR, Pgpool-II's configure prefix."""
    uid: int = 70
    """USER postgres (adduser -u 70, group 70): what the pod runs as."""
    path: tuple[str, ...] = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
    """alpine's PATH; the Dockerfile adds nothing, so Pgpool-II's bin dir is not on it (its own
    scripts call `${PGPOOL_INSTALL_DIR}/bin/...`)."""
    pgpool_programs: tuple[str, ...] = (
        "pgpool", "pg_enc", "pg_md5", "pcp_node_count", "pcp_node_info", "pcp_stop_pgpool",
        "pcp_attach_node", "pcp_detach_node", "pcp_pool_status", "pcp_proc_count", "pcp_proc_info",
        "pcp_reload_config", "entrypoint.sh", "start.sh",
    )
    """`make install` of Pgpool-II (and the two COPY'd scripts), in bin_dir."""
    system_programs: tuple[str, ...] = ("/bin/sh", "/bin/cp", "/bin/sleep", "/bin/bash", "/usr/bin/psql")
    """alpine's busybox (sh, cp, sleep), and the apk packages bash and postgresql (its client psql)."""
    config_volume: str = "/config"
    """PGPOOL_CONF_VOLUME: the entrypoint copies pgpool.conf, pool_hba.conf and tls/ from here."""
    socket_dir: str = "/var/run/pgpool"
    """Created and chowned to postgres by the Dockerfile; the entrypoint's socket_dir, pcp_socket_dir
    and wd_ipc_socket_dir."""

    @property
    def bin_dir(self) -> str:
        return posixpath.join(self.install_dir, "bin")

    @property
    def etc_dir(self) -> str:
        """The entrypoint writes pgpool.conf, pool_passwd, .pgpoolkey, pcp.conf, pool_hba.conf here."""
        return posixpath.join(self.install_dir, "etc")

    @property
    def tls_dir(self) -> str:
        """The entrypoint mkdirs it and copies (or generates) tls.crt and tls.key into it."""
        return posixpath.join(self.install_dir, "tls")

    @property
    def tls_volume(self) -> str:
        """A certificate mounted here (tls.crt, tls.key) is the one the entrypoint uses."""
        return posixpath.join(self.config_volume, "tls")

    @property
    def writes_at_start(self) -> tuple[str, ...]:
        """What the entrypoint creates or appends to before it execs the command (env mode);
        on a read-only root filesystem each of these needs a writable volume."""
        return (self.etc_dir, self.tls_dir)

    @property
    def entrypoint(self) -> str:
        return self.program("entrypoint.sh")

    def program(self, name: str) -> str:
        """The absolute path of a program the image provides; ValueError for any other."""
        if name in self.pgpool_programs:
            return posixpath.join(self.bin_dir, name)
        for path in self.system_programs:
            if posixpath.basename(path) == name:
                return path
        raise ValueError(f"the pgpool/pgpool image provides no program {name!r}")

    @property
    def programs(self) -> frozenset[str]:
        """Absolute path of every program the image provides."""
        return frozenset(self.program(name) for name in self.pgpool_programs) | frozenset(self.system_programs)

    def resolve(self, argv0: str) -> str | None:
        """What the container runtime runs for `argv0`: an absolute path if the image has it, a bare
        name through PATH; None when the image has no such program."""
        if argv0.startswith("/"):
            return argv0 if argv0 in self.programs else None
        if "/" in argv0:
            return None  # relative to the working directory: nothing the contract promises
        for directory in self.path:
            candidate = posixpath.join(directory, argv0)
            if candidate in self.programs:
                return candidate
        return None


PGPOOL_IMAGE = ImageContract()
