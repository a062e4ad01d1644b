"""Create compacted topics with their configured partitions and replication, sized for large rows.

A record (key + value + headers) may be up to ``MAX_RECORD_BYTES`` (8 MiB).
The writer checks every record against it before producing and quarantines a
larger row, so the broker never aborts a transaction for size.  The topics
accept ``TOPIC_MAX_MESSAGE_BYTES`` (the limit plus room for the record batch's
framing) and the producer's requests are sized the same way (``publisher``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from liberation_assets.core.drivers import kafka_logger
from liberation_assets.core.errors import ConnectivityError, PublishError

MAX_RECORD_BYTES = 8 * 1024 * 1024
"""The largest record liberation produces; a row whose record is larger goes to the quarantine."""
RECORD_FRAMING_BYTES = 64 * 1024
"""Room above the limit for the record batch header, the record's own framing and compression's worst case."""
TOPIC_MAX_MESSAGE_BYTES = MAX_RECORD_BYTES + RECORD_FRAMING_BYTES
"""``max.message.bytes`` of every topic liberation creates, and the producer's ``message.max.bytes``."""


def sized(config: dict[str, str]) -> dict[str, str]:
    """A topic config that accepts records up to the limit (an explicit setting wins)."""
    return {"max.message.bytes": str(TOPIC_MAX_MESSAGE_BYTES), **config}


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int = 1
    replication_factor: int = 1
    config: dict[str, str] = field(default_factory=lambda: {"cleanup.policy": "compact"})


def admin_client(bootstrap_servers: str) -> AdminClient:
    config: dict[str, Any] = {
        "logger": kafka_logger(),
        "bootstrap.servers": bootstrap_servers,
        "socket.timeout.ms": 10000,
    }
    return AdminClient(config)


def check_broker(bootstrap_servers: str, timeout: float = 5.0) -> None:
    """Fail with a clear error when no broker answers."""
    admin = admin_client(bootstrap_servers)
    try:
        admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise ConnectivityError(
            f"Kafka broker at {bootstrap_servers} is unreachable ({exc.args[0].str() if exc.args else exc}); "
            "is it running? Try `liberation stack up`."
        ) from None
    finally:
        admin.poll(0)  # hand librdkafka's queued log lines to the logger (a log file, or --verbose)


def _unready(metadata: Any, names: set[str]) -> set[str]:
    """The topics a reader could not use yet: unknown to the broker, or a partition without a leader."""
    unready = set()
    for name in names:
        topic = metadata.topics.get(name)
        if (
            topic is None
            or topic.error is not None
            or not topic.partitions
            or any(p.leader < 0 or p.error is not None for p in topic.partitions.values())
        ):
            unready.add(name)
    return unready


def ensure_topics(bootstrap_servers: str, topics: list[TopicSpec], timeout: float = 30.0) -> None:
    """Create the topics that do not exist yet, and return once every one of them is ready to read.

    A topic is created by the controller; the broker a reader asks learns of it,
    and of its partitions' leaders, a moment later.  Until then a reader gets
    "Unknown topic or partition", so a reader that starts right after the
    creation (a snapshot step reading the schema history another step has just
    created) must not start before the metadata shows the topic with a leader
    for every partition.  Existing topics are left as they are (but also waited for:
    another process may have created them a moment ago).
    """
    admin = admin_client(bootstrap_servers)
    wanted = {t.name: t for t in topics}
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise ConnectivityError(f"Kafka broker at {bootstrap_servers} is unreachable: {exc}") from None
    missing = [t for t in wanted.values() if t.name not in metadata.topics]
    if missing:
        _create(admin, missing, timeout)
    elif not _unready(metadata, set(wanted)):
        return
    _wait_ready(admin, set(wanted), timeout)


def _wait_ready(admin: AdminClient, names: set[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            unready = _unready(admin.list_topics(timeout=timeout), names)
        except KafkaException as exc:
            raise ConnectivityError(f"Kafka broker is unreachable: {exc}") from None
        if not unready:
            return
        if time.monotonic() > deadline:
            raise ConnectivityError(
                f"topics {', '.join(sorted(unready))} were created but have no leader after {timeout:.0f}s"
            )
        time.sleep(0.05)


def _create(admin: AdminClient, missing: list[TopicSpec], timeout: float) -> None:
    futures = admin.create_topics(
        [
            NewTopic(
                t.name, num_partitions=t.partitions, replication_factor=t.replication_factor, config=sized(t.config)
            )
            for t in missing
        ],
        operation_timeout=timeout,
    )
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == 36:  # TOPIC_ALREADY_EXISTS: another process won the race
                continue
            raise PublishError(f"cannot create topic {name}: {exc}") from None
