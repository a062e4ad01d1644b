"""After a snapshot: find keys still live in a topic that the snapshot did not find in the source.

A re-snapshot (after a lost position) republishes every row, but rows deleted
while liberation could not read the log would stay live in the compacted
topic forever.  The snapshot records the topic's end offsets before it starts;
afterwards every live key whose latest record is older than those offsets was
not re-read, so it is gone from the source and gets a delete and a tombstone.
Memory holds one small entry per key, never the values.
"""

from __future__ import annotations

import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from liberation_assets.core.contract.formats import decode_value
from liberation_assets.core.drivers import kafka_logger
from liberation_assets.core.errors import ConnectivityError
from liberation_assets.core.publish.reading import END_POLL_SECONDS, settled_watermarks


def _consumer(bootstrap_servers: str) -> Consumer:
    return Consumer(
        {
            "logger": kafka_logger(),
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"liberation-reconcile-{uuid.uuid4()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )


def end_offsets(bootstrap_servers: str, topic: str) -> dict[int, int]:
    """Partition → end offset now."""
    consumer = _consumer(bootstrap_servers)
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = metadata.topics[topic].partitions
        return {p: end for p, (_low, end) in settled_watermarks(bootstrap_servers, topic, partitions).items()}
    finally:
        consumer.close()


def unseen_live_keys(bootstrap_servers: str, topic: str, before: dict[int, int]) -> list[bytes]:
    """Keys that are live in the topic and whose latest record sits below ``before`` in its partition."""
    if not any(before.values()):
        return []
    latest: dict[bytes, tuple[int, int, bool]] = {}
    consumer = _consumer(bootstrap_servers)
    try:
        partitions = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        remaining = {
            p for p, (_low, end) in settled_watermarks(bootstrap_servers, topic, partitions).items() if end > 0
        }
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        while remaining:
            for message in consumer.consume(5000, timeout=END_POLL_SECONDS):
                error = message.error()
                if error:
                    if error.code() == KafkaError._PARTITION_EOF:
                        remaining.discard(message.partition())
                        continue
                    raise ConnectivityError(f"reading {topic}: {error.str()}")
                value = message.value()
                live = (decoded := decode_value(value)) is not None and decoded.get("op") != "d"
                latest[message.key() or b""] = (message.partition() or 0, message.offset() or 0, live)
    finally:
        consumer.close()
    return [key for key, (partition, offset, live) in latest.items() if live and offset < before.get(partition, 0)]
