"""The relay against real Kafka and databases: records, cleanup, crash recovery, lease, late commits."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from liberation_assets.core.engine.outbox_relay import relay_once
from liberation_assets.core.errors import OutboxUnavailable
from liberation_assets.core.outbox import create_outbox_table, emit
from liberation_assets.core.outbox.relay import OutboxRelay, position_key
from liberation_assets.core.outbox.table import outbox_table
from liberation_assets.core.publish.positions import PositionStore
from liberation_assets.demo.orders_service import OrderPlaced, PaymentCaptured
from liberation_tests.core.outbox.support import CounterBumped, outbox_spec, pending_rows, topic
from liberation_tests.fix_kafka import consume_all

pytestmark = pytest.mark.integration
NOW = datetime.now(timezone.utc)


def _bump(engine: sa.Engine, counter: str, n: int) -> CounterBumped:
    with engine.begin() as connection:
        return emit(connection, CounterBumped(counter_id=counter, n=n, writer=0))


def test_rows_become_debezium_router_records_then_disappear(make_spec, pg_engine, pg_database, kafka_bootstrap) -> None:
    spec = outbox_spec(make_spec, pg=pg_database)
    create_outbox_table(pg_engine, spec.outboxes["ob"])
    order_id = uuid.uuid4()
    placed_at = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=timezone.utc)
    with pg_engine.begin() as connection:
        placed = emit(
            connection,
            OrderPlaced(
                order_id=order_id,
                customer_id=1,
                total="9.99",
                currency="EUR",
                placed_at=placed_at,
                occurred_at=placed_at,
            ),
        )
        captured = emit(
            connection, PaymentCaptured(order_id=order_id, payment_id=5, amount="9.99", method="card", captured_at=NOW)
        )
    bumps = [_bump(pg_engine, "c-1", n) for n in (1, 2, 3)]

    summary = relay_once(spec, "ob")

    assert summary.metadata()["published"] == 5 and summary.pending == 0
    orders = consume_all(kafka_bootstrap, topic(spec, "order"))
    assert [m.headers["id"].decode() for m in orders] == [str(placed.event_id), str(captured.event_id)]
    assert [m.headers["type"] for m in orders] == [b"OrderPlaced", b"PaymentCaptured"]
    assert {m.key for m in orders} == {str(order_id).encode()}
    assert orders[0].timestamp_ms == 1714564800123
    assert orders[0].value == placed.model_dump_json().encode()  # the payload, byte for byte
    counters = consume_all(kafka_bootstrap, topic(spec, "counter"))
    assert [m.headers["id"].decode() for m in counters] == [str(b.event_id) for b in bumps]
    assert pending_rows(pg_engine) == 0
    stored = PositionStore(kafka_bootstrap, spec.kafka.positions_topic).get(position_key("ob"))
    assert stored is not None and stored["events"] == 5


def test_mark_cleanup_keeps_rows_but_never_relays_them_twice(
    make_spec, pg_engine, pg_database, kafka_bootstrap
) -> None:
    spec = outbox_spec(make_spec, pg=pg_database, cleanup="mark")
    create_outbox_table(pg_engine, spec.outboxes["ob"])
    _bump(pg_engine, "c-1", 1)
    assert relay_once(spec, "ob").relayed == 1
    assert relay_once(spec, "ob").relayed == 0
    with pg_engine.connect() as connection:
        assert connection.execute(sa.select(outbox_table().c.relayed_at)).scalar_one() is not None
    assert len(consume_all(kafka_bootstrap, topic(spec, "counter"))) == 1


def test_a_crash_between_kafka_commit_and_delete_neither_loses_nor_duplicates(
    make_spec, pg_engine, pg_database, kafka_bootstrap
) -> None:
    spec = outbox_spec(make_spec, pg=pg_database, batch_size=3)
    create_outbox_table(pg_engine, spec.outboxes["ob"])
    events = [_bump(pg_engine, "c-1", n) for n in range(1, 6)]
    crashed = OutboxRelay(spec, "ob")
    assert crashed.acquire()
    assert len(crashed.publish_batch()) == 3  # committed to Kafka; the process "dies" before cleanup
    crashed.close()
    assert pending_rows(pg_engine) == 5

    summary = relay_once(spec, "ob")

    assert (summary.recovered, summary.relayed, summary.pending) == (3, 2, 0)
    ids = [m.headers["id"].decode() for m in consume_all(kafka_bootstrap, topic(spec, "counter"))]
    assert ids == [str(e.event_id) for e in events]


def test_one_relay_at_a_time_holds_the_lease(make_spec, pg_engine, pg_database) -> None:
    spec = outbox_spec(make_spec, pg=pg_database)
    create_outbox_table(pg_engine, spec.outboxes["ob"])
    _bump(pg_engine, "c-1", 1)
    first = OutboxRelay(spec, "ob")
    assert first.acquire()
    try:
        blocked = relay_once(spec, "ob")
        assert not blocked.lease_acquired and blocked.relayed == 0
        assert blocked.metadata()["lease_held_elsewhere"] == 1 and blocked.pending == 1
    finally:
        first.close()  # ends the session: the database releases the lease
    assert relay_once(spec, "ob").relayed == 1


def test_a_row_committed_late_below_relayed_rows_is_still_relayed(
    make_spec, pg_engine, pg_database, kafka_bootstrap
) -> None:
    spec = outbox_spec(make_spec, pg=pg_database)
    create_outbox_table(pg_engine, spec.outboxes["ob"])
    with pg_engine.connect() as slow:
        slow_tx = slow.begin()
        late = emit(slow, CounterBumped(counter_id="slow", n=1, writer=1))  # takes the lower seq, commits last
        fast = _bump(pg_engine, "fast", 1)
        assert relay_once(spec, "ob").relayed == 1
        slow_tx.commit()
    assert relay_once(spec, "ob").relayed == 1
    ids = [m.headers["id"].decode() for m in consume_all(kafka_bootstrap, topic(spec, "counter"))]
    assert ids == [str(fast.event_id), str(late.event_id)]


def test_mariadb_outbox_relays_with_utc_timestamps(make_spec, mysql_engine, mysql_database, kafka_bootstrap) -> None:
    spec = outbox_spec(make_spec, mysql=mysql_database)
    create_outbox_table(mysql_engine, spec.outboxes["ob"])
    when = datetime(2024, 5, 1, 14, 0, 0, 500000, tzinfo=timezone(timedelta(hours=2)))
    with mysql_engine.begin() as connection:
        emit(connection, CounterBumped(counter_id="m-1", n=1, writer=0, occurred_at=when))
    assert relay_once(spec, "ob").relayed == 1
    [message] = consume_all(kafka_bootstrap, topic(spec, "counter"))
    assert message.timestamp_ms == int(when.timestamp() * 1000) and message.key == b"m-1"
    assert pending_rows(mysql_engine) == 0


def test_a_missing_table_is_a_clear_error(make_spec, pg_database) -> None:
    spec = outbox_spec(make_spec, pg=pg_database)
    with pytest.raises(OutboxUnavailable, match="does not exist; create it with `liberation outbox <name>`"):
        relay_once(spec, "ob")
