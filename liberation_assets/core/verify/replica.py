"""Materialize a stream's replica from its topic: what any consumer of the topic would rebuild.

The topic is read from the beginning with ``read_committed``; every record is
an upsert of its after-image or, for deletes and tombstones, a delete of its
key.  Offsets are kept in the replica database with the rows (see ``store``),
so a rerun reads only new records.  The replica is rebuilt from scratch when
the topic is not the one it was built from, or when records it has not read
are gone from the log (the topic was recreated or truncated).

Truncate events (op ``t``) are counted but not applied: liberation publishes a
delete for every live key right after one, in the key's own partition, while
clearing the table on ``t`` could remove rows that other partitions already
delivered from after the truncate.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from liberation_assets.core.contract.formats import canonical_key, decode_value
from liberation_assets.core.drivers import kafka_logger
from liberation_assets.core.engine.writer import lag_metadata
from liberation_assets.core.errors import ConnectivityError
from liberation_assets.core.events import READ, TRUNCATE
from liberation_assets.core.publish.reading import END_POLL_SECONDS, settled_watermarks
from liberation_assets.core.verify.compare import canonical
from liberation_assets.core.verify.store import Change, ReplicaStore

BATCH = 5000
STALL_SECONDS = 120.0
"""Reading stops with an error when the broker delivers neither records nor end-of-partition for this long."""


@dataclass
class ApplyStats:
    """What one catch-up did; numbers only, so the UI plots them."""

    records: int = 0
    upserts: int = 0
    deletes: int = 0
    truncates: int = 0
    rows: int = 0
    rebuilt: bool = False
    seconds: float = 0.0
    last_event_ms: int | None = None
    """Newest source event time in the replica, over every run."""
    max_publish_lag_ms: int | None = None
    """Largest (publish time - source event time) of the change events read in this run; snapshot reads excluded."""

    def metadata(self) -> dict[str, int | float]:
        data: dict[str, int | float] = {
            "records_applied": self.records,
            "upserts": self.upserts,
            "deletes": self.deletes,
            "truncate_events": self.truncates,
            "replica_rows": self.rows,
            "rebuilt": int(self.rebuilt),
            "apply_seconds": round(self.seconds, 3),
            "records_per_second": round(self.records / self.seconds, 1) if self.seconds > 0 else 0.0,
        }
        data.update(lag_metadata(self.last_event_ms, self.max_publish_lag_ms))
        return data


class _Batch:
    """Changes of one consume() call, last write per key wins (a key lives in one partition, in order)."""

    __slots__ = ("changes", "offsets", "records", "truncates", "last_event_ms", "max_lag_ms")

    def __init__(self) -> None:
        self.changes: dict[bytes, Change] = {}
        self.offsets: dict[int, int] = {}
        self.records = 0
        self.truncates = 0
        self.last_event_ms: int | None = None
        self.max_lag_ms: int | None = None

    def add(self, message: Message) -> None:
        partition, offset, value = message.partition() or 0, message.offset() or 0, message.value()
        key = canonical_key(message.key()) or None  # any value format
        self.records += 1
        self.offsets[partition] = offset + 1
        if value is None:
            if key:
                self.changes[key] = None
            return
        envelope = decode_value(value) or {}
        op = envelope.get("op")
        event_ms = (envelope.get("source") or {}).get("ts_ms")
        if isinstance(event_ms, int):
            self.last_event_ms = event_ms if self.last_event_ms is None else max(self.last_event_ms, event_ms)
            published_ms = envelope.get("ts_ms")
            if op != READ and isinstance(published_ms, int):
                lag = max(0, published_ms - event_ms)
                self.max_lag_ms = lag if self.max_lag_ms is None else max(self.max_lag_ms, lag)
        if op == TRUNCATE:
            self.truncates += 1
            return
        if not key:
            return
        after = envelope.get("after")
        if after is None:
            self.changes[key] = None
        else:
            self.changes[key] = (canonical(after), partition, offset)


def materialize(
    store: ReplicaStore,
    name: str,
    bootstrap_servers: str,
    topic: str,
    *,
    rebuild: bool = False,
    on_record: Callable[[Message], None] | None = None,
) -> ApplyStats:
    """Apply every committed record the replica has not seen yet; ``rebuild`` starts over from the beginning.

    ``on_record`` sees each record read, in order (``verify.settle`` looks for a key's versions among them)."""
    started = time.monotonic()
    stats = ApplyStats()
    consumer = Consumer(
        {
            "logger": kafka_logger(),
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"liberation-replica-{uuid.uuid4()}",  # offsets live in the replica database, never in Kafka
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 10,
        }
    )
    try:
        watermarks = _watermarks(consumer, bootstrap_servers, topic)
        state = store.state(name)
        if rebuild or state.topic != topic or _lost(state.offsets, watermarks):
            stats.rebuilt = state.topic is not None
            store.reset(name, topic)
            state = store.state(name)
        assignment = [
            TopicPartition(topic, p, state.offsets.get(p, OFFSET_BEGINNING))
            for p, (_low, high) in watermarks.items()
            if state.offsets.get(p, 0) < high
        ]
        remaining = {tp.partition for tp in assignment}
        if assignment:
            consumer.assign(assignment)
        last_progress = time.monotonic()
        while remaining:
            batch = _Batch()
            for message in consumer.consume(BATCH, timeout=END_POLL_SECONDS):
                error = message.error()
                if error is None:
                    batch.add(message)
                    if on_record is not None:
                        on_record(message)
                elif error.code() == KafkaError._PARTITION_EOF:
                    remaining.discard(message.partition())
                else:
                    raise ConnectivityError(f"reading {topic}: {error.str()}")
                last_progress = time.monotonic()
            if batch.records:
                store.apply(name, batch.changes, batch.offsets, batch.last_event_ms)
                _count(stats, batch)
            elif time.monotonic() - last_progress > STALL_SECONDS:
                raise ConnectivityError(f"reading {topic}: no records and no end of partition for {STALL_SECONDS:.0f}s")
    finally:
        consumer.close()
    stats.rows = store.rows(name)
    stats.last_event_ms = store.state(name).last_event_ms
    stats.seconds = time.monotonic() - started
    return stats


def _watermarks(consumer: Consumer, bootstrap_servers: str, topic: str) -> dict[int, tuple[int, int]]:
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        described = metadata.topics[topic]
        if described.error is not None:
            raise ConnectivityError(f"cannot read {topic}: {described.error.str()}")
        return settled_watermarks(bootstrap_servers, topic, described.partitions)
    except KafkaException as exc:
        raise ConnectivityError(f"cannot read {topic}: {exc}") from None


def _lost(offsets: dict[int, int], watermarks: dict[int, tuple[int, int]]) -> bool:
    """Records the replica has not read are gone: the topic was recreated, or its log start moved past us."""
    return any(
        p not in watermarks or not watermarks[p][0] <= next_offset <= watermarks[p][1]
        for p, next_offset in offsets.items()
    )


def _count(stats: ApplyStats, batch: _Batch) -> None:
    stats.records += batch.records
    stats.truncates += batch.truncates
    deletes = sum(1 for change in batch.changes.values() if change is None)
    stats.deletes += deletes
    stats.upserts += len(batch.changes) - deletes
    if batch.max_lag_ms is not None:
        stats.max_publish_lag_ms = max(stats.max_publish_lag_ms or 0, batch.max_lag_ms)
