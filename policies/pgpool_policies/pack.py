"""Every policy of the pack, in the order the README lists them."""

from __future__ import annotations

from pulumi_policy import Policy

from . import minimal_config, monitoring, production, query_cache, release, security, sizing

PACK_NAME = "pgpool-k8s-policies"

POLICIES: list[Policy] = [*minimal_config.POLICIES, *sizing.POLICIES, *query_cache.POLICIES, *security.POLICIES,
                          *release.POLICIES, *production.POLICIES, *monitoring.POLICIES]
