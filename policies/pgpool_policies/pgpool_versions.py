"""The Pgpool-II releases a stack may deploy: the supported series, the known vulnerabilities with the first
fixed release of each series, and the configuration changes between versions.

The one table of them: the stack's settings (components/) and the policy pack read it from here, and the
pack is used on its own in CI, so it lives in the pack. Plain Python, no imports beyond the standard
library.

Sources: Pgpool-II's release notes, `doc/src/sgml/release-4.{3,4,5,6,7}.sgml` of github.com/pgpool/pgpool2
(commit 243463a, with the release tags V4_x_y), quoted in each entry below. A version is the upstream
release of the `pgpool/pgpool` image's tag (or of `pgpoolVersion`): a build of an affected release that a
distribution patched (Debian's 4.3.5-1+deb12u1 backports the fixes of CVE-2024-45624 and CVE-2025-46801)
cannot be told apart from the unpatched one by its version, so it is treated as that release.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RELEASE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


@dataclass(frozen=True, order=True)
class Version:
    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> "Version | None":
        """`4.6.1` -> Version(4, 6, 1); None for anything that is not one release (`4.6`, `latest`)."""
        match = RELEASE.match(text)
        return cls(*map(int, match.groups())) if match else None

    @property
    def series(self) -> tuple[int, int]:
        return self.major, self.minor

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def _v(text: str) -> Version:
    version = Version.parse(text)
    assert version is not None, text
    return version


SUPPORTED_SERIES = ((4, 3), (4, 4), (4, 5), (4, 6), (4, 7))
"""The series the renderer writes for and the data plane proves (4.3, 4.6 and 4.7 run there)."""


@dataclass(frozen=True)
class Vulnerability:
    cve: str
    what: str
    first_fixed: dict[tuple[int, int], Version]
    """Per supported series, its first fixed release; a series absent here was released fixed."""
    source: str

    def affects(self, version: Version) -> bool:
        fixed = self.first_fixed.get(version.series)
        return fixed is not None and version < fixed


VULNERABILITIES = (
    Vulnerability(
        "CVE-2025-46801", "client authentication bypass (log in as any user)",
        {(4, 3): _v("4.3.15"), (4, 4): _v("4.4.12"), (4, 5): _v("4.5.7"), (4, 6): _v("4.6.1")},
        "release-4.6.sgml, Release 4.6.1 (2025-05-15): \"All versions of Pgpool-II 4.0 and 4.1 series, 4.2.0 to "
        "4.2.21, 4.3.0 to 4.3.14, 4.4.0 to 4.4.11, 4.5.0 to 4.5.6 and 4.6.0 are affected\"; 4.7.0 (2025-12-23) "
        "came later"),
    Vulnerability(
        "CVE-2024-45624", "rows readable by users without privilege through the query cache",
        {(4, 3): _v("4.3.12"), (4, 4): _v("4.4.9"), (4, 5): _v("4.5.4")},
        "release-4.5.sgml, Release 4.5.4 (2024-09-09): \"All versions of Pgpool-II older than 4.5.4, 4.4.9, "
        "4.3.12, 4.2.19, 4.1.22 ... are affected\"; 4.6.0 (2025-02-28) came later"),
    Vulnerability(
        "CVE-2023-22332", "wd_lifecheck_password shown to any client by SHOW POOL_STATUS",
        {(4, 3): _v("4.3.5"), (4, 4): _v("4.4.2")},
        "release-4.3.sgml and release-4.4.sgml, Releases 4.3.5 and 4.4.2 (2023-01-23)"),
)

# Configuration changes, each the first release that has it.
UNIX_SOCKET_DIRECTORIES = _v("4.4.0")
"""release-4.4.sgml, Release 4.4.0: "Rename configuration parameter socket_dir to unix_socket_directories"
(older releases ignore the new name, newer ones the old: "unrecognized configuration parameter")."""
PROCESS_MANAGEMENT_MODE = _v("4.4.0")
"""release-4.4.sgml, Release 4.4.0: process_management_mode (static, the default, or dynamic: children
forked and retired between min_spare_children and max_spare_children, up to num_init_children)."""
EMPTY_CHECK_USERS = _v("4.6.0")
"""release-4.6.sgml, "Migration to Version 4.6": health_check_user, recovery_user, sr_check_user and
wd_lifecheck_user default to '' instead of 'nobody': "You need to set them in 4.6. Otherwise you will get
an error"."""
DNS_RETRY = _v("4.6.3")
"""release-4.6.sgml, Release 4.6.3 (2025-08-21): "In certain environment (especially k8s), DNS look up is
unstable ... retry up to 5 times (at each retry, sleep 1 second) if getaddrinfo() fails with EAI_AGAIN"
(pgpool2 issue 104: "A single DNS lookup failure will trigger backend failover")."""
WORK_DIR = _v("4.7.0")
"""release-4.7.sgml, "Migration to Version 4.7": "Rename logdir parameter to work_dir" (logdir is still read,
with a warning)."""
PROTOCOL_3_2 = _v("4.7.0")
"""release-4.7.sgml, Release 4.7.0: "Add support for frontend/backend protocol 3.2" (PostgreSQL 18 clients
that ask for it, e.g. PGMAXPROTOCOLVERSION=3.2; older releases refuse their startup packet)."""


def known_vulnerabilities(version: Version) -> list[Vulnerability]:
    return [v for v in VULNERABILITIES if v.affects(version)]


def first_safe(series: tuple[int, int]) -> Version:
    """The first release of a supported series that no vulnerability of the table affects."""
    fixes = [v.first_fixed[series] for v in VULNERABILITIES if series in v.first_fixed]
    return max(fixes, default=Version(*series, 0))


def version_problem(version: Version) -> str | None:
    """Why the stack refuses to deploy `version`, naming each CVE and the release that fixes it; None if it
    deploys it."""
    if version.series not in SUPPORTED_SERIES:
        names = ", ".join(f"{a}.{b}" for a, b in SUPPORTED_SERIES)
        return f"Pgpool-II {version} is outside the supported series ({names}); use a release of one of them"
    found = known_vulnerabilities(version)
    if not found:
        return None
    listed = "; ".join(f"{v.cve} ({v.what}), fixed in {v.first_fixed[version.series]}" for v in found)
    return (f"Pgpool-II {version} has known vulnerabilities: {listed}. Use {first_safe(version.series)} or later "
            f"of the {version.major}.{version.minor} series")


def image_version(image: str) -> Version | None:
    """The release an image reference's tag names (`registry/pgpool/pgpool:4.6.1@sha256:...` -> 4.6.1); None
    without a tag that names one release."""
    name = image.partition("@")[0]
    slash, colon = name.rfind("/"), name.rfind(":")
    return Version.parse(name[colon + 1:]) if colon > slash else None
