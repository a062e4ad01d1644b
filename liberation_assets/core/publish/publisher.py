"""A transactional Kafka producer: a batch's events and its position commit together.

One producer per stream or source, with a stable ``transactional.id``, so that
``init_transactions()`` fences a zombie left by a crashed run and aborts its
open transaction.  Records are produced asynchronously with a delivery
callback; ``commit_transaction`` flushes them, so the callback only collects
the first error.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

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
        self._error: KafkaError | None = None
        self.delivered = 0
        try:
            self._producer.init_transactions(30)
        except KafkaException as exc:
            raise PublishError(
                f"cannot start transactional producer {transactional_id!r} on {bootstrap_servers}: {exc.args[0].str()}"
            ) from None

    def _on_delivery(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            if self._error is None:
                self._error = err
        else:
            self.delivered += 1

    def publish(self, records: Iterable[OutRecord]) -> int:
        """Produce every record in one transaction and commit; on any error, abort and raise."""
        producer = self._producer
        self._error = None
        count = 0
        try:
            producer.begin_transaction()
            produce, on_delivery = producer.produce, self._on_delivery
            for topic, key, value, timestamp, headers in records:
                while True:
                    try:
                        produce(topic, value, key, timestamp=timestamp or 0, headers=headers, on_delivery=on_delivery)  # type: ignore[arg-type]
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
        if self._error is not None:
            raise PublishError(f"delivery failed for {self.transactional_id!r}: {self._error.str()}")
        return count

    def _abort(self) -> None:
        try:
            self._producer.abort_transaction(30)
        except KafkaException:
            pass  # the broker aborts it on timeout, or the next init_transactions fences it

    def close(self) -> None:
        self._producer.flush(10)
