"""The relay's pure parts: ranges, positions, routing, records, statements, and the migration DDL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import mysql, postgresql

from liberation_assets.core.errors import PublishError
from liberation_assets.core.outbox.relay import (
    OutboxPosition,
    Router,
    build_records,
    cleanup_statement,
    lease_name,
    pending_query,
    position_key,
    seq_ranges,
    transactional_id,
)
from liberation_assets.core.outbox.table import migration_sql, notify_channel, outbox_table
from liberation_assets.core.spec import OutboxSpec, Spec

ROUTE = "outbox.event.{aggregatetype}"


def test_ranges_keep_gaps_so_a_late_row_is_never_inside_one() -> None:
    assert seq_ranges([1, 2, 3, 5, 6, 9]) == ((1, 3), (5, 6), (9, 9))
    assert seq_ranges([]) == ()
    position = OutboxPosition.of([10, 11, 13])
    assert 12 not in position.seqs()
    assert OutboxPosition.from_dict(position.to_dict()) == position
    assert position.to_dict() == {"seq_ranges": [[10, 11], [13, 13]], "events": 3}
    assert OutboxPosition.from_dict(None).seqs() == []


def test_names_follow_the_conventions() -> None:
    assert position_key("shop_outbox") == "outbox/shop_outbox"
    spec = Spec.model_validate({"kafka": {"topic_prefix": "shop"}, "sources": {"db": {"url": "sqlite:///x.db"}}})
    assert transactional_id(spec, "shop_outbox") == "shop.outbox.shop_outbox"
    assert lease_name(OutboxSpec(source="a", table="outbox")) == lease_name(OutboxSpec(source="b", table="outbox"))


def test_router_is_debezium_by_default_and_configurable() -> None:
    assert Router(ROUTE, topic_prefix="p", outbox="o").topic("order") == "outbox.event.order"
    custom = Router("{topic_prefix}.{outbox}.{aggregatetype}.v1", topic_prefix="shop", outbox="events")
    assert custom.topic("order") == "shop.events.order.v1"
    with pytest.raises(PublishError, match="not a valid Kafka topic"):
        Router(ROUTE, topic_prefix="p", outbox="o").topic("has space")


def test_route_placeholders_are_checked_by_the_spec() -> None:
    with pytest.raises(ValueError, match="route may use only"):
        OutboxSpec(source="s", route="outbox.{aggregate}")


def test_records_carry_key_value_headers_and_event_time() -> None:
    when = datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=timezone(timedelta(hours=2)))
    naive_utc = datetime(2024, 5, 1, 10, 0, 0, 250000)  # MariaDB DATETIME, stored in UTC
    rows = [
        (7, "e-1", "order", "o-1", "OrderPlaced", '{"a":1}', when),
        (8, "e-2", "customer", "c-9", "CustomerDeleted", None, naive_utc),
    ]
    records = build_records(rows, Router(ROUTE, topic_prefix="p", outbox="o"))
    assert records[0] == (
        "outbox.event.order",
        b"o-1",
        b'{"a":1}',
        1714557600250,
        [("id", b"e-1"), ("type", b"OrderPlaced")],
    )
    topic, key, value, timestamp, headers = records[1]
    assert (topic, key, value, timestamp) == ("outbox.event.customer", b"c-9", None, 1714557600250)


def test_statements_touch_exactly_the_relayed_rows() -> None:
    table = outbox_table("outbox")
    delete = cleanup_statement(table, [1, 2, 3, 5, 7, 8], "delete", "postgresql").compile(dialect=postgresql.dialect())
    assert str(delete).replace("::BIGINT", "") == (
        "DELETE FROM outbox WHERE outbox.seq BETWEEN %(seq_1)s AND %(seq_2)s OR outbox.seq = %(seq_3)s "
        "OR outbox.seq BETWEEN %(seq_4)s AND %(seq_5)s"
    )
    assert list(delete.params.values()) == [1, 3, 5, 7, 8]  # 4 and 6 are gaps: rows that may commit late stay
    scattered = list(range(1, 100, 2))
    many = cleanup_statement(table, scattered, "delete", "postgresql").compile(dialect=postgresql.dialect())
    assert " IN " in str(many) and list(many.params.values()) == [scattered]
    mark = str(cleanup_statement(table, [1], "mark", "mysql").compile(dialect=mysql.dialect()))
    assert "SET relayed_at=NOW(6)" in mark and "relayed_at IS NULL" in mark
    read = str(pending_query(table, 100).compile(dialect=postgresql.dialect()))
    assert "WHERE outbox.relayed_at IS NULL ORDER BY outbox.seq" in read
    assert "CAST(outbox.payload AS TEXT)" in read  # forwarded as text, never parsed


def test_migration_is_debezium_compatible_on_both_databases() -> None:
    outbox = OutboxSpec(source="s", table="outbox", schema="app")
    pg = ";".join(migration_sql(outbox, "postgresql"))
    for column in (
        "id UUID NOT NULL",
        "aggregatetype VARCHAR(255)",
        "aggregateid VARCHAR(255)",
        "type VARCHAR(255)",
        "payload JSON",
        "occurred_at TIMESTAMP WITH TIME ZONE",
        "seq BIGINT GENERATED ALWAYS AS IDENTITY",
    ):
        assert column in pg
    assert "CREATE INDEX outbox_pending ON app.outbox (seq) WHERE relayed_at IS NULL" in pg
    assert "AFTER INSERT ON app.outbox FOR EACH STATEMENT" in pg
    maria = ";".join(migration_sql(outbox, "mysql"))
    assert "seq BIGINT NOT NULL AUTO_INCREMENT" in maria and "id CHAR(36) NOT NULL" in maria
    assert "outbox_pending ON app.outbox (relayed_at, seq)" in maria and "TRIGGER" not in maria


def test_notify_channel_fits_postgres_identifiers() -> None:
    assert notify_channel(OutboxSpec(source="s", table="outbox")) == "liberation_outbox_outbox"
    assert len(notify_channel(OutboxSpec(source="s", table="x" * 80, schema="y" * 40))) <= 63
