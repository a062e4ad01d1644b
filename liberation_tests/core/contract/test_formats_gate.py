"""The schema history and the compatibility gate cover the Kafka Connect schema of a connect-json stream, and a
schema change met in the log is published with the new Connect schema."""

from __future__ import annotations

import orjson
import pytest
import sqlalchemy as sa

from liberation_assets.core.contract.history import SchemaHistory
from liberation_assets.core.engine.query_pattern import QueryPattern
from liberation_assets.core.errors import SchemaIncompatible
from liberation_tests.core.engine.cdc_postgres_support import cdc_spec, drain
from liberation_tests.fix_kafka import consume_all

pytestmark = pytest.mark.integration


def _sql(engine: sa.Engine, *statements: str) -> None:
    with engine.begin() as connection:
        for statement in statements:
            connection.exec_driver_sql(statement)


def _poll(spec) -> int:
    pattern = QueryPattern(spec, "parts")
    try:
        return pattern.incremental().result.published
    finally:
        pattern.close()


@pytest.mark.parametrize("value_format", ["connect-json", "debezium"])
def test_a_connect_type_change_blocks_only_a_connect_json_stream(
    make_spec, pg_database, pg_engine, value_format
) -> None:
    _sql(
        pg_engine,
        "CREATE TABLE parts (id int PRIMARY KEY, at timestamp, "
        "updated_at timestamptz NOT NULL DEFAULT now() - interval '1 minute')",
        "INSERT INTO parts (id, at) VALUES (1, '2024-01-01 00:00:00')",
    )
    spec = make_spec(
        pg=pg_database,
        kafka={"format": value_format},
        streams={"parts": {"source": "pg", "table": "parts", "key": ["id"], "patterns": ["query"]}},
    )
    assert _poll(spec) == 1
    [v1] = SchemaHistory.for_spec(spec).versions("parts")
    connect = v1.to_dict()["connect"]
    assert connect["value"]["name"] == f"{spec.topic_for('parts')}.Envelope"
    after = next(f for f in connect["value"]["fields"] if f["field"] == "after")
    assert next(f for f in after["fields"] if f["field"] == "at")["name"] == "io.debezium.time.MicroTimestamp"

    _sql(
        pg_engine,
        "ALTER TABLE parts ALTER COLUMN at TYPE timestamptz",
        "INSERT INTO parts (id, at) VALUES (2, '2024-01-02 00:00:00+00')",
    )
    if value_format == "connect-json":
        with pytest.raises(
            SchemaIncompatible,
            match="Connect type changed from int64 io.debezium.time.MicroTimestamp "
            "to string io.debezium.time.ZonedTimestamp",
        ):
            _poll(spec)
    else:
        assert _poll(spec) == 1, "the JSON envelope writes both as the same UTC string"


def test_a_cdc_schema_change_publishes_the_new_connect_schema(make_spec, pg_database, pg_engine) -> None:
    _sql(pg_engine, "CREATE TABLE items (id int PRIMARY KEY, name text)", "INSERT INTO items VALUES (1, 'one')")
    spec = cdc_spec(make_spec, pg_database, {"items": {"table": "items", "key": ["id"]}})
    spec = spec.model_copy(update={"kafka": spec.kafka.model_copy(update={"format": "connect-json"})})
    drain(spec)
    _sql(pg_engine, "ALTER TABLE items ADD COLUMN note text", "INSERT INTO items VALUES (2, 'two', 'new')")
    drain(spec)
    values = [
        orjson.loads(m.value)
        for m in consume_all(spec.kafka.resolved_bootstrap_servers(), spec.topic_for("items"))
        if m.value is not None
    ]
    last = values[-1]
    after = next(f for f in last["schema"]["fields"] if f["field"] == "after")
    assert [f["field"] for f in after["fields"]] == ["id", "name", "note"]
    assert last["payload"]["after"] == {"id": 2, "name": "two", "note": "new"}  # c, or r from the backfill
    first_after = next(f for f in values[0]["schema"]["fields"] if f["field"] == "after")
    assert [f["field"] for f in first_after["fields"]] == ["id", "name"]
