"""The query pattern against real Kafka and PostgreSQL: replica, late commits, ties, deletes, privacy."""

from __future__ import annotations

import time
from collections import Counter

import pytest
import sqlalchemy as sa

from liberation_assets.core.engine.query_pattern import QueryPattern
from liberation_assets.core.verify.compare import compare, source_state, topic_state
from liberation_assets.demo import generator, schema
from liberation_tests.fix_kafka import consume_all

pytestmark = pytest.mark.integration

DEMO_STREAMS = {
    "products": {
        "table": "products",
        "key": ["id"],
        "projection": ["id", "sku", "name", "description", "category", "images", "active", "created_at", "updated_at"],
    },
    "prices": {
        "table": "prices",
        "key": ["product_id", "currency"],
        "projection": {
            "product_id": "product_id",
            "currency": "currency",
            "price": "amount",
            "valid_from": "valid_from",
            "updated_at": "updated_at",
        },
    },
    "inventory": {
        "table": "inventory",
        "key": ["product_id", "warehouse"],
        "projection": ["product_id", "warehouse", "quantity", "reserved", "updated_at"],
    },
    "orders": {
        "table": "orders",
        "key": ["id"],
        "projection": [
            "id",
            "customer_id",
            "status",
            "total",
            "currency",
            "placed_at",
            "shipping",
            "note",
            "updated_at",
        ],
    },
    "payments": {
        "table": "payments",
        "key": ["id"],
        "projection": ["id", "order_id", "amount", "method", "status", "captured_at", "updated_at"],
    },
}


def _demo_spec(make_spec, source: str, database: str, **overrides):
    streams = {
        name: {"source": source, "snapshot_chunk": 700, "batch_size": 500, **cfg, **overrides}
        for name, cfg in DEMO_STREAMS.items()
    }
    return make_spec(streams=streams, **{source: database})


def test_replica_equals_source_under_the_demo_write_load(make_spec, pg_database, pg_engine, kafka_bootstrap) -> None:
    schema.create_schema(pg_engine)
    generator.seed(pg_engine, products_count=1500, orders_count=1000)
    spec = _demo_spec(make_spec, "pg", pg_database)
    patterns = {name: QueryPattern(spec, name) for name in spec.streams}
    try:
        for pattern in patterns.values():
            pattern.snapshot()
        load = generator.WriteLoad(pg_engine, threads=2, pause=0.005, long_transaction_seconds=1.0)
        with load:
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                for pattern in patterns.values():
                    pattern.incremental()
        assert sum(load.report.counts.values()) > 50, load.report.counts
        for pattern in patterns.values():
            pattern.incremental()
            pattern.reconcile()
        for name, pattern in patterns.items():
            result = compare(
                source_state(pg_engine, pattern.table, pattern.runtime.identity.zone),
                topic_state(kafka_bootstrap, spec.topic_for(name)),
            )
            assert result.matches, f"{name}: {result.describe()}"
        print("write load:", load.report.counts)
    finally:
        for pattern in patterns.values():
            pattern.close()


@pytest.fixture
def widgets(pg_engine):
    metadata = sa.MetaData()
    table = sa.Table(
        "widgets",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("label", sa.Text),
        sa.Column("secret_cost", sa.Text),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    metadata.create_all(pg_engine)
    return table


def _widget_spec(make_spec, pg_database, **extra):
    return make_spec(
        pg=pg_database,
        streams={
            "widgets": {
                "source": "pg",
                "table": "widgets",
                "key": ["id"],
                "projection": ["id", "label", "updated_at"],
                "batch_size": 1000,
                **extra,
            }
        },
    )


def test_an_open_transaction_in_another_database_does_not_hold_the_poll_back(
    make_spec, pg_database, pg_engine, widgets, stack, kafka_bootstrap
) -> None:
    elsewhere = sa.create_engine(stack.pg_url("liberation"))  # another database of the same cluster
    try:
        with elsewhere.connect() as idle_in_transaction:
            idle_in_transaction.execute(sa.text("SELECT 1"))  # its transaction is open from here on
            time.sleep(0.2)
            with pg_engine.begin() as c:
                c.execute(widgets.insert(), [{"id": 1, "label": "a"}, {"id": 2, "label": "b"}])
            pattern = QueryPattern(_widget_spec(make_spec, pg_database), "widgets")
            polled = pattern.incremental()
            pattern.close()
            idle_in_transaction.rollback()
    finally:
        elsewhere.dispose()
    assert polled.result.published == 2, "a transaction elsewhere in the cluster cannot write to this table"


def test_late_commit_is_published_after_the_transaction_commits(
    make_spec, pg_database, pg_engine, widgets, kafka_bootstrap
) -> None:
    spec = _widget_spec(make_spec, pg_database)
    pattern = QueryPattern(spec, "widgets")
    with pg_engine.begin() as c:
        c.execute(widgets.insert(), [{"id": 1, "label": "early"}])
    pattern.incremental()

    late = pg_engine.connect()
    late_tx = late.begin()
    late.execute(widgets.insert().values(id=2, label="late"))  # updated_at = this transaction's start
    time.sleep(1.5)
    with pg_engine.begin() as c:  # committed after the late transaction started, with a later timestamp
        c.execute(widgets.insert().values(id=3, label="after"))
    held = pattern.incremental()
    assert held.result.published == 0, "a poll must not move past an open transaction's start"
    assert held.ceiling_lag_seconds >= 1.0
    late_tx.commit()
    late.close()
    pattern.incremental()
    pattern.close()

    keys = Counter(m.key_object["id"] for m in consume_all(kafka_bootstrap, spec.topic_for("widgets")))
    assert keys == {1: 1, 2: 1, 3: 1}


def test_ten_thousand_rows_sharing_a_timestamp_are_each_published_once(
    make_spec, pg_database, pg_engine, widgets, kafka_bootstrap
) -> None:
    with pg_engine.begin() as c:  # one transaction: every row gets the same now()
        c.execute(widgets.insert(), [{"id": i, "label": f"w{i}"} for i in range(1, 10_001)])
        assert c.execute(sa.select(sa.func.count(sa.distinct(widgets.c.updated_at)))).scalar_one() == 1
    spec = _widget_spec(make_spec, pg_database)
    pattern = QueryPattern(spec, "widgets")
    first = pattern.incremental()
    second = pattern.incremental()
    pattern.close()
    assert first.result.transactions == 10 and first.result.published == 10_000
    assert second.result.published == 0
    keys = Counter(m.key_object["id"] for m in consume_all(kafka_bootstrap, spec.topic_for("widgets")))
    assert len(keys) == 10_000 and set(keys.values()) == {1}


def test_hard_delete_yields_a_delete_and_a_tombstone_after_reconciliation(
    make_spec, pg_database, pg_engine, widgets, kafka_bootstrap
) -> None:
    with pg_engine.begin() as c:
        c.execute(widgets.insert(), [{"id": i, "label": f"w{i}"} for i in (1, 2, 3)])
    spec = _widget_spec(make_spec, pg_database)
    pattern = QueryPattern(spec, "widgets")
    pattern.snapshot()
    with pg_engine.begin() as c:
        c.execute(widgets.delete().where(widgets.c.id == 2))
    assert pattern.incremental().result.published == 0  # polling alone cannot see it
    summary = pattern.reconcile()
    assert summary.result.deletes == 1
    assert pattern.reconcile().result.deletes == 0  # idempotent
    pattern.close()
    messages = [m for m in consume_all(kafka_bootstrap, spec.topic_for("widgets")) if m.key_object == {"id": 2}]
    assert [m.envelope["op"] if m.value else None for m in messages] == ["r", "d", None]
    assert messages[1].envelope["before"]["label"] == "w2" and messages[1].envelope["after"] is None


def test_soft_delete_column_maps_to_deletes(make_spec, pg_database, pg_engine, widgets, kafka_bootstrap) -> None:
    with pg_engine.begin() as c:
        c.execute(widgets.insert(), [{"id": i, "label": f"w{i}"} for i in (1, 2)])
    spec = _widget_spec(make_spec, pg_database, soft_delete={"column": "deleted_at"})
    pattern = QueryPattern(spec, "widgets")
    pattern.incremental()
    with pg_engine.begin() as c:
        c.execute(widgets.update().where(widgets.c.id == 1).values(deleted_at=sa.func.now(), updated_at=sa.func.now()))
    pattern.incremental()
    pattern.close()
    state = topic_state(kafka_bootstrap, spec.topic_for("widgets"))
    assert list(state) == [b'{"id":2}']


def test_internal_columns_never_appear_in_any_published_byte(
    make_spec, pg_database, pg_engine, widgets, kafka_bootstrap
) -> None:
    marker = "INTERNAL-ONLY-7f3a"
    with pg_engine.begin() as c:
        c.execute(widgets.insert(), [{"id": i, "label": f"w{i}", "secret_cost": f"{marker}-{i}"} for i in range(1, 51)])
    spec = _widget_spec(make_spec, pg_database, contract={"label": {"type": "str", "isin": ["w1", "w2", "w3"]}})
    pattern = QueryPattern(spec, "widgets")
    pattern.snapshot()
    with pg_engine.begin() as c:
        c.execute(
            widgets.update().where(widgets.c.id < 10).values(secret_cost=marker + "-new", updated_at=sa.func.now())
        )
    pattern.incremental()
    with pg_engine.begin() as c:
        c.execute(widgets.delete().where(widgets.c.id == 5))
    pattern.reconcile()
    pattern.close()
    topics = [spec.topic_for("widgets"), spec.topic_for("widgets") + ".quarantine", spec.kafka.positions_topic]
    seen = 0
    for topic in topics:
        for message in consume_all(kafka_bootstrap, topic):
            blob = (
                (message.key or b"")
                + (message.value or b"")
                + b"".join(k.encode() + v for k, v in message.headers.items())
            )
            assert marker.encode() not in blob and b"secret_cost" not in blob
            seen += 1
    assert seen > 50


def test_event_time_is_the_kafka_timestamp_and_headers_name_the_stream(
    make_spec, pg_database, pg_engine, widgets, kafka_bootstrap
) -> None:
    with pg_engine.begin() as c:
        c.execute(widgets.insert().values(id=1, label="x", updated_at=sa.text("'2021-03-04 05:06:07.891+00'")))
    spec = _widget_spec(make_spec, pg_database)
    pattern = QueryPattern(spec, "widgets")
    pattern.incremental()
    pattern.close()
    (message,) = consume_all(kafka_bootstrap, spec.topic_for("widgets"))
    assert message.timestamp_ms == 1614834367891
    envelope = message.envelope
    assert envelope["source"]["ts_ms"] == 1614834367891 and envelope["ts_ms"] > envelope["source"]["ts_ms"]
    assert envelope["source"]["table"] == "widgets" and envelope["source"]["snapshot"] == "false"
    assert envelope["after"]["updated_at"] == "2021-03-04T05:06:07.891000Z"
    assert message.headers["liberation.stream"] == b"widgets" and message.headers["liberation.pattern"] == b"query"
    assert "liberation.schema.version" in message.headers
