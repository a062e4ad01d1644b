"""Fixtures and helpers that read what liberation wrote to the real Kafka broker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pytest

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


def consume_all(bootstrap: str, topic: str) -> list[Message]:
    """Every message of a topic, from the beginning to its end, as a read_committed consumer sees them."""
    return [Message(msg.key(), msg.value(), msg.timestamp()[1], dict(msg.headers() or []), msg.partition(), msg.offset())
            for batch in committed_batches(bootstrap, topic) for msg in batch]


@pytest.fixture
def kafka_bootstrap(stack: StackSettings) -> str:
    return stack.kafka_bootstrap
