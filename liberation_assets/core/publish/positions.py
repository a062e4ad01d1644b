"""The position store: a compacted Kafka topic of reader positions.

Positions are produced in the same transaction as the events they cover, and
read back with ``read_committed``, so a position never runs ahead of, nor falls
behind, what consumers can see.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from liberation_assets.core.errors import ConnectivityError
from liberation_assets.core.events import Position
from liberation_assets.core.publish.publisher import OutRecord
from liberation_assets.core.publish.topics import TopicSpec, ensure_topics

if TYPE_CHECKING:
    from liberation_assets.core.spec import KafkaSpec


def position_record(topic: str, position: Position) -> OutRecord:
    return (topic, position.key.encode(), orjson.dumps(position.value), None, None)


class PositionStore:
    """Reads positions; writes happen through the publisher's transaction."""

    def __init__(self, bootstrap_servers: str, topic: str, replication_factor: int = 1, min_insync_replicas: int = 1):
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        config = {"cleanup.policy": "compact", "min.insync.replicas": str(min_insync_replicas)}
        ensure_topics(bootstrap_servers, [TopicSpec(topic, 1, replication_factor, config)])

    @classmethod
    def for_spec(cls, kafka: "KafkaSpec") -> "PositionStore":
        """The spec's positions topic, created with its replication settings."""
        return cls(kafka.resolved_bootstrap_servers(), kafka.positions_topic, kafka.replication_factor, kafka.min_insync_replicas)

    def record(self, position: Position) -> OutRecord:
        return position_record(self.topic, position)

    def load(self, prefix: str = "") -> dict[str, dict[str, Any]]:
        """The latest committed position per key, optionally only keys with a prefix.

        Call this after the publisher's ``init_transactions``: that aborts a
        crashed run's open transaction, so the read here cannot block on it.
        """
        latest = read_latest(self.bootstrap_servers, self.topic, prefix.encode())
        return {key.decode(): orjson.loads(value) for key, value in latest.items()}

    def get(self, key: str) -> dict[str, Any] | None:
        return self.load(key).get(key)


def read_latest(bootstrap_servers: str, topic: str, key_prefix: bytes = b"") -> dict[bytes, bytes]:
    """Read a compacted topic to its end (read_committed): the last value per key; tombstones remove keys."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"liberation-reader-{uuid.uuid4()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 10,  # we read to the end once: do not let the broker hold fetches
        }
    )
    state: dict[bytes, bytes] = {}
    try:
        try:
            metadata = consumer.list_topics(topic, timeout=10)
        except KafkaException as exc:
            raise ConnectivityError(f"cannot read {topic}: {exc}") from None
        if metadata.topics[topic].error is not None:
            raise ConnectivityError(f"cannot read {topic}: {metadata.topics[topic].error.str()}")
        partitions = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.topics[topic].partitions]
        remaining = set()
        for tp in partitions:
            _low, high = consumer.get_watermark_offsets(tp, timeout=10)
            if high > 0:
                remaining.add(tp.partition)
        if not remaining:
            return state
        consumer.assign(partitions)
        while remaining:
            for msg in consumer.consume(5000, timeout=0.1):
                error = msg.error()
                if error:
                    if error.code() == KafkaError._PARTITION_EOF:
                        remaining.discard(msg.partition())
                        continue
                    raise ConnectivityError(f"reading {topic}: {error.str()}")
                key = msg.key() or b""
                if not key.startswith(key_prefix):
                    continue
                value = msg.value()
                if value is None:
                    state.pop(key, None)
                else:
                    state[key] = value
    finally:
        consumer.close()
    return state
