"""The polling SQL, built by pure functions and checked without a database."""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

from liberation_assets.core.readers.sql import incremental_query, key_set_query, snapshot_chunk_query
from liberation_assets.core.readers.table import ProjectedTable


def _table(name: str = "orders") -> ProjectedTable:
    table = sa.Table(
        name,
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("select", sa.Text),  # a reserved word, must be quoted
        sa.Column("updated_at", sa.DateTime(timezone=True)),
        sa.Column("secret", sa.Text),
    )
    return ProjectedTable(
        table, {"id": "id", "choice": "select", "updated_at": "updated_at"}, ["id"], ["id"], "updated_at"
    )


def _sql(query: sa.Select, dialect=postgresql.dialect()) -> str:
    return " ".join(str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True})).split())


def test_incremental_uses_strict_tuple_watermark_and_ceiling() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    sql = _sql(incremental_query(_table(), after=(t0, 5), since=None, ceiling=t0, limit=1000))
    assert "(orders.updated_at, orders.id) > ('2026-01-01 00:00:00+00:00', 5)" in sql
    assert "orders.updated_at < '2026-01-01 00:00:00+00:00'" in sql
    assert sql.endswith("ORDER BY orders.updated_at, orders.id LIMIT 1000")


def test_incremental_first_poll_is_inclusive_of_since() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    sql = _sql(incremental_query(_table(), after=None, since=t0, ceiling=t0, limit=10))
    assert "orders.updated_at >= '2026-01-01 00:00:00+00:00'" in sql
    assert " > (" not in sql


def test_projection_never_selects_internal_columns_and_quotes_identifiers() -> None:
    sql = _sql(snapshot_chunk_query(_table(), after_key=None, limit=10))
    assert "secret" not in sql
    assert 'orders."select" AS choice' in sql
    assert "ORDER BY orders.id" in sql


def test_snapshot_chunks_resume_after_the_last_key_and_respect_ranges() -> None:
    sql = _sql(snapshot_chunk_query(_table(), after_key=(41,), limit=10, key_range=(0, 100)))
    assert "(orders.id) > (41)" in sql
    assert "orders.id >= 0" in sql and "orders.id < 100" in sql


def test_hostile_table_name_is_quoted_not_formatted() -> None:
    sql = _sql(key_set_query(_table('x"; DROP TABLE orders; --')), mysql.dialect())
    assert '`x"; DROP TABLE orders; --`' in sql
