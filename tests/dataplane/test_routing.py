"""Both backends are up, reads spread by the weights, writes and a transaction's reads stay on the primary.

Which backend answered is read from the backend itself: `current_setting('port')` is the port
of the PostgreSQL server that ran the statement.
"""

from __future__ import annotations

import pytest
from psycopg.rows import dict_row

from tests.dataplane.local_stack import LocalDevStack, StackPgpool
from tests.dataplane.stack_files import DevStack

WHICH_BACKEND = "SELECT current_setting('port')"
SAMPLES = 300
TOLERANCE = 0.10
"""Allowed distance between the standby's observed and configured share of reads. With 300
samples at a 2/3 share the standard deviation is 0.027, so 0.10 is over 3.5 of them."""


def standby_share(stack: DevStack) -> float:
    weights = stack.settings.pgpool.backend_weight0, stack.settings.pgpool.backend_weight1
    return weights[1] / sum(weights)


def ports(local: LocalDevStack) -> tuple[str, str]:
    return str(local.cluster.primary.endpoint.port), str(local.cluster.standby.endpoint.port)


def test_show_pool_nodes_lists_both_backends_up(stack: DevStack, local: LocalDevStack, pgpool: StackPgpool) -> None:
    user = stack.monitor_user
    with pgpool.endpoint.connect(user, stack.passwords[user], row_factory=dict_row) as conn:
        nodes = conn.execute("SHOW pool_nodes").fetchall()
    assert [(n["node_id"], n["port"], n["status"], n["role"]) for n in nodes] == [
        ("0", ports(local)[0], "up", "primary"),
        ("1", ports(local)[1], "up", "standby"),
    ]
    assert float(nodes[1]["lb_weight"]) == pytest.approx(standby_share(stack), abs=1e-5)


def test_reads_spread_over_sessions_by_the_weights(stack: DevStack, local: LocalDevStack, pgpool: StackPgpool) -> None:
    """Whatever statement_level_load_balance says, each new session picks a node by the weights."""
    user = stack.app_user
    served = []
    for _ in range(SAMPLES):
        with pgpool.endpoint.connect(user, stack.passwords[user], dbname=user) as conn:
            served.append(conn.execute(WHICH_BACKEND).fetchone()[0])
    primary, standby = ports(local)
    assert set(served) == {primary, standby}
    share = served.count(standby) / len(served)
    print(f"standby served {share:.3f} of {SAMPLES} sessions' reads (configured {standby_share(stack):.3f})")
    assert share == pytest.approx(standby_share(stack), abs=TOLERANCE)


def one_session_of_reads(pgpool: StackPgpool) -> list[str]:
    """SAMPLES reads in one session, never as a named prepared statement: psycopg prepares a query
    after 5 runs, and Pgpool-II must then send every execution to the node that prepared it."""
    user = pgpool.stack.app_user
    with pgpool.endpoint.connect(user, pgpool.stack.passwords[user], dbname=user, prepare_threshold=None) as conn:
        return [conn.execute(WHICH_BACKEND).fetchone()[0] for _ in range(SAMPLES)]


def test_statement_level_load_balance_spreads_one_sessions_reads(local: LocalDevStack, pgpool_for) -> None:
    pgpool = pgpool_for(statementLevelLoadBalance="true")
    assert "statement_level_load_balance = on" in pgpool.files["pgpool.conf"].read_text()
    served = one_session_of_reads(pgpool)
    share = served.count(ports(local)[1]) / len(served)
    print(f"standby served {share:.3f} of {SAMPLES} reads in one session "
          f"(configured {standby_share(pgpool.stack):.3f})")
    assert share == pytest.approx(standby_share(pgpool.stack), abs=TOLERANCE)


def test_session_level_load_balance_keeps_a_session_on_one_node(local: LocalDevStack, pgpool_for) -> None:
    pgpool = pgpool_for(statementLevelLoadBalance="false")
    assert "statement_level_load_balance = off" in pgpool.files["pgpool.conf"].read_text()
    served = one_session_of_reads(pgpool)
    assert len(set(served)) == 1 and served[0] in ports(local)


def test_writes_go_only_to_the_primary(stack: DevStack, local: LocalDevStack, pgpool: StackPgpool) -> None:
    user = stack.app_user
    with pgpool.endpoint.connect(user, stack.passwords[user], dbname=user) as conn:
        conn.execute("CREATE TABLE routing_writes (id serial PRIMARY KEY, served_by text NOT NULL)")
        served = [conn.execute("INSERT INTO routing_writes (served_by) VALUES (current_setting('port')) "
                               "RETURNING served_by").fetchone()[0] for _ in range(50)]
        stats = conn.cursor(row_factory=dict_row).execute("SHOW pool_backend_stats").fetchall()
    assert set(served) == {ports(local)[0]}
    inserts = {row["node_id"]: int(row["insert_cnt"]) for row in stats}
    assert inserts["0"] >= 50 and inserts["1"] == 0


def test_a_transaction_reads_its_own_write(stack: DevStack, local: LocalDevStack, pgpool: StackPgpool) -> None:
    user = stack.app_user
    primary = ports(local)[0]
    with pgpool.endpoint.connect(user, stack.passwords[user], dbname=user) as conn:
        conn.execute("CREATE TABLE own_writes (id serial PRIMARY KEY, note text NOT NULL)")
        for attempt in range(30):
            with conn.transaction():
                (row_id,) = conn.execute("INSERT INTO own_writes (note) VALUES (%s) RETURNING id",
                                         (f"attempt {attempt}",)).fetchone()
                # Uncommitted: only the backend that ran the INSERT can see the row.
                seen = conn.execute("SELECT note, current_setting('port') FROM own_writes WHERE id = %s",
                                    (row_id,)).fetchone()
            assert seen == (f"attempt {attempt}", primary)
