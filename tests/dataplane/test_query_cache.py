"""Pgpool-II's in-memory query cache (shared memory, as the pgpool/pgpool image can run it) on two pods
of the dev stack in front of the same primary and standby.

Each server's own pg_stat_statements says what it really executed; SHOW pool_cache says what the pod
served. A pod removes its cached results on a table when a write to that table runs through it, and
only then: the other pod serves its copy until memqcache_expire, and so does a pod that cached a row
from a standby that had not yet replayed the write.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Iterator

import psycopg
import pytest

from components.query_cache import QueryCache
from tests.dataplane.local_stack import LocalDevStack, StackPgpool
from tests.dataplane.query_cache import (
    Read,
    Staleness,
    Table,
    app_connect,
    pool_cache,
    reads_until,
    start_cached_pgpool,
    timed_read,
    track_statements,
)

EXPIRE_S = 2
"""memqcache_expire of the pods here (queryCacheMaxStaleSeconds)."""
UNSAFE_TABLE = "qc_unsafe"
ROUNDS = 200
CROSS_ROUNDS = 6
LAG_ROUNDS = 12
COARSE_TICK_S = time.clock_getres(5)
"""Resolution of CLOCK_REALTIME_COARSE (clock id 5 on Linux; Python does not name it): a kernel tick."""
STALE_TIMEOUT_S = EXPIRE_S + 30
"""How long a reader waits for a fresh row before the test fails (the entry expires within EXPIRE_S + 1)."""


@dataclass
class CachePods:
    a: StackPgpool
    b: StackPgpool


@pytest.fixture(scope="module")
def cache_pods(local: LocalDevStack) -> Iterator[CachePods]:
    """Two pods with the cache on, as two replicas of the Deployment."""
    track_statements(local)
    cache = QueryCache(enabled=True, expire_seconds=EXPIRE_S, unsafe_tables=(UNSAFE_TABLE,))
    pods = CachePods(start_cached_pgpool(local, "pgpool-cache-a", cache),
                     start_cached_pgpool(local, "pgpool-cache-b", cache))
    yield pods
    pods.a.stop()
    pods.b.stop()


def expires_between(cached: Read, next_answer: Read) -> tuple[float, float]:
    """The earliest and latest time at which a pod stops serving the entry that `cached` made.

    Pgpool-II stamps an entry with time(NULL) after it has answered the read that missed, and before
    it handles that session's next message; it serves the entry while time(NULL) <= stamp +
    memqcache_expire. glibc's time() reads the coarse clock, which lags the real one by up to a tick.
    """
    return (math.floor(cached.sent - COARSE_TICK_S) + EXPIRE_S + 1,
            math.floor(next_answer.answered) + EXPIRE_S + 1 + COARSE_TICK_S)


def test_a_repeated_select_is_served_from_the_cache(local: LocalDevStack, cache_pods: CachePods) -> None:
    table = Table(local, "qc_repeated")
    with app_connect(cache_pods.a) as conn:
        before, executed_before = pool_cache(conn), table.executed()
        rows = {conn.execute(table.read()).fetchone()[0] for _ in range(50)}
        after, executed = pool_cache(conn), table.executed() - executed_before
    hits = after["num_cache_hits"] - before["num_cache_hits"]
    print(f"50 reads through one pod: {hits:.0f} cache hits, {executed} executed by the servers")
    assert rows == {0}
    assert executed == 1 and hits == 49


def test_a_write_invalidates_the_pods_cache_at_once(local: LocalDevStack, cache_pods: CachePods) -> None:
    """Write through a session of pod A, then read twice through another session of A once the standby
    has replayed the write: the first read is fresh (a miss: the servers execute it), the second a hit."""
    table = Table(local, "qc_invalidated")
    stale = 0
    with app_connect(cache_pods.a) as writer, app_connect(cache_pods.a) as reader:
        before, executed_before = pool_cache(reader), table.executed()
        for value in range(1, ROUNDS + 1):
            table.write(writer, value)
            local.cluster.wait_streaming()
            stale += sum(reader.execute(table.read()).fetchone()[0] != value for _ in range(2))
        after, executed = pool_cache(reader), table.executed() - executed_before
    hits = after["num_cache_hits"] - before["num_cache_hits"]
    print(f"{ROUNDS} write-then-read rounds through one pod: {stale} stale reads, {hits:.0f} cache hits, "
          f"{executed} reads executed by the servers")
    assert stale == 0
    assert executed == ROUNDS and hits == ROUNDS


def test_a_read_through_another_pod_is_stale_until_memqcache_expire(local: LocalDevStack,
                                                                     cache_pods: CachePods) -> None:
    """Pods A and B cache a row, a write goes through A: A's readers see it at once, B's only once B's
    entry expires, whatever its age at the write (0 to memqcache_expire here)."""
    table = Table(local, "qc_across", rows=CROSS_ROUNDS)
    across, same_pod = Staleness(), Staleness()
    with app_connect(cache_pods.a) as writer, app_connect(cache_pods.a) as reader_a, \
            app_connect(cache_pods.b) as reader_b:
        for key in range(1, CROSS_ROUNDS + 1):
            query = table.read(key)
            cached = timed_read(reader_b, query)  # B's first read of this row: a miss, which B caches
            reader_a.execute(query)
            time.sleep(EXPIRE_S * (key - 1) / CROSS_ROUNDS)  # the entry's age at the write, not a wait
            table.write(writer, key, key)
            written = time.time()
            local.cluster.wait_streaming()
            same_pod.add(reads_until(reader_a, query, key, STALE_TIMEOUT_S), written)
            reads = reads_until(reader_b, query, key, STALE_TIMEOUT_S)
            across.add(reads, written)
            earliest, latest = expires_between(cached, reads[0])
            assert reads[-1].answered >= earliest, f"row {key}: pod B dropped its entry before it expired"
            assert all(read.sent < latest for read in reads[:-1]), f"row {key}: pod B served it after it expired"
    print(f"write through pod A, read through pod B, memqcache_expire = {EXPIRE_S} s: {across.describe()}; "
          f"read through pod A: {same_pod.describe()}")
    assert same_pod.stale == 0
    assert across.durations and across.longest < EXPIRE_S + 1 + 1


def standby_session(pgpool: StackPgpool, local: LocalDevStack) -> psycopg.Connection:
    """A session of the application whose reads Pgpool-II balances to the standby."""
    standby = str(local.cluster.standby.endpoint.port)
    for _ in range(100):
        conn = app_connect(pgpool)
        if conn.execute("SELECT current_setting('port')").fetchone()[0] == standby:
            return conn
        conn.close()
    raise AssertionError("no session of 100 was balanced to the standby")


def test_a_read_right_after_a_write_may_cache_a_standby_behind_it(local: LocalDevStack,
                                                                   cache_pods: CachePods) -> None:
    """A read balanced to the standby right after a write, even in the pod that ran the write, may reach
    the standby before it has replayed the write. Without the cache that read alone is stale; with it,
    Pgpool-II caches the older row and serves it until memqcache_expire, long after the standby caught up."""
    table = Table(local, "qc_lag", rows=LAG_ROUNDS)
    cached_stale = Staleness()
    with app_connect(cache_pods.a) as writer, standby_session(cache_pods.a, local) as reader:
        for key in range(1, LAG_ROUNDS + 1):
            query = table.read(key)
            table.write(writer, key, key, settle=False)
            written = time.time()
            first = timed_read(reader, query)  # no wait: the standby may not have replayed the write yet
            if first.value == key:
                cached_stale.add([first], written)
                continue
            local.cluster.wait_streaming()
            reads = [first, *reads_until(reader, query, key, STALE_TIMEOUT_S)]
            cached_stale.add(reads, written)
            earliest, latest = expires_between(first, reads[1])
            assert reads[-1].answered >= earliest, f"row {key}: the older row was not the cache's"
            assert all(read.sent < latest for read in reads[:-1]), f"row {key}: served after it expired"
    print(f"read through the standby right after each write through the same pod, memqcache_expire = "
          f"{EXPIRE_S} s: {cached_stale.describe()}")
    assert cached_stale.longest < EXPIRE_S + 1 + 1
