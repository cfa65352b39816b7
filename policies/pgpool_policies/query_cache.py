"""Pgpool-II's in-memory query cache on Kubernetes: in each pod's shared memory, with a bound on staleness.

Measured on real Pgpool-II 4.3.5, 4.6.1 and 4.7.2 (tests/dataplane/test_query_cache.py):
- a pod removes its cached results on a table only when a write to that table runs through it; every other
  pod of the Deployment serves its copy until memqcache_expire (0: until a write through that pod);
- even in the writing pod, a read balanced to a standby that has not yet replayed the write is cached
  and served, older than the write, until memqcache_expire;
- memcached mode: the pgpool/pgpool image is built without memcached (Dockerfile.pgpool configures
  --with-openssl only), and then every query fails with "memcached support is not enabled"; with a
  build that has it, one memcached shared by all pods is still not coherent (each pod's
  memqcache_oiddir records only what that pod cached, so a write through another pod deletes nothing).
"""

from __future__ import annotations

from typing import Any

from pulumi_policy import ReportViolation

from .common import Subject, resource_policy, stack_policy
from .pgpool_conf import PgpoolConfig, as_bool, as_number
from .sources import StackView


def cache_on(config: PgpoolConfig) -> bool:
    return as_bool(config.get("memory_cache_enabled").text) is True


def _stale_problems(config: PgpoolConfig) -> list[tuple[str, str, str]]:
    """(setting shown, why, fix) for each way the cache's staleness is unbounded."""
    problems = []
    expire = config.get("memqcache_expire")
    if expire.text is not None and as_number(expire.text) == 0:
        problems.append((config.show(expire), "results are served until a write to their table runs through the "
                         "same pod, however old", config.fix("memqcache_expire", "<seconds a read may be stale>")))
    invalidation = config.get("memqcache_auto_cache_invalidation")
    if invalidation.text is not None and as_bool(invalidation.text) is False:
        problems.append((config.show(invalidation), "not even the pod a write runs through removes the table's "
                         "results", config.fix("memqcache_auto_cache_invalidation", "on")))
    return problems


def check_bounded_staleness(stack: StackView, settings: dict, stack_tags: Any, report: ReportViolation) -> None:
    for instance in stack.pgpool_instances():
        config = instance.config
        if config is None or not cache_on(config):
            continue
        pods = instance.workload.replica_count()
        across = (f"{instance.workload.title} runs {pods} pods, and each removes cached results only for writes "
                  "through itself: a read through another pod returns its cached copy. " if pods and pods > 1 else "")
        for shown, why, fix in _stale_problems(config):
            report(f"{config.subject}: the query cache is on and {shown}: {why}. {across}A read balanced to a "
                   f"standby that has not yet replayed a write is cached too. memqcache_expire is the only bound on "
                   f"how stale a read may be; {fix}", instance.config_urn)


def check_shared_memory_method(subject: Subject, report: ReportViolation) -> None:
    for config in subject.configs():
        method = config.get("memqcache_method")
        if not cache_on(config) or method.text is None or method.text.strip().lower() != "memcached":
            continue
        report(f"{config.subject}: the query cache is on and {config.show(method)}: the pgpool/pgpool image builds "
               f"Pgpool-II without memcached (Dockerfile.pgpool configures --with-openssl only), and then every query "
               f"fails with 'memcached support is not enabled'; a build with memcached is no better on Kubernetes, "
               f"since each pod records only the results it cached itself and a write through another pod leaves "
               f"them in memcached for every pod; {config.fix('memqcache_method', 'shmem')}")


POLICIES = [
    stack_policy(
        "pgpool-query-cache-bounded-staleness",
        "With the query cache on (memory_cache_enabled), memqcache_expire > 0 and memqcache_auto_cache_invalidation "
        "on: each pod invalidates only for writes through itself, so across pods (and after a read from a standby "
        "not yet replayed) memqcache_expire is what bounds how stale a read is.",
        check_bounded_staleness),
    resource_policy(
        "pgpool-query-cache-shared-memory",
        "The query cache lives in each pod's shared memory (memqcache_method = shmem): the pgpool/pgpool image has "
        "no memcached support, and a memcached shared by the pods does not invalidate across them.",
        check_shared_memory_method),
]
