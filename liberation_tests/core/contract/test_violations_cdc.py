"""Each violation kind through log-based capture (PostgreSQL pgoutput, MariaDB binlog).

Type, null, range and enum violations arrive as streamed inserts.  A duplicate
key is a property of a table's contents, so it is shown by the initial
snapshot (op ``r``); streamed changes legitimately repeat a key.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from liberation_tests.core.contract.support import (
    MYSQL_DDL,
    PG_DDL,
    VALID,
    VIOLATIONS,
    assert_violation_handled,
    insert_items,
    insert_items_mysql,
    items_stream,
    mysql_rows,
    outcome,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("kind", sorted(VIOLATIONS))
def test_postgres_cdc_quarantines_each_violation(make_spec, pg_database, pg_engine, kafka_bootstrap, kind) -> None:
    from liberation_assets.core.engine.cdc_postgres import drain

    with pg_engine.begin() as c:
        c.execute(sa.text(PG_DDL))
    rows = VALID + [VIOLATIONS[kind][0]]
    spec = make_spec(pg=pg_database, streams={"items": items_stream(["cdc"])})
    if kind != "duplicate":
        drain(spec, "pg")  # slot and (empty) snapshot first: the rows below are streamed
    insert_items(pg_engine, rows)
    drain(spec, "pg")
    assert_violation_handled(outcome(kafka_bootstrap, spec.topic_for("items")), kind, rows_in=len(rows))


@pytest.mark.parametrize("kind", sorted(VIOLATIONS))
def test_mariadb_cdc_quarantines_each_violation(make_spec, mysql_database, mysql_engine, kafka_bootstrap, kind) -> None:
    from liberation_assets.core.engine.cdc_mysql import drain

    with mysql_engine.begin() as c:
        c.execute(sa.text(MYSQL_DDL))
    rows = mysql_rows(VALID + [VIOLATIONS[kind][0]])
    stream = {**items_stream(["cdc"]), "source": "mysql"}
    spec = make_spec(mysql=mysql_database, streams={"items": stream})
    if kind != "duplicate":
        drain(spec, "mysql")
    insert_items_mysql(mysql_engine, rows)
    drain(spec, "mysql")
    assert_violation_handled(outcome(kafka_bootstrap, spec.topic_for("items")), kind, rows_in=len(rows))
