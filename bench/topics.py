"""Kafka helpers for the harness: create and delete bench topics, watch a topic fill up."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, TopicPartition
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


class Watch:
    """Polls the high watermarks of one or more topics: how many records Kafka has acknowledged, summed."""

    def __init__(self, bootstrap: str, topic: str, *more: str):
        self.topic = topic
        self.topics = [topic, *more]
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"bench-watch-{uuid.uuid4()}", "enable.auto.commit": False}
        )

    def count(self) -> int:
        return sum(self._count(topic) for topic in self.topics)

    def _count(self, topic: str) -> int:
        metadata = self._consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return 0
        total = 0
        for partition in metadata.partitions:
            _low, high = self._consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            total += max(0, high)
        return total

    def until(self, target: int, *, timeout: float, above: int = 0, interval: float = 0.1) -> tuple[float, float]:
        """Wait until the count reaches ``target``; returns (monotonic time the count first passed ``above``, time done)."""
        deadline = time.monotonic() + timeout
        first: float | None = None
        while True:
            now = time.monotonic()
            seen = self.count()
            if first is None and seen > above:
                first = now
            if seen >= target:
                return (first if first is not None else now), now
            if now > deadline:
                raise TimeoutError(f"{self.topic}: {seen} of {target} records after {timeout:.0f}s")
            time.sleep(interval)

    def close(self) -> None:
        self._consumer.close()
