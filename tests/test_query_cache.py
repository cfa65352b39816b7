"""The query cache's pgpool.conf parameters and shared memory (components/query_cache.py), without Pgpool-II.

The data plane (tests/dataplane/test_query_cache.py) holds the same figures against what real Pgpool-II
allocates, logs and is charged for; here the arithmetic and the rendering alone.
"""

from __future__ import annotations

import re

import pytest

from components.query_cache import (
    MIB,
    QueryCache,
    hash_slots,
    query_cache_params,
    safe_table_pattern,
    shared_memory_bytes,
    unsafe_table_pattern,
)

PGPOOL_OWN_SHARED_MEMORY = 1_453_296
"""What Pgpool-II 4.3.5 and 4.6.1 allocate besides the cache store with the dev stack's 32 children."""


@pytest.mark.parametrize("entries, slots", [(0, 2), (1, 2), (2, 2), (3, 4), (1000, 1024), (1024, 1024),
                                            (1025, 2048), (100_000, 131_072), (1_000_000, 1_048_576)])
def test_hash_slots_round_up_to_a_power_of_two(entries: int, slots: int) -> None:
    assert hash_slots(entries) == slots


def test_pgpool_defaults_take_128_mib_of_shared_memory() -> None:
    """memqcache_total_size 64 MB and memqcache_max_num_cache 1,000,000 (Pgpool-II's defaults): Pgpool-II
    4.3.5 and 4.6.1 log 'allocating shared memory segment of size: 135671104' for them."""
    assert shared_memory_bytes(64 * MIB, 1_000_000) + PGPOOL_OWN_SHARED_MEMORY == 135_671_104


def test_the_stacks_sizes() -> None:
    assert QueryCache(mode="shmem").shared_memory_bytes == 64 * MIB + 64 + 16 + 64 * 131_072  # 72 MiB
    assert QueryCache(mode="off").shared_memory_bytes == 4 * MIB + 8 + 16 + 64 * 16_384  # 5 MiB
    # blocks are whole MiB: a part of one is not allocated
    assert shared_memory_bytes(3 * MIB + 5, 10) == shared_memory_bytes(3 * MIB, 10)


def pgpool_matches(pattern: str, name: str) -> bool:
    """Pgpool-II's test: the entry anchored with ^ and $, extended regular expression, case-insensitive."""
    return re.fullmatch(pattern, name, re.IGNORECASE) is not None


def test_an_unsafe_table_is_matched_however_the_query_names_it() -> None:
    pattern = unsafe_table_pattern("orders")
    assert [pgpool_matches(pattern, name) for name in ("orders", "public.orders", "Shop.Orders")] == [True] * 3
    assert [pgpool_matches(pattern, name) for name in ("orders2", "old_orders", "a.b.orders")] == [False] * 3


def test_a_safe_table_is_matched_as_written() -> None:
    pattern = safe_table_pattern("reports.daily$v")
    assert pgpool_matches(pattern, "reports.daily$v")
    assert not pgpool_matches(pattern, "reportsXdaily$v") and not pgpool_matches(pattern, "daily$v")


@pytest.mark.parametrize("name", ["", "1orders", "or ders", "o'rders", "orders,items", "a.b.c", "Orders", "a.*"])
def test_table_names_that_are_not_plain_identifiers_are_refused(name: str) -> None:
    for pattern in (unsafe_table_pattern, safe_table_pattern):
        with pytest.raises(ValueError, match="table"):
            pattern(name)


def test_an_unsafe_table_is_named_without_its_schema() -> None:
    with pytest.raises(ValueError, match="table name"):
        unsafe_table_pattern("public.orders")


def test_parameters_with_the_cache_on() -> None:
    cache = QueryCache(mode="shmem", total_bytes=32 * MIB, max_entries=5000, max_result_bytes=100 * 1024,
                       max_stale_seconds=30, safe_tables=("v_daily",), unsafe_tables=("orders", "stock"))
    assert dict(query_cache_params(cache, "/var/lib/pgpool/oiddir")) == {
        "memory_cache_enabled": True,
        "memqcache_method": "shmem",
        "memqcache_total_size": 32 * MIB,
        "memqcache_max_num_cache": 5000,
        "memqcache_maxcache": 100 * 1024,
        "memqcache_cache_block_size": MIB,
        "memqcache_expire": 30,
        "memqcache_auto_cache_invalidation": True,
        "memqcache_oiddir": "/var/lib/pgpool/oiddir",
        "cache_safe_memqcache_table_list": "v_daily",
        "cache_unsafe_memqcache_table_list": r"([a-z0-9_$]+\.)?orders,([a-z0-9_$]+\.)?stock",
    }


def test_with_the_cache_off_only_the_shared_relation_cache_keeps_a_small_store() -> None:
    assert dict(query_cache_params(QueryCache(), "/unused")) == {
        "memory_cache_enabled": False, "memqcache_method": "shmem",
        "memqcache_total_size": 4 * MIB, "memqcache_max_num_cache": 16_384,
    }


def test_a_pods_memory_for_the_cache_is_its_store_and_three_mib_a_child_with_the_cache_on() -> None:
    on, off = QueryCache(mode="shmem"), QueryCache()
    assert on.pod_memory_bytes(32) == on.shared_memory_bytes + 32 * 3 * MIB
    assert off.pod_memory_bytes(32) == off.shared_memory_bytes
