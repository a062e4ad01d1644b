"""A mixed-types table in PostgreSQL and MariaDB, the changes the consumer tests replay, and value comparison.

Integers, numeric with scale, text, boolean, an instant (timestamptz / TIMESTAMP), a naive timestamp
(timestamp / DATETIME), date, JSON, binary and NULLs; inserts, updates, deletes, a primary-key update and a
TRUNCATE followed by new rows.
"""

from __future__ import annotations

import base64
import json
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from liberation_assets.core.engine import cdc_mysql, cdc_postgres
from liberation_assets.core.engine.query_pattern import QueryPattern
from liberation_assets.core.spec import Spec

COLUMNS = ["id", "small", "big", "amount", "label", "flag", "happened", "local_ts", "day", "doc", "bin"]

PG_TABLE = """CREATE TABLE mixed (
  id integer PRIMARY KEY, small smallint, big bigint NOT NULL, amount numeric(12,2), label text, flag boolean,
  happened timestamptz, local_ts timestamp, day date, doc jsonb, bin bytea,
  updated_at timestamptz NOT NULL DEFAULT clock_timestamp())"""
MY_TABLE = """CREATE TABLE mixed (
  id INT PRIMARY KEY, small SMALLINT, big BIGINT NOT NULL, amount DECIMAL(12,2), label TEXT, flag BOOLEAN,
  happened TIMESTAMP(6) NULL DEFAULT NULL, local_ts DATETIME(6), day DATE, doc JSON, bin BLOB,
  updated_at DATETIME(6) NOT NULL DEFAULT NOW(6))"""

ROWS = [
    (
        1,
        7,
        9_000_000_000,
        Decimal("12.50"),
        "Piñata 🎉",
        True,
        datetime(2024, 3, 10, 6, 59, 59, 999999, timezone.utc),
        datetime(2024, 3, 10, 2, 30),
        date(2024, 3, 10),
        '{"a": [1, 2], "b": null}',
        b"\x00\x01\xff",
    ),
    (
        2,
        -32768,
        -1,
        Decimal("-0.05"),
        "two",
        False,
        datetime(1999, 12, 31, 23, 59, 59, tzinfo=timezone.utc),
        datetime(2000, 1, 1),
        date(1970, 1, 1),
        "[]",
        b"",
    ),
    (3, None, 3, None, None, None, None, None, None, None, None),
    (
        4,
        4,
        4,
        Decimal("9999999999.99"),
        'it\'s "quoted"',
        True,
        datetime(2026, 1, 1, tzinfo=timezone.utc),
        datetime(2026, 7, 1, 12, 0, 0, 1),
        date(2026, 2, 28),
        '{"nested": {"x": 1.5}}',
        b"blob",
    ),
    (
        5,
        5,
        5,
        Decimal("0.10"),
        "five",
        False,
        datetime(2020, 2, 29, 12, tzinfo=timezone.utc),
        datetime(2020, 2, 29),
        date(2020, 2, 29),
        '{"s": "text"}',
        b"\x10",
    ),
]
AFTER_TRUNCATE = [
    (
        8,
        8,
        8,
        Decimal("8.80"),
        "after truncate",
        True,
        datetime(2027, 5, 5, tzinfo=timezone.utc),
        datetime(2027, 5, 5, 5, 5, 5),
        date(2027, 5, 5),
        '{"k": "v"}',
        b"\x08",
    ),
    (9, None, 9, Decimal("1.00"), "nine", None, None, None, None, None, None),
]


def _insert(engine: sa.Engine, rows: list[tuple[Any, ...]], dialect: str) -> None:
    placeholders = ", ".join(f":{c}" for c in COLUMNS)
    with engine.begin() as connection:
        for row in rows:
            values = dict(zip(COLUMNS, row))
            if dialect == "mysql" and values["happened"] is not None:
                values["happened"] = values["happened"].replace(tzinfo=None)  # the session is in UTC
            connection.execute(sa.text(f"INSERT INTO mixed ({', '.join(COLUMNS)}) VALUES ({placeholders})"), values)


def _sql(engine: sa.Engine, *statements: str) -> None:
    with engine.begin() as connection:
        for statement in statements:
            connection.exec_driver_sql(statement)


def create(pg: sa.Engine, my: sa.Engine) -> None:
    _sql(pg, PG_TABLE)
    _sql(my, MY_TABLE)
    insert_rows(pg, my)


def insert_rows(pg: sa.Engine, my: sa.Engine) -> None:
    _insert(pg, ROWS, "pg")
    _insert(my, ROWS, "mysql")


def change(pg: sa.Engine, my: sa.Engine) -> None:
    """Updates (values to NULL and back), a delete, a primary-key update and an insert."""
    now = {"pg": "clock_timestamp()", "mysql": "NOW(6)"}
    for engine, dialect in ((pg, "pg"), (my, "mysql")):
        ts = now[dialect]
        doc = "'{\"changed\": true}'"
        _sql(
            engine,
            f"UPDATE mixed SET amount = amount + 1, label = 'changed', doc = {doc}, updated_at = {ts} WHERE id = 1",
            f"UPDATE mixed SET small = 3, amount = 3.30, flag = true, label = 'filled', updated_at = {ts} WHERE id = 3",
            f"UPDATE mixed SET amount = NULL, day = NULL, bin = NULL, updated_at = {ts} WHERE id = 5",
            "DELETE FROM mixed WHERE id = 2",
            f"UPDATE mixed SET id = 40, updated_at = {ts} WHERE id = 4",
        )
    _insert(pg, ROWS[1:2], "pg")  # the deleted key comes back as a new row
    _insert(my, ROWS[1:2], "mysql")


def truncate(pg: sa.Engine, my: sa.Engine) -> None:
    _sql(pg, "TRUNCATE mixed")
    _sql(my, "TRUNCATE TABLE mixed")
    _insert(pg, AFTER_TRUNCATE, "pg")
    _insert(my, AFTER_TRUNCATE, "mysql")
    for engine, ts in ((pg, "clock_timestamp()"), (my, "NOW(6)")):
        _sql(engine, f"UPDATE mixed SET label = 'nine, updated', updated_at = {ts} WHERE id = 9")


def spec_for(make_spec: Any, pg_database: str, mysql_database: str, value_format: str) -> Spec:
    """Three streams of the mixed table: query pattern and CDC from PostgreSQL, CDC from MariaDB."""
    data = make_spec(pg=pg_database, mysql=mysql_database, kafka={"format": value_format}).model_dump(by_alias=True)
    pg_source, my_source = f"pg_{pg_database}", f"my_{mysql_database.rsplit('_', 1)[-1]}"
    data["sources"] = {
        pg_source: {**data["sources"]["pg"], "cdc": {"slot": f"lib_{pg_database}", "heartbeat_every": "1s"}},
        my_source: {**data["sources"]["mysql"], "cdc": {"heartbeat_every": "1s"}},
    }
    projection = COLUMNS
    data["streams"] = {
        "q_mixed": {
            "source": pg_source,
            "table": "mixed",
            "key": ["id"],
            "patterns": ["snapshot", "query"],
            "cursor": "updated_at",
            "projection": projection,
            "topic": f"{data['kafka']['topic_prefix']}.query.mixed",
        },
        "pg_mixed": {
            "source": pg_source,
            "table": "mixed",
            "key": ["id"],
            "patterns": ["cdc"],
            "cursor": None,
            "projection": projection,
            "topic": f"{data['kafka']['topic_prefix']}.pgcdc.mixed",
        },
        "my_mixed": {
            "source": my_source,
            "table": "mixed",
            "key": ["id"],
            "patterns": ["cdc"],
            "cursor": None,
            "projection": projection,
            "topic": f"{data['kafka']['topic_prefix']}.mycdc.mixed",
        },
    }
    return Spec.model_validate(data)


def publish(spec: Spec) -> None:
    """One round of every pattern: query snapshot or poll plus reconciliation, and both CDC drains."""
    query = QueryPattern(spec, "q_mixed")
    try:
        query.snapshot()
        query.incremental()
        query.reconcile()
    finally:
        query.close()
    pg_source, my_source = (spec.streams[name].source for name in ("pg_mixed", "my_mixed"))
    cdc_postgres.drain(spec, pg_source)
    cdc_mysql.drain(spec, my_source)


def replay(spec: Spec, pg: sa.Engine, my: sa.Engine) -> None:
    """Every change of the scenario, each round published before the next; the final state keeps every type."""
    create(pg, my)
    publish(spec)
    truncate(pg, my)
    publish(spec)
    publish(spec)  # MariaDB's TRUNCATE is not row-logged: its re-snapshot and reconciliation may take a round
    insert_rows(pg, my)
    change(pg, my)
    publish(spec)
    publish(spec)


FINAL_KEYS = [1, 2, 3, 5, 8, 9, 40]


def normalized(value: Any, column: str) -> Any:
    """One value in a form both sides share: instants in UTC, JSON parsed, booleans as 0/1, bytes as bytes."""
    if value is None:
        return None
    if column == "doc":
        return json.loads(value) if isinstance(value, str) else value
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, memoryview):
        return bytes(value)
    return value


def rows(engine: sa.Engine, table: str, columns: list[str] = COLUMNS) -> list[tuple[Any, ...]]:
    pg = engine.dialect.name == "postgresql"
    quoted = ", ".join((f'"{c}"::text' if c == "doc" else f'"{c}"') if pg else f"`{c}`" for c in columns)
    name = f'"{table}"' if engine.dialect.name == "postgresql" else f"`{table}`"
    with engine.connect() as connection:
        found = connection.execute(sa.text(f"SELECT {quoted} FROM {name} ORDER BY 1")).all()
    return [tuple(normalized(v, c) for v, c in zip(row, columns)) for row in found]


def typed(row: dict[str, Any]) -> tuple[Any, ...]:
    """A published row's JSON forms as the source's values (decimal strings, ISO 8601, base64), normalized."""
    parse: dict[str, Any] = {
        "amount": Decimal,
        "happened": datetime.fromisoformat,
        "local_ts": datetime.fromisoformat,
        "day": date.fromisoformat,
        "bin": base64.b64decode,
        "doc": lambda v: json.loads(v) if isinstance(v, str) else v,
    }
    values = [None if row[c] is None else parse.get(c, lambda v: v)(row[c]) for c in COLUMNS]
    return tuple(normalized(v, c) for v, c in zip(values, COLUMNS))
