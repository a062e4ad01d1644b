"""``via: cdc``: the outbox relayed from PostgreSQL's log through the pgoutput decoder and the event router."""

from __future__ import annotations

import random
import time
from datetime import datetime, timezone

import pytest

from liberation_assets.core.engine.outbox_relay import outbox_pending, relay_once
from liberation_assets.core.outbox import create_outbox_table, emit
from liberation_assets.core.outbox.event_router import EventRouter
from liberation_assets.core.outbox.relay import Router
from liberation_assets.core.outbox.table import outbox_table
from liberation_assets.core.readers.pgoutput import Column, Insert, Relation
from liberation_tests.core.outbox.support import (
    CounterBumped,
    CounterWriters,
    RelayProcess,
    assert_exactly_once_in_order,
    outbox_spec,
    pending_rows,
    topic,
)
from liberation_tests.fix_kafka import consume_all
from liberation_tests.fix_stack import spec_to_yaml
from liberation_tests.support import wait_until

TIMESTAMPTZ, TEXT, UUID, JSON, INT8 = 1184, 25, 2950, 114, 20


def test_the_event_router_turns_outbox_inserts_into_records_and_ignores_other_tables() -> None:
    events = EventRouter("public", "outbox", Router("outbox.event.{aggregatetype}", topic_prefix="p", outbox="o"))
    columns = (
        Column("seq", INT8, -1, True),
        Column("id", UUID, -1, False),
        Column("aggregatetype", TEXT, -1, False),
        Column("aggregateid", TEXT, -1, False),
        Column("type", TEXT, -1, False),
        Column("payload", JSON, -1, False),
        Column("occurred_at", TIMESTAMPTZ, -1, False),
        Column("relayed_at", TIMESTAMPTZ, -1, False),
    )
    events.relation(Relation(7, "public", "other", "d", columns))
    events.relation(Relation(9, "public", "outbox", "d", columns))
    row = ("42", "e-1", "order", "o-1", "OrderPlaced", '{"a": 1}', "2024-05-01 12:00:00.25+00", None)
    assert events.record(Insert(7, row)) is None
    assert events.record(Insert(9, row)) == (
        42,
        ("outbox.event.order", b"o-1", b'{"a": 1}', 1714564800250, [("id", b"e-1"), ("type", b"OrderPlaced")]),
    )


@pytest.mark.integration
def test_log_relay_publishes_earlier_rows_then_the_log_in_commit_order(
    make_spec, pg_engine, pg_database, kafka_bootstrap
) -> None:
    spec = outbox_spec(make_spec, pg=pg_database, via="cdc")
    create_outbox_table(pg_engine, spec.outboxes["ob"])
    outbox = outbox_table()
    with pg_engine.begin() as connection:  # before the slot exists: published from its exported snapshot
        before = emit(connection, CounterBumped(counter_id="c", n=1, writer=0))
    assert relay_once(spec, "ob").relayed == 1
    with pg_engine.begin() as connection:  # Debezium style: insert and delete in one transaction
        logged = emit(connection, CounterBumped(counter_id="c", n=2, writer=0))
        connection.execute(outbox.delete().where(outbox.c.id == str(logged.event_id)))
    with pg_engine.begin() as connection:  # left in the table: the relay cleans it up after Kafka has it
        kept = emit(
            connection,
            CounterBumped(counter_id="c", n=3, writer=0, occurred_at=datetime(2024, 5, 1, 12, tzinfo=timezone.utc)),
        )
    assert outbox_pending(spec, "ob")[0] == 1

    summary = relay_once(spec, "ob")

    assert summary.relayed == 2 and summary.pending == 0
    messages = consume_all(kafka_bootstrap, topic(spec, "counter"))
    assert [m.headers["id"].decode() for m in messages] == [str(e.event_id) for e in (before, logged, kept)]
    assert messages[2].timestamp_ms == 1714564800000 and messages[2].value == kept.model_dump_json().encode()
    assert pending_rows(pg_engine) == 0
    assert relay_once(spec, "ob").relayed == 0


@pytest.mark.integration
@pytest.mark.slow
def test_log_relay_survives_kill_9_exactly_once(make_spec, pg_engine, pg_database, kafka_bootstrap, tmp_path) -> None:
    spec = outbox_spec(make_spec, pg=pg_database, via="cdc", partitions=3, batch_size=50)
    create_outbox_table(pg_engine, spec.outboxes["ob"])
    spec_file = tmp_path / "liberation.yaml"
    spec_file.write_text(spec_to_yaml(spec))
    rng = random.Random(7)
    relays = [RelayProcess(spec_file)]
    relays[0].wait_relaying()  # the slot must exist before rows are deleted in their own transaction
    relays.append(RelayProcess(spec_file))
    retired: list[RelayProcess] = []
    writers = CounterWriters(pg_engine, writers=4, pause=0.01, delete_in_transaction=True)
    writers.start()
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(1.5, 4.0))
            victim = rng.randrange(2)
            relays[victim].kill()
            retired.append(relays[victim])
            relays[victim] = RelayProcess(spec_file)
        writers.stop()
        wait_until(
            lambda: (
                set(writers.committed)
                <= {m.headers["id"].decode() for m in consume_all(kafka_bootstrap, topic(spec, "counter"))}
            ),
            180,
            "not every event was relayed from the log",
        )
    finally:
        writers.stop()
        for relay in relays:
            relay.kill()
            retired.append(relay)
    assert_exactly_once_in_order(consume_all(kafka_bootstrap, topic(spec, "counter")), writers)
    print(f"\noutbox via cdc: {len(writers.committed)} events, {len(retired) - 2} kill -9, exactly once and in order")
