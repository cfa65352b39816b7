"""Pgpool-II's in-memory query cache (shared memory, as the pgpool/pgpool image can run it) on two pods
of the dev stack in front of the same primary and standby.

Each server's own pg_stat_statements says what it really executed; SHOW pool_cache says what the pod
served. A pod removes its cached results on a table when a write to that table runs through it, and
only then: the other pod serves its copy until memqcache_expire, and so does a pod that cached a row
from a standby that had not yet replayed the write.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psycopg
import pytest

from components.query_cache import MIB, QueryCache, hash_slots
from components.settings import pgpool_memory_mib
from tests.dataplane.harness import Exporter, Memcached, stopping, wait_until
from tests.dataplane.installs import PgpoolInstall
from tests.dataplane.load import pgbench
from tests.dataplane.local_stack import LocalDevStack, StackPgpool
from tests.dataplane.memory_group import MemoryGroup, memory_mib, serve_every_child
from tests.dataplane.test_metrics import samples, stack_exporter, target_labels, watching
from tests.dataplane.query_cache import (
    Read,
    Staleness,
    Table,
    allocated_shared_memory,
    app_connect,
    cached_stack,
    memory_limit_bytes,
    oid_map_files,
    oid_maps,
    links_libmemcached,
    table_oid,
    pool_cache,
    reads_until,
    settled,
    start_cached_pgpool,
    timed_read,
    track_statements,
)

EXPIRE_S = 2
"""memqcache_expire of the pods here (queryCacheMaxStaleSeconds)."""
STEADY_EXPIRE_S = 3600
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
    """Two replicas of the Deployment, whose entries expire after EXPIRE_S: for staleness."""
    steady: StackPgpool
    """A pod whose entries outlive the test (STEADY_EXPIRE_S): for what it serves, however slow the machine."""


def cache_pods_cache(max_stale_seconds: int = EXPIRE_S) -> QueryCache:
    return QueryCache(mode="shmem", max_stale_seconds=max_stale_seconds, unsafe_tables=(UNSAFE_TABLE,))


@pytest.fixture(scope="module")
def cache_pods(local: LocalDevStack) -> Iterator[CachePods]:
    track_statements(local)
    pods = CachePods(start_cached_pgpool(local, "pgpool-cache-a", cache_pods_cache()),
                     start_cached_pgpool(local, "pgpool-cache-b", cache_pods_cache()),
                     start_cached_pgpool(local, "pgpool-cache-steady", cache_pods_cache(STEADY_EXPIRE_S)))
    yield pods
    for pod in (pods.a, pods.b, pods.steady):
        pod.stop()


def assert_served_until_it_expired(cached: Read, reads: list[Read], what: str) -> None:
    """The pod served the row from the entry `cached` made until that entry expired, and not after:
    `reads` are the same session's next reads, the fresh one last.

    Pgpool-II stamps an entry with time(NULL) after it has answered the read that missed, and before
    it handles that session's next message; it serves the entry while time(NULL) <= stamp +
    memqcache_expire. glibc's time() reads the coarse clock, which lags the real one by up to a tick.
    """
    earliest = math.floor(cached.sent - COARSE_TICK_S) + EXPIRE_S + 1
    latest = math.floor(reads[0].answered) + EXPIRE_S + 1 + COARSE_TICK_S
    assert reads[-1].answered >= earliest, f"{what}: the entry went before it expired"
    assert all(read.sent < latest for read in reads[:-1]), f"{what}: served after it expired"


def test_a_repeated_select_is_served_from_the_cache(local: LocalDevStack, cache_pods: CachePods) -> None:
    table = Table(local, "qc_repeated")
    with app_connect(cache_pods.steady) as conn:
        before, executed_before = pool_cache(conn), table.executed()
        rows = {conn.execute(table.read()).fetchone()[0] for _ in range(50)}
        after, executed = pool_cache(conn), table.executed() - executed_before
    hits = after["num_cache_hits"] - before["num_cache_hits"]
    print(f"50 reads through one pod: {hits:.0f} cache hits, {executed} executed by the servers")
    assert rows == {0}
    assert executed == 1 and hits == 49


def test_a_write_invalidates_the_pods_cache_at_once(local: LocalDevStack, cache_pods: CachePods) -> None:
    """Write through a session of a pod, then read twice through another session of it once the standby
    has replayed the write: the first read is fresh (a miss: the servers execute it), the second a hit."""
    table = Table(local, "qc_invalidated")
    stale = 0
    with app_connect(cache_pods.steady) as writer, app_connect(cache_pods.steady) as reader:
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
            settled(reader_b)
            reader_a.execute(query)
            settled(reader_a)  # A has cached it too
            time.sleep(EXPIRE_S * (key - 1) / CROSS_ROUNDS)  # the entry's age at the write, not a wait
            table.write(writer, key, key)
            written = time.time()
            local.cluster.wait_streaming()
            same_pod.add(reads_until(reader_a, query, key, STALE_TIMEOUT_S), written)
            reads = reads_until(reader_b, query, key, STALE_TIMEOUT_S)
            across.add(reads, written)
            assert_served_until_it_expired(cached, reads, f"row {key} through pod B")
    print(f"write through pod A, read through pod B, memqcache_expire = {EXPIRE_S} s: {across.describe()}; "
          f"read through pod A: {same_pod.describe()}")
    assert same_pod.stale == 0 and across.durations


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
            assert_served_until_it_expired(first, reads[1:], f"row {key} read from the standby")
    print(f"read through the standby right after each write through the same pod, memqcache_expire = "
          f"{EXPIRE_S} s: {cached_stale.describe()}")


def test_nothing_is_cached_that_must_not_be(local: LocalDevStack, cache_pods: CachePods) -> None:
    """Each query runs twice through one session of a pod: those whose result may change with no write
    through Pgpool-II, or that only the session sees, never count a hit; a plain table's does (the
    control). Then rows change on the primary directly, where Pgpool-II cannot see it: every uncached
    query shows the change, the control still returns its cached row."""
    stack = local.stack
    user = stack.app_user
    with local.cluster.primary.endpoint.connect(user, stack.passwords[user], dbname=user) as conn:
        for name, kind in (("qc_rules", "TABLE"), (UNSAFE_TABLE, "TABLE"), ("qc_unlogged", "UNLOGGED TABLE")):
            conn.execute(f"CREATE {kind} {name} (k integer PRIMARY KEY, v integer NOT NULL)")
            conn.execute(f"INSERT INTO {name} VALUES (1, 0)")
        conn.execute("CREATE VIEW qc_view AS SELECT k, v FROM qc_rules")
    local.cluster.wait_streaming()
    uncached = {  # each reads row 1 of a table the test then changes
        "now()": "SELECT v, now() FROM qc_rules WHERE k = 1",
        "random()": "SELECT v, random() FROM qc_rules WHERE k = 1",
        "clock_timestamp()": "SELECT v, clock_timestamp() FROM qc_rules WHERE k = 1",
        "a table on the unsafe list": f"SELECT v FROM {UNSAFE_TABLE} WHERE k = 1",
        "the same, schema-qualified": f"SELECT v FROM public.{UNSAFE_TABLE} WHERE k = 1",
        "a view": "SELECT v FROM qc_view WHERE k = 1",
        "an unlogged table": "SELECT v FROM qc_unlogged WHERE k = 1",
        "FOR UPDATE": "SELECT v FROM qc_rules WHERE k = 1 FOR UPDATE",
        "a temporary table": "SELECT v FROM qc_temp WHERE k = 1",
    }
    other_uncached = {
        "the routing tests' current_setting('port')": "SELECT current_setting('port')",
        "a system catalog": "SELECT count(*) FROM pg_class",
    }
    control = "SELECT v FROM qc_rules WHERE k = 1"
    with app_connect(cache_pods.steady) as conn:
        conn.execute("CREATE TEMPORARY TABLE qc_temp (k integer PRIMARY KEY, v integer NOT NULL)")
        conn.execute("INSERT INTO qc_temp VALUES (1, 0)")
        hits = {}
        for label, query in {"a plain table (the control)": control, **uncached, **other_uncached}.items():
            before = pool_cache(conn)["num_cache_hits"]
            conn.execute(query)
            conn.execute(query)
            hits[label] = pool_cache(conn)["num_cache_hits"] - before
        with local.cluster.primary.endpoint.connect(user, stack.passwords[user], dbname=user) as direct:
            for name in ("qc_rules", UNSAFE_TABLE, "qc_unlogged"):
                direct.execute(f"UPDATE {name} SET v = 1")
        conn.execute("UPDATE qc_temp SET v = 1")
        local.cluster.wait_streaming()
        seen = {label: conn.execute(query).fetchone()[0] for label, query in uncached.items()}
        control_seen = conn.execute(control).fetchone()[0]
        # A transaction reads its own write, cached row or not (the routing tests' check).
        with conn.transaction():
            conn.execute("UPDATE qc_rules SET v = 2 WHERE k = 1")
            in_transaction = conn.execute(control).fetchone()[0]
    print(f"cache hits of a second identical query: {hits}")
    assert hits == {"a plain table (the control)": 1, **{label: 0 for label in {**uncached, **other_uncached}}}
    assert seen == {label: 1 for label in uncached} and control_seen == 0
    assert in_transaction == 2


HOT_ACCOUNTS = 50
TPCB_ON_HOT_ACCOUNTS = f"""\\set aid random(1, {HOT_ACCOUNTS})
\\set bid random(1, 1)
\\set tid random(1, 10)
\\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
END;
"""
"""pgbench's built-in tpcb-like script on the hot accounts only."""
SELECT_ONLY = "SELECT abalance FROM pgbench_accounts WHERE aid = {aid}"
"""pgbench -S's statement, as its simple protocol sends it."""


def test_pgbench_reads_the_same_with_and_without_the_cache(local: LocalDevStack, cache_pods: CachePods,
                                                           pgpool: StackPgpool) -> None:
    """pgbench's select-only statement on the hot accounts through a cached pod, pgbench's read/write
    transactions on them through it, then every hot account read through it (twice), through a pod without
    the cache and on the primary: all the same."""
    stack = local.stack
    user, password = stack.app_user, stack.passwords[stack.app_user]
    local.workspace.run(["pgbench", "-i", "-q", "-s", "1"],
                        env=local.cluster.primary.endpoint.libpq_env(user, password, user))
    local.cluster.wait_streaming()
    select_only = local.workspace.write("qc_select_only.sql", f"\\set aid random(1, {HOT_ACCOUNTS})\n"
                                        + SELECT_ONLY.format(aid=":aid") + ";\n")
    tpcb = local.workspace.write("qc_tpcb.sql", TPCB_ON_HOT_ACCOUNTS)
    accounts = [SELECT_ONLY.format(aid=aid) for aid in range(1, HOT_ACCOUNTS + 1)]
    with app_connect(cache_pods.steady) as conn:
        before = pool_cache(conn)
        pgbench(local.workspace, cache_pods.steady.endpoint, user, password, user,
                ["-n", "-c", "2", "-t", "200", "-f", str(select_only)])
        pgbench(local.workspace, cache_pods.steady.endpoint, user, password, user,
                ["-n", "-c", "2", "-t", "100", "-f", str(tpcb)])
        local.cluster.wait_streaming()
        cached = [[conn.execute(query).fetchone()[0] for query in accounts] for _ in range(2)]
        hits = pool_cache(conn)["num_cache_hits"] - before["num_cache_hits"]
    with app_connect(pgpool) as conn:
        uncached = [conn.execute(query).fetchone()[0] for query in accounts]
    with local.cluster.primary.endpoint.connect(user, password, dbname=user) as conn:
        direct = [conn.execute(query).fetchone()[0] for query in accounts]
        changed = conn.execute("SELECT count(DISTINCT aid) FROM pgbench_history").fetchone()[0]
    print(f"pgbench select-only and tpcb-like on {HOT_ACCOUNTS} accounts through a cached pod: {hits:.0f} cache hits, "
          f"{changed} accounts changed; reads through A, without the cache and direct agree")
    assert changed > HOT_ACCOUNTS // 2 and hits > HOT_ACCOUNTS
    assert cached == [direct, direct] and uncached == direct


def test_the_cache_takes_the_shared_memory_the_settings_say(local: LocalDevStack, cache_pods: CachePods,
                                                            pgpool: StackPgpool) -> None:
    """Pgpool-II's shared memory grows with the cache exactly as QueryCache.shared_memory_bytes says (with
    the cache off too: its store then holds the shared relation cache), all of it is resident from the
    start and charged to the container's memory limit (a cgroup, as the kubelet sets it): a limit below
    it kills Pgpool-II as it starts."""
    uid = local.stack.pod["securityContext"]["runAsUser"]
    default = cache_pods_cache()
    small = QueryCache(mode="shmem", total_bytes=8 * MIB, max_entries=1000, max_stale_seconds=EXPIRE_S)
    with MemoryGroup("cache", memory_limit_bytes(local.stack.pod), uid) as group:
        pod = start_cached_pgpool(local, "pgpool-cache-memory", small, prefix=group.enter)
        try:
            charged = group.stat()
        finally:
            pod.stop()
    allocated = {label: allocated_shared_memory(server) for label, server in
                 (("default", cache_pods.a), ("small", pod), ("off", pgpool))}
    print(f"shared memory Pgpool-II allocated: {allocated} bytes (the cache's store: {default.shared_memory_bytes}, "
          f"{small.shared_memory_bytes}, {QueryCache().shared_memory_bytes}); the 8 MiB pod's cgroup holds "
          f"{charged['shmem']} bytes of shared memory, {charged['rss']} private")
    assert allocated["default"] - allocated["small"] == default.shared_memory_bytes - small.shared_memory_bytes
    assert allocated["default"] - allocated["off"] == default.shared_memory_bytes - QueryCache().shared_memory_bytes
    assert charged["shmem"] >= allocated_shared_memory(pod)
    with MemoryGroup("too-small", default.shared_memory_bytes // 2, uid) as group:
        with pytest.raises(RuntimeError, match="exited during start-up"):
            start_cached_pgpool(local, "pgpool-cache-oom", default, prefix=group.enter)
        assert group.oom_kills >= 1


def test_the_oid_map_grows_with_every_cached_result_until_a_write(local: LocalDevStack,
                                                                 cache_pods: CachePods) -> None:
    """memqcache_oiddir: Pgpool-II appends a cached result's id (8 bytes) to the file of each table it read,
    never checking for one already there, and removes the file when the table is written through the pod:
    hence the pod's volume of its own for it."""
    table = Table(local, "qc_oid_map", rows=40)
    with app_connect(cache_pods.steady) as conn:
        for key in range(1, 41):
            conn.execute(table.read(key))
        settled(conn)
        [path] = [p for p in oid_map_files(cache_pods.steady) if p.name == table_oid(local, table)]
        size = path.stat().st_size
        table.write(conn, 1)
    print(f"oid map of {table.name} after 40 cached results: {size} bytes; after a write: "
          f"{'gone' if not path.exists() else path.stat().st_size}")
    assert size == 40 * 8 and not path.exists()


def memcached_pods(local: LocalDevStack, memcached: Memcached) -> list[StackPgpool]:
    """Two pods whose cache is one memcached: the stack refuses the mode, so this is pgpool.conf by hand."""
    by_hand = {"memqcache_method": "memcached", "memqcache_memcached_host": memcached.endpoint.host,
               "memqcache_memcached_port": memcached.endpoint.port}
    return [start_cached_pgpool(local, f"pgpool-memcached-{name}", cache_pods_cache(), by_hand=by_hand)
            for name in "ab"]


def test_one_memcached_for_two_pods_invalidates_only_what_the_writing_pod_cached(
        local: LocalDevStack, install: PgpoolInstall) -> None:
    """Memcached mode on a Pgpool-II built with it (Debian's): pod A caches a row in the memcached both
    pods use, and pod B then serves it from there too. A write through B leaves it: B's memqcache_oiddir
    records only what B cached, so B deletes nothing, and both pods serve the older row until it
    expires. A write through A, which cached it, removes it for both. Not coherent across pods."""
    if not links_libmemcached(install):
        pytest.skip(f"{install} is built without memcached, as the pgpool/pgpool image is "
                    "(test_memcached_mode_fails_every_query_on_a_build_without_it)")
    table = Table(local, "qc_memcached", rows=2)
    seen = {}
    memcached = Memcached(local.workspace)
    with stopping(memcached):
        memcached.start()
        pod_a, pod_b = memcached_pods(local, memcached)
        with stopping(pod_a, pod_b), app_connect(pod_a) as conn_a, app_connect(pod_b) as conn_b:
            hits_b = pool_cache(conn_b)["num_cache_hits"]
            for key, writer in ((1, conn_b), (2, conn_a)):
                conn_a.execute(table.read(key))
                settled(conn_a)  # A has stored the row in memcached: B's read finds it there
                conn_b.execute(table.read(key))
                table.write(writer, key, key)
                local.cluster.wait_streaming()
                seen[key] = {"a": conn_a.execute(table.read(key)).fetchone()[0],
                             "b": conn_b.execute(table.read(key)).fetchone()[0]}
            served_by_b = pool_cache(conn_b)["num_cache_hits"] - hits_b
            settled(conn_a)
            maps = {"a": oid_maps(pod_a), "b": oid_maps(pod_b)}
    stale_after_b, fresh_after_a = seen[1], seen[2]
    print(f"memcached shared by pods A and B: after a write through B, A and B read {stale_after_b} (stale: 0); "
          f"after a write through A, {fresh_after_a}; B served {served_by_b:.0f} reads from memcached and cached "
          f"nothing itself; oid maps A {maps['a']}, B {maps['b']}")
    assert stale_after_b == {"a": 0, "b": 0} and fresh_after_a == {"a": 2, "b": 2}
    assert served_by_b >= 2 and maps["a"] and not maps["b"]


def test_memcached_mode_fails_every_query_on_a_build_without_it(local: LocalDevStack,
                                                                install: PgpoolInstall) -> None:
    """The pgpool/pgpool image's Pgpool-II is configured without memcached (Dockerfile.pgpool:
    --with-openssl only). In memcached mode it starts and accepts logins, and then every query fails
    with "memcached support is not enabled", cacheable or not."""
    if links_libmemcached(install):
        pytest.skip(f"{install} is built with memcached (test_one_memcached_for_two_pods_...)")
    table = Table(local, "qc_no_memcached")
    failed = []
    memcached = Memcached(local.workspace)
    with stopping(memcached):
        memcached.start()
        pods = memcached_pods(local, memcached)
        with stopping(*pods):
            for query in (table.read(), f"SELECT v, now() FROM {table.name} WHERE k = 1", "SELECT 1"):
                with app_connect(pods[0]) as conn:
                    with pytest.raises(psycopg.errors.InternalError, match="memcached support is not enabled"):
                        conn.execute(query)
                    failed.append(query)
    print(f"{install} in memcached mode: {failed} all failed with 'memcached support is not enabled'")


CACHE_SERIES = ("num_cache_hits", "num_selects", "cache_hit_ratio", "num_hash_entries", "used_hash_entries",
                "num_cache_entries", "used_cache_entries_size", "free_cache_entries_size",
                "fragment_cache_entries_size")
"""pgpool2_exporter 1.2.2's pool_cache series (its metricMaps: SHOW POOL_CACHE's columns, no labels)."""


def cache_series(exporter: Exporter) -> dict[str, float]:
    text = exporter.metrics()
    found = {}
    for name in CACHE_SERIES:
        [(labels, value)] = samples(text, f"pgpool2_pool_cache_{name}")
        assert labels == {}, labels
        found[name] = value
    return found


def test_the_exporter_reports_the_cache(local: LocalDevStack, cache_pods: CachePods, exporter_binary: Path) -> None:
    """pgpool2_exporter beside a pod, as the sidecar runs: its pgpool2_pool_cache_* series follow the cache
    through reads (hits and entries up, free space down) and a write (the table's entry gone)."""
    pod = cache_pods.steady
    exporter = stack_exporter(pod.stack, local, pod, exporter_binary, "pgpool2_exporter-cache")
    table = Table(local, "qc_exporter")
    with stopping(exporter):
        exporter.start()
        before = cache_series(exporter)
        with app_connect(cache_pods.steady) as conn:
            for _ in range(10):
                conn.execute(table.read())
            settled(conn)
            cached = cache_series(exporter)
            table.write(conn, 1)
        written = cache_series(exporter)
    print(f"pgpool2_pool_cache_* before, after 10 reads, after a write: {before}, {cached}, {written}")
    assert before["num_hash_entries"] == hash_slots(cache_pods_cache().max_entries)
    assert cached["num_cache_hits"] - before["num_cache_hits"] == 9
    # The shared relation cache keeps its catalog entries in the same store, so more than one entry appears.
    assert cached["num_cache_entries"] > before["num_cache_entries"]
    assert cached["used_cache_entries_size"] > before["used_cache_entries_size"]
    assert cached["free_cache_entries_size"] < before["free_cache_entries_size"]
    assert 0 < cached["cache_hit_ratio"] <= 1
    # The entry's bytes become free, or fragments when other entries follow it in its block.
    assert written["num_cache_entries"] == cached["num_cache_entries"] - 1
    assert written["used_cache_entries_size"] < cached["used_cache_entries_size"]
    assert (written["free_cache_entries_size"] + written["fragment_cache_entries_size"]
            > cached["free_cache_entries_size"] + cached["fragment_cache_entries_size"])


INVALIDATION_DEFECTS = {
    # Pgpool-II's release notes (doc/src/sgml/release-4.*.sgml): the first release of each series that
    # invalidates the cache for the statement; a series missing never does.
    "a named prepared statement run again (Bind without Parse)": {
        (4, 3): (4, 3, 15), (4, 4): (4, 4, 12), (4, 5): (4, 5, 7), (4, 6): (4, 6, 1), (4, 7): (4, 7, 0)},
    "MERGE": {(4, 4): (4, 4, 17), (4, 5): (4, 5, 12), (4, 6): (4, 6, 7), (4, 7): (4, 7, 2)},
}
"""Writes after which a pod keeps its cached results, before the release that fixed it ('Fix long standing
bind bug with query cache', 4.6.1 etc.; 'Fix query cache to invalidate cache when MERGE statement is used',
4.7.2 etc.; 4.3's parser predates MERGE)."""


def release_of(install: PgpoolInstall) -> tuple[int, int, int]:
    """The upstream release `pgpool --version` names (a distribution's backports are not counted)."""
    match = re.search(r"version (\d+)\.(\d+)\.(\d+)", install.version)
    return tuple(map(int, match.groups()))


def test_known_invalidation_defects_leave_rows_stale_only_until_memqcache_expire(
        local: LocalDevStack, cache_pods: CachePods, install: PgpoolInstall) -> None:
    """Each write through pod A that some releases do not invalidate for: the row read through A stays stale
    exactly on the releases the notes name, and then only until memqcache_expire."""
    release = release_of(install)
    table = Table(local, "qc_defects", rows=len(INVALIDATION_DEFECTS))
    update = f"UPDATE {table.name} SET v = %s WHERE k = %s"
    writes = {  # (before the row is cached, the write)
        "a named prepared statement run again (Bind without Parse)": (
            lambda conn, key: conn.execute(update, (0, key), prepare=True),  # Parse: prepared and run once
            lambda conn, key: conn.execute(update, (10, key), prepare=True)),  # Bind and Execute only
        "MERGE": (
            lambda conn, key: None,
            lambda conn, key: conn.execute(f"MERGE INTO {table.name} t USING (SELECT {key} AS k) s ON t.k = s.k "
                                           "WHEN MATCHED THEN UPDATE SET v = 10")),
    }
    stale = {}
    # prepare_threshold 0: psycopg keeps the statements it prepares, so the second run sends no Parse
    with app_connect(cache_pods.a, prepare_threshold=0) as writer, app_connect(cache_pods.a) as reader:
        for key, (defect, fixed) in enumerate(INVALIDATION_DEFECTS.items(), start=1):
            query = table.read(key)
            prepare, write = writes[defect]
            prepare(writer, key)
            settled(writer)
            local.cluster.wait_streaming()
            cached = timed_read(reader, query)
            settled(reader)
            write(writer, key)
            settled(writer)
            local.cluster.wait_streaming()
            reads = reads_until(reader, query, 10, STALE_TIMEOUT_S)
            stale[defect] = len(reads) > 1
            expected = release < fixed.get(release[:2], (99, 0, 0))
            assert stale[defect] == expected, f"{defect}: stale {stale[defect]} on {install}"
            if stale[defect]:
                assert_served_until_it_expired(cached, reads, defect)
    print(f"{install}: stale after {[d for d, s in stale.items() if s] or 'no'} write through the same pod")


def test_the_cache_full_alert_goes_pending_when_the_cache_evicts(local: LocalDevStack, exporter_binary: Path) -> None:
    """A pod with a 2 MiB cache, its exporter and a Prometheus with the program's rules for the stack: results
    of 10 kB fill the cache until every new one evicts older ones, and PgpoolQueryCacheFull goes pending."""
    cache = QueryCache(mode="shmem", max_stale_seconds=600, total_bytes=2 * MIB)
    pod = start_cached_pgpool(local, "pgpool-cache-full", cache)
    exporter = stack_exporter(pod.stack, local, pod, exporter_binary, "pgpool2_exporter-cache-full")
    prometheus = watching(local.workspace, pod.stack, exporter, target_labels(pod.stack))
    table = Table(local, "qc_full", rows=400)

    def alerts() -> set[str]:
        return {a["labels"]["alertname"] for a in prometheus.api("alerts")["alerts"]}

    with stopping(pod, exporter, prometheus):
        exporter.start()
        prometheus.start()
        wait_until("the exporter scraped", lambda: prometheus.api("query", query="pgpool2_pool_cache_num_hash_entries")
                   ["result"], timeout=60)
        assert "PgpoolQueryCacheFull" not in alerts()
        with app_connect(pod) as conn:
            for key in range(1, 401):
                conn.execute(f"SELECT repeat('x', 10000), v FROM {table.name} WHERE k = {key}")
            entries = pool_cache(conn)["num_cache_entries"]
            wait_until("PgpoolQueryCacheFull pending", lambda: "PgpoolQueryCacheFull" in alerts(), timeout=90)
    print(f"a 2 MiB cache after 400 results of 10 kB holds {entries:.0f}; PgpoolQueryCacheFull pending")
    assert entries < 400 * 3 / 4  # evicted: a 2 MiB store holds about 200 such results


def test_what_the_cache_adds_to_a_pod_whose_children_served_cached_reads(local: LocalDevStack) -> None:
    """A pod with the default cache and one with the cache off, each in a memory cgroup with the pod's limit,
    every child having served the same reads: what the cached pod holds beyond the other (private and shared
    memory) is within QueryCache.pod_memory_bytes, and the cached pod's memory (proportional set size, as
    tests/dataplane/test_memory.py measures it) within what the settings ask of its limit (pgpool_memory_mib)."""
    caches = {"on": QueryCache(mode="shmem", max_stale_seconds=STEADY_EXPIRE_S), "off": QueryCache()}
    table = Table(local, "qc_children", rows=2000)
    pod_spec, held, pss = local.stack.pod, {}, {}
    children = local.stack.settings.pgpool.num_init_children
    sessions = children - local.stack.settings.pgpool.reserved_connections - 1
    for label, cache in caches.items():
        with MemoryGroup(f"children-{label}", memory_limit_bytes(pod_spec), pod_spec["securityContext"]["runAsUser"]) \
                as group:
            pod = start_cached_pgpool(local, f"pgpool-children-{label}", cache, prefix=group.enter)
            with stopping(pod):
                serve_every_child(sessions, lambda: app_connect(pod),
                                  lambda conn, i: [conn.execute(table.read(k % 2000 + 1))
                                                   for k in range(i * 50, i * 50 + 50)])
                stat = group.stat()
                held[label] = (stat["rss"], stat["shmem"])
                pss[label] = memory_mib(pod.pid)
    added = sum(held["on"]) - sum(held["off"])
    allowed = caches["on"].pod_memory_bytes(children) - caches["off"].pod_memory_bytes(children)
    asked = {label: pgpool_memory_mib(cached_stack(local, cache).settings.pgpool) for label, cache in caches.items()}
    print(f"after {sessions} children of {local.install} served the same reads: {sum(held['on']) / MIB:.0f} MiB "
          f"charged with the cache ({held['on'][1] / MIB:.0f} shared), {sum(held['off']) / MIB:.0f} MiB without "
          f"({held['off'][1] / MIB:.0f} shared); the cache added {added / MIB:.0f} MiB, the settings count "
          f"{allowed / MIB:.0f} MiB. Proportional set size {pss['on']:.0f} MiB with the cache, {pss['off']:.0f} MiB "
          f"without; the settings ask {asked['on']:.0f} and {asked['off']:.0f} MiB")
    shared = caches["on"].shared_memory_bytes - caches["off"].shared_memory_bytes
    assert held["on"][1] - held["off"][1] >= shared - 4096  # the cgroup counts whole pages of each segment
    assert added <= allowed
    assert pss["on"] <= asked["on"] and pss["off"] <= asked["off"]
