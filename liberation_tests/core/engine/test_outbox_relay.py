"""The outbox relay as the engine runs it: continuous mode with its latency, and the demo order service."""

from __future__ import annotations

import statistics
import threading
import time
import uuid

import pytest
import sqlalchemy as sa
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from liberation_assets.core.engine.outbox_relay import relay_once
from liberation_assets.core.outbox import create_outbox_table
from liberation_assets.core.outbox.table import outbox_table
from liberation_assets.core.publish.topics import TopicSpec, ensure_topics
from liberation_assets.demo import schema
from liberation_assets.demo.generator import WriteLoad, seed
from liberation_assets.demo.orders_service import on_order, prepare
from liberation_tests.core.outbox.support import (
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

pytestmark = pytest.mark.integration


class _Arrivals(threading.Thread):
    """A read_committed consumer noting when each event id becomes visible."""

    def __init__(self, bootstrap: str, topic_name: str):
        super().__init__(daemon=True)
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"latency-{uuid.uuid4()}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
            }
        )
        partitions = self.consumer.list_topics(topic_name, timeout=10).topics[topic_name].partitions
        self.consumer.assign([TopicPartition(topic_name, p, OFFSET_BEGINNING) for p in partitions])
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                message = self.consumer.poll(0.05)  # not consume(n): that waits for n messages or the timeout
                if message is not None and message.error() is None:
                    self.seen[dict(message.headers())["id"].decode()] = time.time()
        finally:
            self.consumer.close()


@pytest.mark.parametrize("via", ["poll", "cdc"])
def test_follow_relays_continuously_and_reports_commit_to_kafka_latency(
    via, make_spec, pg_engine, pg_database, kafka_bootstrap, tmp_path
) -> None:
    spec = outbox_spec(make_spec, pg=pg_database, partitions=3, via=via)
    create_outbox_table(pg_engine, spec.outboxes["ob"])
    ensure_topics(kafka_bootstrap, [TopicSpec(topic(spec, "counter"), 3, 1, {"cleanup.policy": "delete"})])
    spec_file = tmp_path / "liberation.yaml"
    spec_file.write_text(spec_to_yaml(spec))
    relay = RelayProcess(spec_file)
    arrivals = _Arrivals(kafka_bootstrap, topic(spec, "counter"))
    try:
        relay.wait_relaying()
        arrivals.start()
        writers = CounterWriters(pg_engine, writers=4, pause=0.02, delete_in_transaction=via == "cdc")
        writers.start()
        time.sleep(10)
        writers.stop()
        wait_until(lambda: set(writers.committed) <= set(arrivals.seen), 120, "not every event reached Kafka")
    finally:
        arrivals.stop.set()
        relay.kill()
    latencies = sorted((arrivals.seen[i] - committed) * 1000 for i, committed in writers.committed.items())
    p50, p99 = statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]
    how = "pgoutput slot" if via == "cdc" else "polling woken by NOTIFY"
    print(
        f"\noutbox commit→Kafka (read_committed consumer), `liberation follow` via {via} ({how}): "
        f"{len(latencies)} events, p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms"
    )
    assert_exactly_once_in_order(consume_all(kafka_bootstrap, topic(spec, "counter")), writers)
    assert pending_rows(pg_engine) == 0


def test_the_demo_order_service_emits_order_placed_with_each_order(
    make_spec, pg_engine, pg_database, kafka_bootstrap
) -> None:
    spec = outbox_spec(make_spec, pg=pg_database)
    schema.create_schema(pg_engine)
    prepare(pg_engine)
    seed(pg_engine, products_count=50, orders_count=0)
    load = WriteLoad(pg_engine, threads=2, pause=0.005, long_transaction_seconds=0.2, on_order=on_order)
    report = load.run_for(3)
    placed = report.counts.get("place_order", 0)
    assert placed > 0

    summary = relay_once(spec, "ob")

    assert summary.relayed == placed
    messages = consume_all(kafka_bootstrap, topic(spec, "order"))
    with pg_engine.connect() as connection:
        order_ids = {str(i) for i in connection.execute(sa.select(schema.orders.c.id)).scalars()}
    assert {m.key.decode() for m in messages} == order_ids  # one event per committed order, no more
    assert {m.headers["type"] for m in messages} == {b"OrderPlaced"}
    assert all("fraud_score" not in m.envelope and "internal_notes" not in m.envelope for m in messages)
    assert pending_rows(pg_engine) == 0
    with pg_engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(outbox_table())).scalar_one() == 0
