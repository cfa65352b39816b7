"""The pack as the Pulumi engine runs it, called over gRPC.

The Python language host starts a policy pack as `python -u -m pulumi.policy <engine> <pack dir>` with
the pack's own virtualenv and the pack directory as working directory, reads the port the pack prints,
and calls its Analyzer service; this test does the same. (scripts/bootstrap.sh creates policies/.venv.)
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from typing import Iterator

import grpc
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from policies.pgpool_policies import PACK_NAME, POLICIES
from policies.pgpool_policies.pgpool_conf import parse_pgpool_conf
from tests.test_policies import Resource, props_of, set_conf, stack

PACK = Path(__file__).resolve().parents[1] / "policies"
PACK_PYTHON = PACK / ".venv" / "bin" / "python"


@contextlib.contextmanager
def running_pack() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    assert PACK_PYTHON.exists(), "policies/.venv is missing: run scripts/bootstrap.sh"
    process = subprocess.Popen([str(PACK_PYTHON), "-u", "-m", "pulumi.policy", "127.0.0.1:0", str(PACK)], cwd=PACK,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = process.stdout.readline().strip()
        assert port.isdigit(), f"the pack printed {port!r} instead of its port; stderr: " + (
            process.stderr.read() if process.poll() is not None else "")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
        process.stderr.close()


def urn(resource: Resource) -> str:
    return f"urn:pulumi:dev::pgpool-k8s::{resource[0]}::{resource[1]}"


def struct(values: dict) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


def analyze_request(resource: Resource) -> analyzer_pb2.AnalyzeRequest:
    resource_type, name, props = resource
    return analyzer_pb2.AnalyzeRequest(type=resource_type, name=name, urn=urn(resource), properties=struct(props))


def analyze_stack_request(resources: list[Resource]) -> analyzer_pb2.AnalyzeStackRequest:
    return analyzer_pb2.AnalyzeStackRequest(resources=[
        analyzer_pb2.AnalyzerResource(type=t, name=n, urn=urn((t, n, p)), properties=struct(p)) for t, n, p in resources])


def named(resources: list[Resource], name: str, kind: str) -> Resource:
    return next(r for r in resources if r[1] == name and r[0].endswith(":" + kind))


def test_pack_describes_its_policies_and_reports_violations_over_the_wire() -> None:
    with running_pack() as analyzer:
        info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
        assert info.name == PACK_NAME
        assert [p.name for p in info.policies] == [p.name for p in POLICIES]
        schemas = {p.name: json_format.MessageToDict(p.configSchema.properties) for p in info.policies}
        assert schemas["pgpool-connections-fit-backends"]["maxConnections"]["default"] == 100

        resources = stack()
        assert all(not analyzer.Analyze(analyze_request(r)).diagnostics for r in resources)
        assert not analyzer.AnalyzeStack(analyze_stack_request(resources)).diagnostics

        set_conf(resources, load_balance_mode="off", backend_weight1="1")
        configmap = named(resources, "pgpool-config", "ConfigMap")
        [diagnostic] = analyzer.Analyze(analyze_request(configmap)).diagnostics
        assert diagnostic.policyName == "pgpool-load-balance-mode-on"
        assert diagnostic.policyPackName == PACK_NAME
        assert diagnostic.enforcementLevel == analyzer_pb2.MANDATORY
        assert "ConfigMap \"pgpool-config\" pgpool.conf: load_balance_mode = 'off' (line 17), but it must be on" in (
            diagnostic.message)

        [diagnostic] = analyzer.AnalyzeStack(analyze_stack_request(resources)).diagnostics
        assert diagnostic.policyName == "pgpool-backend-weight-matches-standbys"
        assert diagnostic.urn == urn(configmap)
        assert 'Postgres "pg" runs 2 standby pod(s)' in diagnostic.message

        unknown = stack("env")
        pgpool = props_of(unknown, "Deployment", "pgpool")
        pgpool["spec"]["template"]["spec"]["containers"][0]["env"] = "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2"
        assert not analyzer.Analyze(analyze_request(named(unknown, "pgpool", "Deployment"))).diagnostics
        assert not analyzer.AnalyzeStack(analyze_stack_request(unknown)).diagnostics


def test_policy_config_changes_levels_and_thresholds_and_turns_on_remediation() -> None:
    with running_pack() as analyzer:
        resources = [r for r in stack() if not r[0].endswith(":Postgres")]
        set_conf(resources, num_init_children="64", max_pool="1", load_balance_mode="off")
        configmap = named(resources, "pgpool-config", "ConfigMap")
        assert [d.policyName for d in analyzer.AnalyzeStack(analyze_stack_request(resources)).diagnostics] == [
            "pgpool-connections-fit-backends"]

        analyzer.Configure(analyzer_pb2.ConfigureAnalyzerRequest(policyConfig={
            "pgpool-connections-fit-backends": analyzer_pb2.PolicyConfig(
                enforcementLevel=analyzer_pb2.MANDATORY, properties=struct({"maxConnections": 200})),
            "pgpool-load-balance-mode-on": analyzer_pb2.PolicyConfig(enforcementLevel=analyzer_pb2.REMEDIATE),
        }))
        assert not analyzer.AnalyzeStack(analyze_stack_request(resources)).diagnostics

        [remediation] = analyzer.Remediate(analyze_request(configmap)).remediations
        assert remediation.policyName == "pgpool-load-balance-mode-on"
        fixed = json_format.MessageToDict(remediation.properties)
        assert parse_pgpool_conf(fixed["data"]["pgpool.conf"]).params["load_balance_mode"] == "on"
        fixed_configmap = (configmap[0], configmap[1], fixed)
        assert not analyzer.Analyze(analyze_request(fixed_configmap)).diagnostics
