"""The pgpool-k8s policy pack: `pulumi preview --policy-pack policies [--policy-pack-config FILE]`.

Only the PolicyPack lives here: constructing it starts the analyzer's gRPC server and blocks,
so tests import `pgpool_policies` instead.
"""

from pulumi_policy import EnforcementLevel, PolicyPack

from pgpool_policies import PACK_NAME, POLICIES

PolicyPack(
    name=PACK_NAME,
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=POLICIES,
    description="Keeps every stack's Pgpool-II on Kubernetes configured as the Pgpool-II on Kubernetes guide says, "
                "sized for its backends, locked down and monitored.",
)
