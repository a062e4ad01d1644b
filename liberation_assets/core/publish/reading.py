"""Read a topic to its end as a read_committed consumer sees it: the one loop every reader of our topics shares."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from liberation_assets.core.errors import ConnectivityError


def committed_batches(bootstrap_servers: str, topic: str, *, batch_size: int = 5000) -> Iterator[list[Message]]:
    """Batches of every committed record, from the beginning to the end (the last stable offset) as of the read.

    Each partition ends at its end-of-partition event, which a read_committed
    consumer gets at the last stable offset, so transaction markers and aborted
    records never leave the loop waiting.
    """
    consumer = Consumer({
        "bootstrap.servers": bootstrap_servers,
        "group.id": f"liberation-reader-{uuid.uuid4()}",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "fetch.wait.max.ms": 10,  # we read to the end once: do not let the broker hold fetches
    })
    try:
        try:
            metadata = consumer.list_topics(topic, timeout=10)
        except KafkaException as exc:
            raise ConnectivityError(f"cannot read {topic}: {exc}") from None
        if metadata.topics[topic].error is not None:
            raise ConnectivityError(f"cannot read {topic}: {metadata.topics[topic].error.str()}")
        partitions = list(metadata.topics[topic].partitions)
        remaining = {p for p in partitions if consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] > 0}
        if not remaining:
            return
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        while remaining:
            batch = []
            for msg in consumer.consume(batch_size, timeout=0.1):
                error = msg.error()
                if error is None:
                    batch.append(msg)
                elif error.code() == KafkaError._PARTITION_EOF:
                    remaining.discard(msg.partition())
                else:
                    raise ConnectivityError(f"reading {topic}: {error.str()}")
            if batch:
                yield batch
    finally:
        consumer.close()
