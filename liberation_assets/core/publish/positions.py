"""The position store: a compacted Kafka topic of reader positions.

Positions are produced in the same transaction as the events they cover, and
read back with ``read_committed``, so a position never runs ahead of, nor falls
behind, what consumers can see.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from liberation_assets.core.events import Position
from liberation_assets.core.publish.publisher import OutRecord
from liberation_assets.core.publish.reading import committed_batches
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
        return cls(
            kafka.resolved_bootstrap_servers(),
            kafka.positions_topic,
            kafka.replication_factor,
            kafka.min_insync_replicas,
        )

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
    state: dict[bytes, bytes] = {}
    for batch in committed_batches(bootstrap_servers, topic):
        for msg in batch:
            key = msg.key() or b""
            if not key.startswith(key_prefix):
                continue
            value = msg.value()
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
    return state
