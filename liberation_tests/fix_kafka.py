"""Fixtures and helpers that read what liberation wrote to the real Kafka broker."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

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


def consume_all(bootstrap: str, topic: str, *, isolation: str = "read_committed") -> list[Message]:
    """Every message of a topic, from the beginning to its end, as a read_committed consumer sees them."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4()}",
                         "isolation.level": isolation, "enable.auto.commit": False, "enable.partition.eof": True, "fetch.wait.max.ms": 10})
    messages: list[Message] = []
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = list(metadata.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        remaining = set(partitions)
        while remaining:
            for msg in consumer.consume(10_000, timeout=0.1):
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        remaining.discard(msg.partition())
                        continue
                    raise RuntimeError(msg.error().str())
                messages.append(Message(msg.key(), msg.value(), msg.timestamp()[1], dict(msg.headers() or []),
                                        msg.partition(), msg.offset()))
    finally:
        consumer.close()
    return messages


@pytest.fixture
def kafka_bootstrap(stack: StackSettings) -> str:
    return stack.kafka_bootstrap
