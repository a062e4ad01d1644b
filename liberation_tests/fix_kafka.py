"""Fixtures and helpers that read what liberation wrote to the real Kafka broker."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition

from liberation_assets.core.publish.reading import committed_batches
from liberation_assets.stack import StackSettings


@dataclass(frozen=True)
class Message:
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: dict[str, bytes]
    partition: int
    offset: int

    @property
    def envelope(self) -> dict[str, Any] | None:
        return orjson.loads(self.value) if self.value is not None else None

    @property
    def key_object(self) -> Any:
        return orjson.loads(self.key) if self.key is not None else None


def consume_all(bootstrap: str, topic: str, **settle: Any) -> list[Message]:
    """Every message of a topic, from the beginning to its end, as a read_committed consumer sees them.

    ``settle`` goes to ``committed_batches`` (``settle_seconds``, ``must_settle``).
    """
    return [
        Message(msg.key(), msg.value(), msg.timestamp()[1], dict(msg.headers() or []), msg.partition(), msg.offset())
        for batch in committed_batches(bootstrap, topic, **settle)
        for msg in batch
    ]


class TopicGrowth:
    """How far a topic's log reaches now, open transactions included: a cheap, fast poll for "the writer got on".

    Crash tests kill a writer once it has made some progress.  Polling the
    committed positions instead is slower than a fast writer, which could then
    finish before the kill.
    """

    def __init__(self, bootstrap: str, topic: str):
        self.topic = topic
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"test-growth-{uuid.uuid4()}",
                "isolation.level": "read_uncommitted",
                "enable.auto.commit": False,
            }
        )

    def offsets(self) -> int:
        """The sum of the partitions' log ends (records and transaction markers); 0 while the topic is absent."""
        try:
            described = self._consumer.list_topics(self.topic, timeout=5).topics.get(self.topic)
            if described is None or described.error is not None:
                return 0
            return sum(
                self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=5, cached=False)[1]
                for p in described.partitions
            )
        except KafkaException:
            return 0

    def close(self) -> None:
        self._consumer.close()


@pytest.fixture
def kafka_bootstrap(stack: StackSettings) -> str:
    return stack.kafka_bootstrap
