"""The query cache on the data plane: Pgpool-II pods with the cache on, what they served from it,
what each PostgreSQL server really executed, and how long a read stays stale."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from components.config_schema import declared
from components.pgpool_config import PgpoolPaths
from components.query_cache import QueryCache
from tests.dataplane.harness import wait_until
from tests.dataplane.local_stack import LocalDevStack, StackPgpool
from tests.dataplane.stack_files import DevStack, dev_stack

POLL_S = 0.02
"""How often a stale reader asks again."""


def conf_lines(params) -> str:
    def text(value):
        if isinstance(value, bool):
            return "on" if value else "off"
        return str(value) if isinstance(value, int) else f"'{value}'"

    return "".join(f"{name} = {text(value)}\n" for name, value in params)


def stack_config(cache: QueryCache) -> dict[str, str]:
    """The stack config keys (as the CLI stores them) that make the program generate `cache`."""
    config = {}
    for name, declaration in declared(QueryCache):
        value = getattr(cache, name)
        if value != declaration.default:
            config[declaration.key] = (json.dumps(list(value)) if isinstance(value, tuple)
                                       else str(declaration.kind.config_default(value)))
    return config


def cached_stack(local: LocalDevStack, cache: QueryCache) -> DevStack:
    """The dev stack the program generates with `cache`, for the release `local` runs (its secrets)."""
    return dev_stack(pgpoolImage=local.install.image, **stack_config(cache))


def start_cached_pgpool(local: LocalDevStack, name: str, cache: QueryCache, prefix: tuple[str, ...] = (),
                        by_hand: dict[str, int | str] | None = None) -> StackPgpool:
    """A Pgpool-II pod of the dev stack the program generates with `cache`; `by_hand` sets pgpool.conf
    parameters the program would not (memcached mode), after the generated file was checked."""
    def edit(files: dict[str, str]) -> None:
        files["pgpool.conf"] += conf_lines(by_hand.items())

    return local.pgpool(name, stack=cached_stack(local, cache), edit=edit if by_hand else None, prefix=prefix)


def oid_map_files(pgpool: StackPgpool) -> list[Path]:
    """The table oid map files of a pod: memqcache_oiddir/<database oid>/<table oid>."""
    oiddir = pgpool.pod.host(pgpool.pod.path("pgpool", PgpoolPaths().query_cache_dir))
    return sorted(oiddir.glob("*/*"))


def oid_maps(pgpool: StackPgpool) -> list[str]:
    """The same, as <database oid>/<table oid>."""
    return [f"{path.parent.name}/{path.name}" for path in oid_map_files(pgpool)]


def table_oid(local: LocalDevStack, table: "Table") -> str:
    return str(local.cluster.primary.query("SELECT %s::regclass::oid", (table.name,), dbname=local.stack.app_user)[0][0])


def links_libmemcached(install) -> bool:
    """Whether the install's pgpool was built with memcached support (Debian's is, the image's is not)."""
    return b"libmemcached.so" in install.host_path(install.program("pgpool")).read_bytes()


def app_connect(pgpool, **kwargs) -> psycopg.Connection:
    """A session of the application user; never a named prepared statement unless asked (Pgpool-II's SHOW
    commands and the cache treat those apart)."""
    stack = pgpool.stack
    user = stack.app_user
    return pgpool.endpoint.connect(user, stack.passwords[user], dbname=user,
                                   **{"prepare_threshold": None, **kwargs})


def pool_cache(conn: psycopg.Connection) -> dict[str, float]:
    """SHOW pool_cache of the pod `conn` is connected to."""
    cursor = conn.execute("SHOW pool_cache", prepare=False)
    row = cursor.fetchone()
    return {column.name: float(value) for column, value in zip(cursor.description, row)}


def settled(conn: psycopg.Connection) -> None:
    """Returns once the pod has done what follows its last answer in this session (Pgpool-II caches a
    result, or invalidates after a write, only after sending ReadyForQuery): one more statement, which
    the session's child handles after that. Not cacheable: no hit, no entry."""
    conn.execute("SELECT pg_backend_pid()")


class Table:
    """A table of the application user with `rows` rows (k, v = 0), created on the primary directly and
    replayed by the standby before it is used. Each key's read is a query of its own: its own cache entry."""

    def __init__(self, local: LocalDevStack, name: str, rows: int = 1):
        self.local, self.name = local, name
        stack = local.stack
        user = stack.app_user
        with local.cluster.primary.endpoint.connect(user, stack.passwords[user], dbname=user) as conn:
            conn.execute(f"CREATE TABLE {name} (k integer PRIMARY KEY, v integer NOT NULL)")
            conn.execute(f"INSERT INTO {name} SELECT k, 0 FROM generate_series(1, {rows}) AS k")
        local.cluster.wait_streaming()

    def read(self, key: int = 1) -> str:
        return f"SELECT v FROM {self.name} WHERE k = {key}"

    def write(self, conn: psycopg.Connection, value: int, key: int = 1, settle: bool = True) -> None:
        """UPDATE a row through `conn`'s pod; with `settle`, until the pod has invalidated its cache."""
        conn.execute(f"UPDATE {self.name} SET v = %s WHERE k = %s", (value, key))
        if settle:
            settled(conn)

    def executed(self) -> int:
        """How many times the primary and the standby together executed a SELECT of this table
        (pg_stat_statements, each server's own count)."""
        query = "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query LIKE %s"
        like = f"SELECT v FROM {self.name} %"
        return sum(int(server.query(query, (like,), dbname=self.local.stack.app_user)[0][0])
                   for server in (self.local.cluster.primary, self.local.cluster.standby))


def track_statements(local: LocalDevStack) -> None:
    """pg_stat_statements in the application's database (the library is preloaded on both servers)."""
    local.cluster.primary.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", dbname=local.stack.app_user)
    local.cluster.wait_streaming()


@dataclass(frozen=True)
class Read:
    """One read and when it was sent and answered (wall clock: Pgpool-II's expiry runs on it)."""

    sent: float
    answered: float
    value: int


def timed_read(conn: psycopg.Connection, query: str) -> Read:
    sent = time.time()
    value = conn.execute(query).fetchone()[0]
    return Read(sent, time.time(), value)


def reads_until(conn: psycopg.Connection, query: str, value: int, timeout: float) -> list[Read]:
    """Read through `conn` until the row shows `value`; every read, the fresh one last."""
    reads = [timed_read(conn, query)]
    while reads[-1].value != value:
        if reads[-1].answered - reads[0].sent > timeout:
            raise AssertionError(f"{query}: still {reads[-1].value}, not {value}, after {timeout:.0f} s")
        time.sleep(POLL_S)
        reads.append(timed_read(conn, query))
    return reads


@dataclass
class Staleness:
    """Reads that returned a row older than the last acknowledged write."""

    writes: int = 0
    reads: int = 0
    stale: int = 0
    durations: list[float] = field(default_factory=list)
    """Per write that some read missed: seconds from the write's acknowledgement to the first fresh answer."""

    def add(self, reads: list[Read], written: float) -> None:
        """The reads that followed one write (`written`: when it was acknowledged), the fresh one last."""
        self.writes += 1
        self.reads += len(reads)
        self.stale += len(reads) - 1
        if len(reads) > 1:
            self.durations.append(reads[-1].answered - written)

    @property
    def longest(self) -> float:
        return max(self.durations, default=0.0)

    def describe(self) -> str:
        if not self.durations:
            return f"no stale read after {self.writes} writes ({self.reads} reads)"
        return (f"stale after {len(self.durations)} of {self.writes} writes, for {min(self.durations):.2f} to "
                f"{self.longest:.2f} s ({self.stale} of {self.reads} reads, one every {POLL_S} s while stale)")


def allocated_shared_memory(pgpool: StackPgpool) -> int:
    """The shared memory segment Pgpool-II's main process allocated at start, as it logs it."""
    match = re.search(r"allocating shared memory segment of size: (\d+)", pgpool.log_since_start())
    if not match:
        raise AssertionError(f"{pgpool.name} logged no shared memory allocation:\n{pgpool.log_tail()}")
    return int(match[1])


def memory_limit_bytes(pod_spec: dict, container: str = "pgpool", kind: str = "limits") -> int:
    """A container's memory limit (or request) in the pod template, in bytes (binary suffixes, as the stack
    writes them)."""
    [spec] = [c for c in pod_spec["containers"] if c["name"] == container]
    quantity = spec["resources"][kind]["memory"]
    number, suffix = re.fullmatch(r"([0-9]+)(Ki|Mi|Gi)?", quantity).groups()
    return int(number) * 1024 ** ("", "Ki", "Mi", "Gi").index(suffix or "")

