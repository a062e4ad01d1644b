"""Commit-to-Kafka latency at a fixed rate.

A load thread commits transactions at a steady pace (100 a second, rate/100
changes each) and notes the wall clock right after each COMMIT returns.  Each
change carries its transaction's sequence number (the order's ``customer_id``,
or the outbox payload's ``seq``).  A read_committed consumer notes when each
change becomes visible in Kafka; latency is the difference.  The same harness
measures every tool, so its own overhead (a few ms of consumer fetch wait) is
common to all.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import Consumer, Message, TopicPartition

from bench.context import RunContext
from bench.dataset import ORDERS, OUTBOX, connect
from bench.stats import percentile

TRANSACTIONS_PER_SECOND = 100
SEQ_BASE = 10**12


@dataclass
class LatencyResult:
    p50_ms: float
    p99_ms: float
    expected: int
    received: int


@dataclass
class _Load:
    """Commits ``rate`` changes a second for ``seconds``; records each transaction's commit time."""

    ctx: RunContext
    kind: str
    rate: int
    seconds: float
    base: int
    commit_ns: dict[int, int] = field(default_factory=dict)
    error: BaseException | None = None

    @property
    def per_transaction(self) -> int:
        return max(1, self.rate // TRANSACTIONS_PER_SECOND)

    def statement(self) -> str:
        if self.kind == "orders":
            return (
                f"UPDATE {ORDERS} SET customer_id = %(seq)s, updated_at = clock_timestamp() "
                f"WHERE id BETWEEN %(low)s AND %(high)s"
            )
        return (
            f"INSERT INTO {OUTBOX} (id, aggregatetype, aggregateid, type, payload, occurred_at) "
            f"SELECT gen_random_uuid(), 'order', g::text, 'OrderPaid', json_build_object('seq', %(seq)s::bigint, 'n', g), "
            f"clock_timestamp() "
            f"FROM generate_series(%(low)s::bigint, %(high)s::bigint) AS g"
        )

    def one(self, connection: Any, seq: int, low: int) -> None:
        connection.execute(self.statement(), {"seq": seq, "low": low, "high": low + self.per_transaction - 1})
        connection.commit()
        self.commit_ns[seq] = time.time_ns()

    def run(self) -> None:
        try:
            rows, size = self.ctx.config.rows, self.per_transaction
            transactions = int(self.seconds * TRANSACTIONS_PER_SECOND)
            with connect(self.ctx.stack, autocommit=False) as connection:
                started = time.monotonic()
                for index in range(transactions):
                    pause = started + index / TRANSACTIONS_PER_SECOND - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    self.one(connection, self.base + index, 1 + (index * size) % max(1, rows - size))
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            self.error = exc


def _seq_of_envelope(value: Any) -> int | None:
    after = value.get("after") if isinstance(value, dict) else None
    return after.get("customer_id") if isinstance(after, dict) else None


def _seq_of_payload(value: Any) -> int | None:
    if isinstance(value, str):
        value = orjson.loads(value)
    if isinstance(value, dict) and "payload" in value and "seq" not in value:
        value = value["payload"]
        if isinstance(value, str):
            value = orjson.loads(value)
    return value.get("seq") if isinstance(value, dict) else None


def measure(ctx: RunContext, *, kind: str, topic: str, rate: int, ready_timeout: float = 180) -> LatencyResult:
    """Run the load against a follower that is already running, and collect visibility times."""
    extract: Callable[[Any], int | None] = _seq_of_envelope if kind == "orders" else _seq_of_payload
    consumer = Consumer(
        {
            "bootstrap.servers": ctx.stack.kafka_bootstrap,
            "group.id": f"bench-latency-{uuid.uuid4()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 5,
            "fetch.min.bytes": 1,
        }
    )
    base = SEQ_BASE * (1 + ctx.run) + rate * 1000 + int(time.time()) % 1000 * 10**6
    try:
        # An explicit offset: OFFSET_END resolves lazily, after the canary may already be in.
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
        consumer.assign([TopicPartition(topic, 0, high)])
        _wait_ready(ctx, consumer, kind, extract, base - 1, ready_timeout)
        load = _Load(ctx, kind, rate, ctx.config.latency_seconds, base)
        thread = threading.Thread(target=load.run, name="bench-load", daemon=True)
        thread.start()
        arrivals: dict[int, list[int]] = {}
        expected_tx = int(ctx.config.latency_seconds * TRANSACTIONS_PER_SECOND)
        deadline = time.monotonic() + ctx.config.latency_seconds + 120
        received = 0
        while time.monotonic() < deadline:
            now, messages = _receive(consumer, 0.05)
            for message in messages:
                value = message.value()
                if message.error() or value is None:
                    continue
                seq = extract(orjson.loads(value))
                if isinstance(seq, int) and base <= seq < base + expected_tx:
                    arrivals.setdefault(seq, []).append(now)
                    received += 1
            if not thread.is_alive() and received >= expected_tx * load.per_transaction:
                break
        thread.join(30)
        if load.error is not None:
            raise load.error
        latencies = sorted(
            (arrival - load.commit_ns[seq]) / 1e6
            for seq, times in arrivals.items()
            if seq in load.commit_ns
            for arrival in times
        )
        if not latencies:
            raise RuntimeError(f"no events of the load reached {topic}")
        return LatencyResult(
            percentile(latencies, 0.50), percentile(latencies, 0.99), expected_tx * load.per_transaction, received
        )
    finally:
        consumer.close()


def _receive(consumer: Consumer, wait: float) -> tuple[int, list[Message]]:
    """The messages fetched so far, stamped when the first of them reached us.

    ``consume(n, timeout)`` returns only when n messages are there or the whole timeout has passed, so stamping
    its result would add up to ``wait`` (uniformly, to every tool alike) to each latency: ``poll`` returns at
    the first message, and ``consume(n, 0)`` takes what was fetched with it without waiting.
    """
    first = consumer.poll(wait)
    if first is None:
        return 0, []
    now = time.time_ns()
    return now, [first, *consumer.consume(1000, timeout=0)]


def _wait_ready(
    ctx: RunContext, consumer: Consumer, kind: str, extract: Callable[[Any], int | None], canary: int, timeout: float
) -> None:
    """Commit one canary change and wait until it shows up: the follower is streaming."""
    load = _Load(ctx, kind, 1, 0, canary)
    with connect(ctx.stack, autocommit=False) as connection:
        load.one(connection, canary, 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in consumer.consume(1000, timeout=0.2):
            value = message.value()
            if message.error() or value is None:
                continue
            if extract(orjson.loads(value)) == canary:
                return
    raise TimeoutError(f"the follower did not publish a canary change within {timeout:.0f}s")
