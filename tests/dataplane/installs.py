"""The Pgpool-II installations the data plane runs the program's files on.

- 4.3: Debian 12's pgpool2 on this machine.
- 4.6: Debian 13's pgpool2 in a root that scripts/pgpool_root.sh makes with debootstrap (cached), run
  through chroot.

Together they bracket the pgpool/pgpool image's 4.5. Either way every pod process (init step, pgpool,
probes, preStop) runs as the pod's uid and reaches Pgpool-II's programs only through the image
contract's paths (tests/dataplane/pod.py maps them), never through this machine's PATH.
"""

from __future__ import annotations

import functools
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROGRAM_DIR = "/usr/sbin"
"""Where Debian's pgpool2 puts pgpool, pg_enc, pg_md5 and the pcp_* clients (both releases)."""
CHROOT = "/usr/sbin/chroot"


@dataclass(frozen=True)
class Identity:
    """The uid and gid a process runs as."""

    uid: int
    gid: int

    @classmethod
    def current(cls) -> "Identity":
        return cls(os.geteuid(), os.getegid())


@dataclass(frozen=True)
class PgpoolInstall:
    name: str
    """The Pgpool-II series, e.g. 4.3."""
    version: str
    """What `pgpool --version` says."""
    root: Path | None = None
    """The root its processes are chrooted into; None for this machine's own."""

    def host_path(self, path: str) -> Path:
        """Where a path its processes see is on this machine."""
        return self.root / path.lstrip("/") if self.root else Path(path)

    @property
    def scratch(self) -> str | None:
        """A directory its processes see in which a run may put its own files; None: the run's workspace."""
        return "/var/tmp" if self.root else None

    def program(self, name: str) -> str:
        return f"{PROGRAM_DIR}/{name}"

    def popen(self, argv: list[str], identity: Identity) -> tuple[list[str], dict]:
        """argv and subprocess arguments that run `argv` in this install as `identity`."""
        if self.root:  # chroot before dropping to the uid: only root may chroot
            return [CHROOT, f"--userspec={identity.uid}:{identity.gid}", f"--groups={identity.gid}", str(self.root),
                    *argv], {}
        if identity == Identity.current():
            return argv, {}
        return argv, {"user": identity.uid, "group": identity.gid, "extra_groups": []}

    def __str__(self) -> str:
        return f"Pgpool-II {self.name} ({self.version})"


def _version(argv: list[str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=True)
    return (result.stdout + result.stderr).strip()


@functools.lru_cache(maxsize=None)
def debian12() -> PgpoolInstall:
    pgpool = f"{PROGRAM_DIR}/pgpool"
    return PgpoolInstall("4.3", _version([pgpool, "--version"]))


@functools.lru_cache(maxsize=None)
def debian13() -> PgpoolInstall:
    """Builds the root on first use (a few minutes, then cached)."""
    if os.geteuid() != 0:
        raise RuntimeError("Pgpool-II 4.6 runs in a chroot: run the data plane as root (make test does)")
    result = subprocess.run([str(ROOT / "scripts" / "pgpool_root.sh")], capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"scripts/pgpool_root.sh failed:\n{result.stderr}")
    root = Path(result.stdout.strip().splitlines()[-1])
    return PgpoolInstall("4.6", _version([CHROOT, str(root), f"{PROGRAM_DIR}/pgpool", "--version"]), root)


INSTALLS = {"4.3": debian12, "4.6": debian13}
"""Every series the data plane proves the files on, by name."""
