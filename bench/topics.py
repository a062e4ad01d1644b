"""Kafka helpers for the harness: create and delete bench topics, watch a topic fill up."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def create(bootstrap: str, topics: list[str], *, compacted: bool = False) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    config = {"cleanup.policy": "compact"} if compacted else {}
    futures = admin.create_topics([NewTopic(t, 1, 1, config=config) for t in topics])
    for topic, future in futures.items():
        try:
            future.result(30)
        except Exception as exc:  # noqa: BLE001 - an existing topic is fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise


def delete_prefix(bootstrap: str, prefix: str) -> int:
    """Delete every topic whose name starts with ``prefix``; the data set is large, disks are not."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix)]
    if names:
        for future in admin.delete_topics(names, operation_timeout=60).values():
            try:
                future.result(60)
            except Exception:  # noqa: BLE001 - best effort cleanup
                pass
    return len(names)


_NOT_YET = (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.NOT_LEADER_FOR_PARTITION)
"""A topic the tool has just created answers these for a moment (the first run's snapshot hit one)."""


@dataclass(frozen=True)
class Span:
    """When a tool's records became visible in Kafka, as the harness's polls saw them (the same for every tool).

    Start-up (a JVM, a connector, our process and its producer) is before ``first`` and not in the span: the
    rate is the tool's steady pace. The records already visible at ``first`` are not counted either, since
    their work was done before it.
    """

    base: int
    """Records in the topics before the tool started."""
    first: float
    """``time.monotonic()`` of the first poll that saw more than ``base``."""
    seen_first: int
    done: float
    """The first poll that saw the final count."""
    final: int

    def rate(self, events: int) -> float:
        """Events a second over the span; ``events`` scales the record counts (a transactional topic's count
        includes one commit marker per transaction)."""
        counted = events * (self.final - self.seen_first) / max(1, self.final - self.base)
        return counted / max(1e-9, self.done - self.first)


class Watch:
    """Polls the high watermarks of one or more topics: how many records Kafka has acknowledged, summed."""

    def __init__(self, bootstrap: str, topic: str, *more: str):
        self.topic = topic
        self.topics = [topic, *more]
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"bench-watch-{uuid.uuid4()}", "enable.auto.commit": False}
        )
        self._seen: dict[str, int] = {}

    def count(self) -> int:
        return sum(self._count(topic) for topic in self.topics)

    def _count(self, topic: str) -> int:
        """The topic's records; while a just-created topic has no leader yet, the count the last poll saw."""
        try:
            metadata = self._consumer.list_topics(topic, timeout=10).topics.get(topic)
            if metadata is None or metadata.error is not None:
                return self._seen.get(topic, 0)
            total = 0
            for partition in metadata.partitions:
                _low, high = self._consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                total += max(0, high)
        except KafkaException as exc:
            if not exc.args or exc.args[0].code() not in _NOT_YET:
                raise
            return self._seen.get(topic, 0)
        self._seen[topic] = total
        return total

    def follow(self, base: int, finished: Callable[[int], bool], *, timeout: float, interval: float = 0.1) -> Span:
        """Poll until ``finished(count)``; the span ends at the first poll that saw the last count."""
        deadline = time.monotonic() + timeout
        first: float | None = None
        seen_first = last = base
        last_changed = time.monotonic()
        while True:
            now = time.monotonic()
            seen = self.count()
            if seen != last:
                last, last_changed = seen, now
            if first is None and seen > base:
                first, seen_first = now, seen
            if finished(seen):
                return Span(base, first if first is not None else now, seen_first, last_changed, last)
            if now > deadline:
                raise TimeoutError(f"{self.topic}: {seen} records after {timeout:.0f}s")
            time.sleep(interval)

    def close(self) -> None:
        self._consumer.close()
