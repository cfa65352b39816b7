"""PCP answers on the pod's unix socket with the user and password the program generated (pcp.conf and
its pcppass), and on TCP only when pcpOverTcp opens it: whoever reaches PCP can detach backends or
stop Pgpool-II."""

from __future__ import annotations

import re
import socket

import pytest

from tests.dataplane.harness import LOCALHOST
from tests.dataplane.local_stack import LocalDevStack, StackPgpool
from tests.dataplane.stack_files import DevStack


def fields(output: str) -> dict[str, str]:
    """pcp_node_info -v prints `Name : value` lines."""
    return {m[1].strip(): m[2].strip() for m in re.finditer(r"^([^:\n]+):(.*)$", output, re.MULTILINE)}


def tcp_open(port: int) -> bool:
    try:
        socket.create_connection((LOCALHOST, port), timeout=2).close()
    except OSError:
        return False
    return True


def test_pcp_node_info_with_the_generated_pcppass(stack: DevStack, local: LocalDevStack, pgpool: StackPgpool) -> None:
    expected = {0: (local.cluster.primary.endpoint.port, "primary"),
                1: (local.cluster.standby.endpoint.port, "standby")}
    for node, (port, role) in expected.items():
        result = pgpool.pcp("pcp_node_info", "-v", "-n", str(node))
        assert result.returncode == 0, result.stderr
        info = fields(result.stdout)
        assert (info["Port"], info["Status Name"], info["Role"]) == (str(port), "up", role)


def test_pcp_refuses_a_wrong_password(stack: DevStack, pgpool: StackPgpool) -> None:
    host, port, user, _ = pgpool.files["pcppass"].read_text().split(":", 3)
    wrong = "/tmp/wrong.pcppass"  # on the pod's tmp volume
    pgpool.pod.write("pgpool", wrong, f"{host}:{port}:{user}:not-the-password\n")
    result = pgpool.pcp("pcp_node_count", pcppass=wrong)
    assert result.returncode != 0
    assert "authentication failed" in (result.stderr + result.stdout).lower()


def test_pcp_is_not_on_tcp_by_default(stack: DevStack, pgpool: StackPgpool) -> None:
    assert not stack.settings.pgpool.pcp_over_tcp
    assert not tcp_open(pgpool.pcp_port)
    over_tcp = pgpool.pcp("pcp_node_count", host=LOCALHOST)
    assert over_tcp.returncode != 0 and "connection refused" in over_tcp.stderr.lower()
    assert pgpool.pcp("pcp_node_count").stdout.strip() == "2"  # the socket the liveness probe uses


@pytest.mark.parametrize("labels", ['["app=pgpool-admin"]'])
def test_pcp_over_tcp_answers_when_opened(labels: str, pgpool_for) -> None:
    opened = pgpool_for(pcpOverTcp="true", networkPolicy="true", pcpClientPodLabels=labels)
    assert "pcp_listen_addresses = '127.0.0.1'" in opened.files["pgpool.conf"].read_text()
    assert tcp_open(opened.pcp_port)
    result = opened.pcp("pcp_node_count", host=LOCALHOST)
    assert (result.returncode, result.stdout.strip()) == (0, "2"), result.stderr
