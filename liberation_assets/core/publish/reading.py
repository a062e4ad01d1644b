"""Read a topic to its end as a read_committed consumer sees it: the one loop every reader of our topics shares."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from liberation_assets.core.drivers import kafka_logger
from liberation_assets.core.errors import ConnectivityError

SETTLE_SECONDS = 5.0
NEW_TOPIC_SECONDS = 30.0
"""How long a reader waits for a topic the broker does not know yet to appear (or a partition without a leader to get
one), before it says it cannot read it. A topic another process has just created is unknown to the broker for a
moment (its metadata propagates), and a restarted broker elects its partitions' leaders again."""
END_POLL_SECONDS = 0.02
"""The timeout of each ``consume()`` of a read to the end. librdkafka's consume waits for the full timeout unless the
whole batch is there, so with a longer one every read of a small topic (positions, schemas, a verify) waits that long
after its end-of-partition events have arrived."""
_NOT_YET = (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.NOT_LEADER_FOR_PARTITION)


def _partitions(consumer: Consumer, topic: str) -> list[int]:
    """The topic's partitions, waiting ``NEW_TOPIC_SECONDS`` for a topic that is unknown (just created) or leaderless."""
    deadline = time.monotonic() + NEW_TOPIC_SECONDS
    while True:
        try:
            metadata = consumer.list_topics(topic, timeout=10)
        except KafkaException as exc:
            raise ConnectivityError(f"cannot read {topic}: {exc}") from None
        found = metadata.topics.get(topic)
        error = found.error if found is not None else None
        leaderless = found is not None and any(p.leader < 0 for p in found.partitions.values())
        if found is not None and error is None and found.partitions and not leaderless:
            return list(found.partitions)
        if (error is not None and error.code() not in _NOT_YET) or time.monotonic() > deadline:
            raise ConnectivityError(f"cannot read {topic}: {error.str() if error is not None else 'no leader'}")
        time.sleep(0.1)


def settled_watermarks(
    bootstrap_servers: str,
    topic: str,
    partitions: Iterable[int],
    settle_seconds: float = SETTLE_SECONDS,
    *,
    must_settle: bool = False,
) -> dict[int, tuple[int, int]]:
    """Partition → (low, end) for a read_committed reader, counting every transaction committed before the call.

    A producer's commit returns once the coordinator has logged it; the commit
    markers reach the partitions a moment later, and until then the last stable
    offset still stops short of those records.  So a reader that starts right
    after a commit, such as a verify after a snapshot, would miss them.  We wait
    until the stable end reaches the log end as of the call.  A transaction that
    is really still open is waited for at most ``settle_seconds``: its records
    were not committed when the read began, so leaving them out is right.

    ``must_settle`` is for a caller that knows no writer of its own is open, so
    an open transaction can only be a killed writer's: Kafka normally aborts it
    when the writer's successor starts, but 4.1 was seen to keep one open until
    ``transaction.timeout.ms``.  Records committed behind it must not be missed,
    so the wait then ends with an error rather than a short read.
    """

    def consumer(isolation: str) -> Consumer:
        return Consumer(
            {
                "logger": kafka_logger(),
                "bootstrap.servers": bootstrap_servers,
                "group.id": f"liberation-ends-{uuid.uuid4()}",
                "isolation.level": isolation,
                "enable.auto.commit": False,
            }
        )

    committed, uncommitted = consumer("read_committed"), consumer("read_uncommitted")
    try:
        wanted = [TopicPartition(topic, p) for p in partitions]
        written = {tp.partition: _end_offset(uncommitted, tp) for tp in wanted}
        deadline = time.monotonic() + settle_seconds
        while True:
            stable = {tp.partition: committed.get_watermark_offsets(tp, timeout=10, cached=False) for tp in wanted}
            if all(stable[p][1] >= end for p, end in written.items()):
                return stable
            if time.monotonic() > deadline:
                if must_settle:
                    raise ConnectivityError(
                        f"{topic}: an open transaction still hides records from read_committed "
                        f"readers after {settle_seconds:.0f}s"
                    )
                return stable
            time.sleep(0.05)
    except KafkaException as exc:
        raise ConnectivityError(f"cannot read {topic}: {exc}") from None
    finally:
        committed.close()
        uncommitted.close()


def _end_offset(consumer: Consumer, partition: TopicPartition) -> int:
    """The log end, retried while the broker has not learnt of a just-created partition yet."""
    deadline = time.monotonic() + NEW_TOPIC_SECONDS
    while True:
        try:
            return int(consumer.get_watermark_offsets(partition, timeout=10, cached=False)[1])
        except KafkaException as exc:
            if not exc.args or exc.args[0].code() not in _NOT_YET or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def committed_batches(
    bootstrap_servers: str,
    topic: str,
    *,
    batch_size: int = 5000,
    settle_seconds: float = SETTLE_SECONDS,
    must_settle: bool = False,
) -> Iterator[list[Message]]:
    """Batches of every committed record, from the beginning to the end (the last stable offset) as of the read.

    Each partition ends at its end-of-partition event, which a read_committed
    consumer gets at the last stable offset, so transaction markers and aborted
    records never leave the loop waiting.  ``settle_seconds`` and ``must_settle``
    are passed to ``settled_watermarks``, which decides where the end is.
    """
    consumer = Consumer(
        {
            "logger": kafka_logger(),
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"liberation-reader-{uuid.uuid4()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 10,  # we read to the end once: do not let the broker hold fetches
        }
    )
    try:
        partitions = _partitions(consumer, topic)
        ends = settled_watermarks(bootstrap_servers, topic, partitions, settle_seconds, must_settle=must_settle)
        remaining = {p for p, (_low, end) in ends.items() if end > 0}
        if not remaining:
            return
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        while remaining:
            batch = []
            for msg in consumer.consume(batch_size, timeout=END_POLL_SECONDS):
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
