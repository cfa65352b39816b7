"""PCP answers with the user and password the program generated (pcp.conf and its pcppass)."""

from __future__ import annotations

import re

from tests.dataplane.harness import LOCALHOST
from tests.dataplane.local_stack import LocalDevStack, StackPgpool
from tests.dataplane.stack_files import DevStack


def pcp_node_info(local: LocalDevStack, pgpool: StackPgpool, pcppass: str, node: int):
    return local.workspace.run(
        ["pcp_node_info", "-h", LOCALHOST, "-p", str(pgpool.pcp_port), "-U", local.stack.settings.pcp_user,
         "-w", "-v", "-n", str(node)],
        env={"PCPPASSFILE": pcppass}, check=False,
    )


def fields(output: str) -> dict[str, str]:
    """pcp_node_info -v prints `Name : value` lines."""
    return {m[1].strip(): m[2].strip() for m in re.finditer(r"^([^:\n]+):(.*)$", output, re.MULTILINE)}


def test_pcp_node_info_with_the_generated_pcppass(stack: DevStack, local: LocalDevStack, pgpool: StackPgpool) -> None:
    pcppass = str(pgpool.files["pcppass"])
    expected = {0: (local.cluster.primary.endpoint.port, "primary"),
                1: (local.cluster.standby.endpoint.port, "standby")}
    for node, (port, role) in expected.items():
        result = pcp_node_info(local, pgpool, pcppass, node)
        assert result.returncode == 0, result.stderr
        info = fields(result.stdout)
        assert (info["Port"], info["Status Name"], info["Role"]) == (str(port), "up", role)


def test_pcp_refuses_a_wrong_password(stack: DevStack, local: LocalDevStack, pgpool: StackPgpool) -> None:
    generated = pgpool.files["pcppass"].read_text()
    host, port, user, _ = generated.split(":", 3)
    wrong = local.workspace.write("wrong.pcppass", f"{host}:{port}:{user}:not-the-password\n")
    result = pcp_node_info(local, pgpool, str(wrong), 0)
    assert result.returncode != 0
    assert "authentication failed" in result.stderr.lower() or "authentication failed" in result.stdout.lower()
