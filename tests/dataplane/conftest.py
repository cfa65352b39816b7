"""Fixtures of the data-plane tests: the dev stack's generated files, run for real on 127.0.0.1.

For the package: one PostgreSQL primary with a hot standby and one Pgpool-II running the
program's files. Tests that break things (damaged files, stopped servers, restarts) start their
own Pgpool-II, or their own database, so no test sees another's damage. Every server is stopped,
and the work directory removed, in the fixtures' finally blocks, whatever happened.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.dataplane.harness import POSTGRES_EXPORTER
from tests.dataplane.installs import INSTALLS, PgpoolInstall
from tests.dataplane.local_stack import LocalDevStack, StackPgpool, running_database
from tests.dataplane.stack_files import DevStack, dev_stack

ROOT = Path(__file__).resolve().parents[2]
REQUIRED_TOOLS = ("/usr/lib/postgresql/15/bin/postgres", "/usr/lib/postgresql/15/bin/pg_basebackup",
                  "/usr/sbin/pgpool", "/usr/sbin/pcp_node_info", "/usr/sbin/pcp_node_count", "/usr/bin/pgbench",
                  "/usr/bin/psql", "/usr/bin/prometheus", str(POSTGRES_EXPORTER), "/usr/sbin/haproxy",
                  "/usr/sbin/debootstrap", "/usr/bin/memcached")


@pytest.fixture(scope="session", autouse=True)
def debian_tools() -> None:
    """The real servers and clients; a missing one fails the tests (never skips them)."""
    missing = [tool for tool in REQUIRED_TOOLS if not shutil.which(tool)]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run scripts/install_test_packages.sh (make test does)")


@pytest.fixture(scope="package", params=sorted(INSTALLS), ids=lambda name: f"pgpool-{name}")
def install(request: pytest.FixtureRequest) -> PgpoolInstall:
    """Each Pgpool-II series the files are proven on (tests/dataplane/installs.py); every test that
    runs Pgpool-II runs once per series."""
    return INSTALLS[request.param]()


@pytest.fixture(scope="package")
def stack(install: PgpoolInstall) -> DevStack:
    """The dev stack as the program generates it for the install's release, with awkward passwords and pool key."""
    return dev_stack(pgpoolImage=install.image)


@pytest.fixture(scope="package")
def local(stack: DevStack, install: PgpoolInstall) -> Iterator[LocalDevStack]:
    """The dev stack's database (primary + hot standby) on this machine, and Pgpool-II pods of `install`.
    pg_stat_statements counts what each server really executed (the query cache tests)."""
    with running_database(stack, install, libraries=("pg_stat_statements",)) as local:
        yield local


@pytest.fixture(scope="package")
def pgpool(local: LocalDevStack) -> StackPgpool:
    """Pgpool-II running the program's files (stopped with `local`)."""
    return local.pgpool("pgpool")


@pytest.fixture(scope="package")
def pgpool_for(local: LocalDevStack) -> Callable[..., StackPgpool]:
    """Pgpool-II running what the program generates for the dev stack with some config overrides
    (stack config keys, e.g. statementLevelLoadBalance="true"); one instance per override set."""
    started: dict[tuple[tuple[str, str], ...], StackPgpool] = {}

    def start(**overrides: str) -> StackPgpool:
        key = tuple(sorted(overrides.items()))
        if key not in started:
            name = "pgpool-" + "-".join(f"{k}-{v}" for k, v in key)
            started[key] = local.pgpool(name, stack=dev_stack(pgpoolImage=local.install.image, **overrides))
        return started[key]

    return start


NO_EXPORTER_SOURCE = 3
"""scripts/tools.sh's exit status when the pgpool2_exporter source it builds from is not there."""


@pytest.fixture(scope="session")
def exporter_binary() -> Path:
    """pgpool2_exporter built by scripts/tools.sh from its source in ../shared/vendor (cached between runs),
    with the image's Dockerfile beside it. Without that source the tests that need it skip, saying why."""
    result = subprocess.run([str(ROOT / "scripts" / "tools.sh"), "pgpool2_exporter"], capture_output=True,
                            text=True, timeout=1200)
    if result.returncode == NO_EXPORTER_SOURCE:
        pytest.skip(result.stderr.strip())
    if result.returncode != 0:
        pytest.fail(f"scripts/tools.sh pgpool2_exporter failed:\n{result.stderr}")
    return Path(result.stdout.strip().splitlines()[-1])
