"""`make up` on stacks that pass the settings layer but break a mandatory policy: the preview with the
policy pack fails naming the policy and the resource, the command exits non-zero, and nothing is written
(no rendered file, no resource in the state).
"""

from __future__ import annotations

import json

import pytest

from tests.engine.harness import EngineProject
from tests.program_run import VERIFIED_DIGEST, production_config

PRODUCTION = production_config()
BROKEN_STACKS = {
    # stack: (settings on top of the dev stack's, the policy, the resource it names)
    "production-without-tls": ({**PRODUCTION, "ssl": "false"}, "pgpool-ssl-in-production", "pgpool-config"),
    "load-balancer": ({"pgpoolServiceType": "LoadBalancer", "allowLoadBalancer": "true"},
                      "pgpool-no-load-balancer", "pgpool"),
    "weight-not-standbys": ({"backendWeight1": "5"}, "pgpool-backend-weight-matches-standbys", "pgpool-config"),
    # Pgpool-II is recognised by what it runs, not by an image named .../pgpool/pgpool (a mirror, a fork).
    "mirrored-image-without-tls": ({**PRODUCTION, "ssl": "false",
                                    "pgpoolImage": "registry.example.com/mirror/pgpool:4.7.2" + VERIFIED_DIGEST},
                                   "pgpool-ssl-in-production", "pgpool-config"),
    "renamed-image-env-mode-without-tls": ({**PRODUCTION, "ssl": "false", "pgpoolMode": "env",
                                            "pgpoolImage": "registry.example.com/acme/pg-pooler:4.7.2" + VERIFIED_DIGEST},
                                           "pgpool-ssl-in-production", "pgpool"),
    "node-port": ({"pgpoolServiceType": "NodePort", "allowNodePort": "true"}, "pgpool-no-load-balancer", "pgpool"),
    # Another operator's PostgreSQL: the pack cannot see its max_connections and assumes its default 100,
    # under the 2 pods x 32 children x 2 pool slots of the dev sizing.
    "pool-over-max-connections": ({"operator": "zalando", "pgpoolMode": "env"},
                                  "pgpool-connections-fit-backends", "pgpool"),
}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> EngineProject:
    base = tmp_path_factory.mktemp("policy-gate")
    return EngineProject(base / "project", base / "state")


@pytest.mark.parametrize("stack", sorted(BROKEN_STACKS))
def test_up_stops_at_the_preview_and_writes_nothing(project: EngineProject, stack: str):
    settings, policy, resource = BROKEN_STACKS[stack]
    project.write_stack_file(stack, settings)

    run = project.engine("up", stack)

    assert run.returncode != 0, run.output
    assert (policy, "mandatory", resource) in run.violations(), run.violations()
    assert f"violated {policy} (mandatory) by {resource}" in run.output
    assert "=== up" not in run.output
    assert not project.render_dir(stack).exists() or not list(project.render_dir(stack).rglob("*"))
    state = json.loads(project.pulumi("stack", "export", "--stack", stack))
    assert not state["deployment"].get("resources"), "the failed preview wrote to the state"
