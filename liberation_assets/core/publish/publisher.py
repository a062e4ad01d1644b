"""A transactional Kafka producer: a batch's events and its position commit together.

One producer per stream or source, with a stable ``transactional.id``, so that
``init_transactions()`` fences a zombie left by a crashed run and aborts its
open transaction.  Records are produced asynchronously without a delivery
callback: ``commit_transaction`` flushes them and fails the transaction if
any of them failed permanently (librdkafka's rd_kafka_commit_transaction:
"If any of the outstanding messages fail permanently the current transaction
will enter the abortable error state and this function will return an
abortable error"; ``test_publisher.py`` pins it), so a per-record callback
(0.7 µs each, issue 18) would only repeat what the commit says.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaException, Producer

from liberation_assets.core.drivers import kafka_logger
from liberation_assets.core.errors import PublishError
from liberation_assets.core.publish.topics import TOPIC_MAX_MESSAGE_BYTES

Header = tuple[str, bytes]
OutRecord = tuple[str, bytes | None, bytes | None, int | None, list[Header] | None]
"""(topic, key, value, timestamp_ms, headers).  A value of None is a tombstone."""

BATCH_GC_THRESHOLD = 50_000


def relax_gc_for_batches() -> None:
    """Let the cyclic GC run per ~50k new objects instead of per 700 (once per process).

    A batch allocates tens of thousands of short-lived objects (events, rows,
    records).  At Python's default threshold the collector runs a dozen times
    per batch and walks every survivor each time: a quarter of a snapshot's
    time (bench/, BENCHMARKS.md).  None of these objects form cycles, so
    collecting less often costs no memory.  An application that raised the
    threshold itself, or turned collection off (0), keeps its setting.
    """
    first, *rest = gc.get_threshold()
    if 0 < first <= 2000:
        gc.set_threshold(BATCH_GC_THRESHOLD, *rest)


class TransactionalPublisher:
    """Publishes batches of records atomically, exactly once into Kafka."""

    def __init__(self, bootstrap_servers: str, transactional_id: str, overrides: dict[str, Any] | None = None):
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            "transactional.id": transactional_id,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 500_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "transaction.timeout.ms": 120_000,
            # Requests as large as the topics accept (topics.MAX_RECORD_BYTES): a record
            # larger than batch.size goes in a batch of its own.
            "message.max.bytes": TOPIC_MAX_MESSAGE_BYTES,
        }
        config.update(overrides or {})
        relax_gc_for_batches()
        self.transactional_id = transactional_id
        self._producer = Producer({"logger": kafka_logger(), **config})
        try:
            self._producer.init_transactions(30)
        except KafkaException as exc:
            raise PublishError(
                f"cannot start transactional producer {transactional_id!r} on {bootstrap_servers}: {exc.args[0].str()}"
            ) from None

    def publish(self, records: Iterable[OutRecord]) -> int:
        """Produce every record in one transaction and commit; on any error, abort and raise."""
        producer = self._producer
        count = 0
        try:
            producer.begin_transaction()
            produce = producer.produce
            for topic, key, value, timestamp, headers in records:
                while True:
                    try:
                        produce(topic, value, key, timestamp=timestamp or 0, headers=headers)  # type: ignore[arg-type]
                        break
                    except BufferError:
                        producer.poll(0.05)  # local queue full: let librdkafka drain it
                count += 1
                if count % 10_000 == 0:
                    producer.poll(0)
            producer.commit_transaction(120)
        except KafkaException as exc:
            self._abort()
            raise PublishError(f"transaction of {self.transactional_id!r} failed: {exc.args[0].str()}") from None
        except BaseException:
            self._abort()
            raise
        return count

    def _abort(self) -> None:
        try:
            self._producer.abort_transaction(30)
        except KafkaException:
            pass  # the broker aborts it on timeout, or the next init_transactions fences it

    def close(self) -> None:
        self._producer.flush(10)
