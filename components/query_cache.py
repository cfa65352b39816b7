"""Pgpool-II's in-memory query cache as the pgpool/pgpool image can run it: in each pod's shared memory.

Its stack settings (declared on QueryCache, read by components/settings.py), the pgpool.conf parameters
of the cache, and the shared memory they make Pgpool-II allocate. No Pulumi import. Sizes and layouts
are Pgpool-II's own (src/query_cache/pool_memqcache.c and src/main/pgpool_main.c, the same in 4.3 to
4.7); the data plane checks the figure against the size Pgpool-II logs and what a memory cgroup is
charged.

Pgpool-II allocates the cache's shared memory whenever `memqcache_method` is shmem (its default),
even with `memory_cache_enabled = off`: the shared relation cache (`enable_shared_relcache`, on)
lives in the same store. So with the cache off the stack still renders the sizes, small ones, or
every pod would hold Pgpool-II's default 128 MiB for a few hundred catalog entries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from components.config_schema import ByteSize, Choice, Integer, Pattern, Strings, setting

MIB = 1024 * 1024
BLOCK_BYTES = 1 * MIB
"""memqcache_cache_block_size, Pgpool-II's default and not a setting here: the cache is a whole number
of blocks, a result must fit in one (memqcache_maxcache <= the block), and a full cache evicts a
whole block at a time."""
HASH_ELEMENT_BYTES = 16 + 48
"""Per hash slot: a header element (uint32 key + pointer) and an element (next pointer, 32-byte MD5
key, 8-byte cache id), each padded to 8 bytes on 64-bit builds."""
HASH_HEADER_BYTES = 16
"""The hash table's header before its slots (long nhash, uint32 mask)."""
RELCACHE_ONLY_TOTAL_BYTES = 4 * MIB
RELCACHE_ONLY_ENTRIES = 16384
"""With the query cache off: room for the shared relation cache only (an entry is about 100 bytes),
5 MiB of shared memory instead of Pgpool-II's default 128 MiB."""
CHILD_BYTES = 3 * MIB
"""What a child that served cached reads keeps besides the store, over one without the cache: 30 children held
61-62 MiB more with the cache on, its larger store aside (4.3.5, 4.6.1 and 4.7.2,
tests/dataplane/test_query_cache.py); rounded up."""
TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_$]*$")
QUALIFIED_TABLE_NAME = re.compile(r"^([a-z_][a-z0-9_$]*\.)?[a-z_][a-z0-9_$]*$")
MODES = ("off", "shmem", "memcached")
"""memcached is named so that it can be refused with its reason (settings' query_cache_in_shared_memory)."""


def _maxalign(size: int) -> int:
    return -(-size // 8) * 8


def hash_slots(max_entries: int) -> int:
    """Slots of Pgpool-II's cache hash table: memqcache_max_num_cache rounded up to a power of two (at least 2)."""
    slots = 2
    while slots < max_entries:
        slots <<= 1
    return slots


def shared_memory_bytes(total_bytes: int, max_entries: int) -> int:
    """The shared memory the cache store takes: its blocks, one free-space byte per block, and the
    hash table for `max_entries` results, as Pgpool-II's main process sizes and zeroes it at start
    (the whole of it is resident from then on)."""
    blocks = total_bytes // BLOCK_BYTES
    return (_maxalign(blocks * BLOCK_BYTES) + _maxalign(blocks)
            + _maxalign(HASH_HEADER_BYTES + HASH_ELEMENT_BYTES * hash_slots(max_entries)))


@dataclass(frozen=True, kw_only=True)
class QueryCache:
    """The query cache of each Pgpool-II pod; off leaves only the shared relation cache's small store."""

    mode: str = setting(
        "queryCache", "off", Choice(MODES),
        "Pgpool-II's in-memory query cache: off, or shmem, in each pod's shared memory. A pod removes cached "
        "results only for writes through itself, so a read may be up to queryCacheMaxStaleSeconds stale. "
        "memcached is refused: the pgpool/pgpool image is built without it, and one memcached for all pods does "
        "not invalidate across them.")
    max_stale_seconds: int = setting(
        "queryCacheMaxStaleSeconds", 0, Integer(0, 2_147_483_647),
        "memqcache_expire: seconds a cached result is served, the bound on how stale a read through another pod "
        "(or one cached from a standby not yet caught up) is. Required with queryCache shmem.")
    total_bytes: int = setting(
        "queryCacheTotalSize", 64 * MIB, ByteSize(MIB, 64 * 1024 * MIB, unit=MIB),
        "memqcache_total_size: shared memory for cached results in each pod, whole MiB (Pgpool-II's blocks). The "
        "pod's memory request and limit must cover it.")
    max_entries: int = setting(
        "queryCacheMaxEntries", 100_000, Integer(1, 16_777_216),
        "memqcache_max_num_cache: results a pod can hold; its hash table takes 64 bytes per entry, rounded up to "
        "a power of two.")
    max_result_bytes: int = setting(
        "queryCacheMaxResultSize", 400 * 1024, ByteSize(1, BLOCK_BYTES),
        "memqcache_maxcache: a larger result is not cached; at most 1Mi (a block).")
    safe_tables: tuple[str, ...] = setting(
        "queryCacheSafeTables", (),
        Strings(item=Pattern(QUALIFIED_TABLE_NAME, "name a table, optionally schema.table, in lower case")),
        "Views and unlogged tables whose results may be cached (never by default), named as queries name them.")
    unsafe_tables: tuple[str, ...] = setting(
        "queryCacheUnsafeTables", (), Strings(item=Pattern(TABLE_NAME, "name a table, in lower case, without schema")),
        "Tables whose results are never cached, e.g. ones written outside Pgpool-II; matched with or without a "
        "schema.")

    @property
    def enabled(self) -> bool:
        return self.mode == "shmem"

    @property
    def shared_memory_bytes(self) -> int:
        if not self.enabled:
            return shared_memory_bytes(RELCACHE_ONLY_TOTAL_BYTES, RELCACHE_ONLY_ENTRIES)
        return shared_memory_bytes(self.total_bytes, self.max_entries)

    def pod_memory_bytes(self, children: int) -> int:
        """The memory a Pgpool-II pod takes for its cache once `children` children served cached reads:
        the store, and with the cache on what each child keeps beside it."""
        return self.shared_memory_bytes + (CHILD_BYTES * children if self.enabled else 0)


def unsafe_table_pattern(table: str) -> str:
    """The cache_unsafe_memqcache_table_list entry for a table name: Pgpool-II matches each entry, as
    an anchored case-insensitive regular expression, against the name as the query writes it, so a
    bare `orders` would not keep `public.orders` out of the cache; this matches both."""
    if not TABLE_NAME.fullmatch(table):
        raise ValueError(f"unsafe table {table!r}: use a table name (lower-case letters, digits, _ and $)")
    return rf"([a-z0-9_$]+\.)?{re.escape(table)}"


def safe_table_pattern(table: str) -> str:
    """The cache_safe_memqcache_table_list entry for a (possibly schema-qualified) view or unlogged
    table: the name as queries write it, the dot taken literally."""
    if not QUALIFIED_TABLE_NAME.fullmatch(table):
        raise ValueError(f"safe table {table!r}: use a table name, optionally schema.table")
    return table.replace(".", r"\.").replace("$", r"\$")


def query_cache_params(cache: QueryCache, oiddir: str) -> tuple[tuple[str, bool | int | str], ...]:
    """pgpool.conf parameters of `cache`. Invalidation by table is on: a write through a pod removes
    that pod's results on the written tables (other pods keep theirs until memqcache_expire)."""
    if not cache.enabled:
        return (
            ("memory_cache_enabled", False),
            ("memqcache_method", "shmem"),
            ("memqcache_total_size", RELCACHE_ONLY_TOTAL_BYTES),
            ("memqcache_max_num_cache", RELCACHE_ONLY_ENTRIES),
        )
    return (
        ("memory_cache_enabled", True),
        ("memqcache_method", "shmem"),
        ("memqcache_total_size", cache.total_bytes),
        ("memqcache_max_num_cache", cache.max_entries),
        ("memqcache_maxcache", cache.max_result_bytes),
        ("memqcache_cache_block_size", BLOCK_BYTES),
        ("memqcache_expire", cache.max_stale_seconds),
        ("memqcache_auto_cache_invalidation", True),
        ("memqcache_oiddir", oiddir),
        ("cache_safe_memqcache_table_list", ",".join(safe_table_pattern(t) for t in cache.safe_tables)),
        ("cache_unsafe_memqcache_table_list", ",".join(unsafe_table_pattern(t) for t in cache.unsafe_tables)),
    )
