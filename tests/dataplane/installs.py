"""The Pgpool-II installations the data plane runs the program's files on.

- 4.3: Debian 12's pgpool2 4.3.5 on this machine (programs in /usr/sbin). Its 4.3.5-1+deb12u1 carries the
  fixes of CVE-2024-45624 and CVE-2025-46801 (its changelog), so it stands for the first 4.3 release that
  has them upstream, 4.3.15: the stack's files are rendered for that release.
- 4.6 and 4.7: the pgpool/pgpool image's own root file system for Pgpool-II 4.6.1 and 4.7.2, which
  scripts/pgpool_image_root.sh builds as the image's Dockerfile.pgpool does (programs in
  /opt/pgpool-II/bin, the image's entrypoint.sh beside them), run through chroot. 4.7.2 is the newest 4.7
  release whose source Debian's archive serves.

Either way every pod process (init step, pgpool, probes, preStop) runs as the pod's uid and reaches
Pgpool-II's programs only through the image contract's paths (tests/dataplane/pod.py maps them), never
through this machine's PATH.
"""

from __future__ import annotations

import functools
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from components.pgpool_image import PGPOOL_IMAGE
from policies.pgpool_policies.pgpool_versions import Version, first_safe

ROOT = Path(__file__).resolve().parents[2]
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
    renders_for: Version
    """The release the stack's files are rendered for (pgpoolImage's tag)."""
    program_dir: str
    """Where pgpool, pg_enc, pg_md5 and the pcp_* clients are."""
    root: Path | None = None
    """The root its processes are chrooted into; None for this machine's own."""

    def host_path(self, path: str) -> Path:
        """Where a path its processes see is on this machine."""
        return self.root / path.lstrip("/") if self.root else Path(path)

    @property
    def scratch(self) -> str | None:
        """A directory its processes see in which a run may put its own files; None: the run's workspace."""
        return "/var/tmp" if self.root else None

    @property
    def is_image(self) -> bool:
        """The pgpool/pgpool image's own file system (its entrypoint.sh included), not a distribution's package."""
        return self.program_dir == PGPOOL_IMAGE.bin_dir

    @property
    def image(self) -> str:
        """pgpoolImage for the release the files are rendered for."""
        return f"pgpool/pgpool:{self.renders_for}"

    def program(self, name: str) -> str:
        return f"{self.program_dir}/{name}"

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
    program_dir = "/usr/sbin"
    return PgpoolInstall("4.3", _version([f"{program_dir}/pgpool", "--version"]), first_safe((4, 3)), program_dir)


def image_root(release: str) -> Path:
    """The pgpool/pgpool image's root for `release`, built on first use (minutes, then cached)."""
    if os.geteuid() != 0:
        raise RuntimeError(f"Pgpool-II {release} runs in a chroot: run the data plane as root (make test does)")
    result = subprocess.run([str(ROOT / "scripts" / "pgpool_image_root.sh"), release], capture_output=True, text=True,
                            timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(f"scripts/pgpool_image_root.sh {release} failed:\n{result.stderr}")
    return Path(result.stdout.strip().splitlines()[-1])


@functools.lru_cache(maxsize=None)
def image(release: str) -> PgpoolInstall:
    root = image_root(release)
    version = Version.parse(release)
    assert version is not None, release
    series = f"{version.major}.{version.minor}"
    return PgpoolInstall(series, _version([CHROOT, str(root), PGPOOL_IMAGE.program("pgpool"), "--version"]), version,
                         PGPOOL_IMAGE.bin_dir, root)


INSTALLS = {"4.3": debian12, "4.6": functools.partial(image, "4.6.1"), "4.7": functools.partial(image, "4.7.2")}
"""Every series the data plane proves the files on, by name."""
