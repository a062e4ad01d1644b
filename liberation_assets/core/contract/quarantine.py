"""The quarantine: rows that failed their contract, kept in a dead-letter topic with their reasons.

Nothing is dropped: a rejected row is written, in the same transaction as the
valid rows and the position, to ``<topic>.quarantine`` with the row, the
failed checks and the source position, so it can be inspected and re-driven.

The re-drive (see ``redrive``) keeps a cursor per quarantine partition in the
positions topic: records below it are resolved (republished, superseded by a
newer published version, or quarantined again as a new record), records at or
above it are open.  ``summarize`` reads the topic and that cursor.

A *poison* row (``"poison": true`` in its record) failed before any contract
ran: a value its converter cannot carry exactly, a value the serializer
refuses, or a record larger than ``topics.MAX_RECORD_BYTES``.  Its reasons
name the column (``column <name>: <reason>``) and its ``row`` holds the
source's text of the value, or a summary of an oversized one, never the value
a consumer would have got.  So it is never re-driven as if valid: it stays
quarantined until the source row changes and the pattern publishes a new
version, which supersedes it.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from liberation_assets.core.contract.serialize import dumps, revive
from liberation_assets.core.contract.validate import check_of
from liberation_assets.core.drivers import kafka_logger
from liberation_assets.core.errors import ConnectivityError, SerializationError
from liberation_assets.core.events import ChangeEvent, Row, StreamIdentity
from liberation_assets.core.publish.reading import END_POLL_SECONDS, settled_watermarks
from liberation_assets.core.publish.topics import MAX_RECORD_BYTES

if TYPE_CHECKING:
    from liberation_assets.core.publish.publisher import OutRecord
    from liberation_assets.core.spec import Spec

QUARANTINE_SUFFIX = ".quarantine"
SUMMARY_HEAD_CHARS = 200
"""How much of an oversized value a quarantine record keeps."""
LARGE_VALUE_BYTES = 1024
"""Values above this are summarized when the quarantine record itself would exceed the record limit."""


def quarantine_topic(topic: str) -> str:
    return topic + QUARANTINE_SUFFIX


def redrive_position_key(stream: str) -> str:
    """Where the re-drive keeps its cursor; same layout as the patterns' position keys."""
    return f"stream/{stream}/redrive"


def quarantine_record(
    topic: str,
    identity: "StreamIdentity",
    event: ChangeEvent,
    reasons: list[str],
    position: dict[str, Any] | None,
    processed_ms: int,
    *,
    poison: bool = False,
) -> "OutRecord":
    """The quarantine record of one row; it always serializes and always fits in a record."""
    value: dict[str, Any] = {
        "stream": identity.name,
        "topic": identity.topic,
        "op": event.op,
        "key": event.key,
        "row": event.after,
        "before": event.before,
        "event_ts_ms": event.ts_ms,
        "source": event.source,
        "failed_checks": reasons,
        "columns": reason_columns(reasons),
        "position": position,
        "quarantined_ts_ms": processed_ms,
    }
    if poison:
        value["poison"] = True
    try:
        key = dumps(event.key)
    except SerializationError:
        key = dumps(printable_row(event.key))
        value["key"] = printable_row(event.key)
    try:
        document = dumps(value)
    except SerializationError:  # a value the serializer refuses: keep its text
        value["row"], value["before"] = printable_row(event.after), printable_row(event.before)
        document = dumps(value)
    if len(document) + len(key) > MAX_RECORD_BYTES - 4096:
        value["row"], value["before"] = summarized_row(value["row"]), summarized_row(value["before"])
        document = dumps(value)
    return (topic, key, document, event.ts_ms, identity.headers())


def reason_columns(reasons: list[str]) -> list[str]:
    """The columns named by ``column <name>: …`` reasons, in order, once each."""
    columns: dict[str, None] = {}
    for reason in reasons:
        if reason.startswith("column ") and ": " in reason:
            columns.setdefault(reason[len("column ") : reason.index(": ")], None)
    return list(columns)


def printable_row(row: Row | None) -> Row | None:
    """The row with each value the serializer refuses replaced by its ``repr``."""
    if row is None:
        return None
    out: Row = {}
    for name, value in row.items():
        try:
            dumps(value)
            out[name] = value
        except SerializationError:
            out[name] = repr(value)
    return out


def summarized_row(row: Row | None) -> Row | None:
    """The row with each large value replaced by its size and first characters: a record that fits, for people."""
    if row is None:
        return None
    out: Row = {}
    for name, value in row.items():
        text = dumps(value).decode(errors="replace")
        if len(text) > LARGE_VALUE_BYTES:
            out[name] = {"liberation.truncated_bytes": len(text), "head": text[:SUMMARY_HEAD_CHARS]}
        else:
            out[name] = value
    return out


@dataclass(frozen=True)
class QuarantinedRow:
    """One record of a quarantine topic."""

    partition: int
    offset: int
    key: bytes
    value: dict[str, Any]

    @property
    def poison(self) -> bool:
        """The row failed before its contract (conversion, serialization, size): never re-driven as valid."""
        return bool(self.value.get("poison"))

    @property
    def checks(self) -> list[str]:
        return [check_of(reason) for reason in self.value.get("failed_checks") or []]

    def event(self, kinds: dict[str, str], extra_source: dict[str, Any] | None = None) -> ChangeEvent:
        """The change event as it was before it was quarantined, its contract columns typed again.

        JSON turned decimals, times and bytes into strings; ``kinds`` (column → contract kind) turns them
        back, except in columns whose type check failed, whose raw value must fail again.
        """
        v = self.value
        source = dict(v.get("source") or {})
        source.update(extra_source or {})
        wrong_type = {r.split(":", 1)[0] for r in v.get("failed_checks") or [] if ": type:" in r}
        row = v.get("row")
        if row is not None:
            row = {k: revive(x, kinds[k]) if k in kinds and k not in wrong_type else x for k, x in row.items()}
        return ChangeEvent(v["op"], v["key"], v.get("before"), row, int(v["event_ts_ms"]), source)


def read_range(
    bootstrap_servers: str, topic: str, start: dict[int, int] | None = None, batch_size: int = 5000
) -> Iterator[list[QuarantinedRow]]:
    """Committed records from ``start`` (per partition, default the beginning) up to the end as of the call."""
    consumer = Consumer(
        {
            "logger": kafka_logger(),
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"liberation-quarantine-{uuid.uuid4()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        try:
            metadata = consumer.list_topics(topic, timeout=10)
        except KafkaException as exc:
            raise ConnectivityError(f"cannot read {topic}: {exc}") from None
        if metadata.topics[topic].error is not None:
            return
        stop: dict[int, int] = {}
        assignment = []
        for partition, (_low, high) in settled_watermarks(
            bootstrap_servers, topic, metadata.topics[topic].partitions
        ).items():
            first = (start or {}).get(partition, 0)
            if high > first:
                stop[partition] = high
                assignment.append(TopicPartition(topic, partition, max(first, _low)))
        if not assignment:
            return
        consumer.assign(assignment)
        while stop:
            rows: list[QuarantinedRow] = []
            for msg in consumer.consume(batch_size, timeout=END_POLL_SECONDS):
                partition, offset = int(msg.partition() or 0), int(msg.offset() or 0)
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        stop.pop(partition, None)
                        continue
                    raise ConnectivityError(f"reading {topic}: {error.str()}")
                if partition not in stop:
                    continue
                if offset >= stop[partition]:
                    del stop[partition]
                    continue
                rows.append(QuarantinedRow(partition, offset, msg.key() or b"", orjson.loads(msg.value() or b"null")))
                if offset + 1 >= stop[partition]:
                    del stop[partition]
            if rows:
                yield rows
            else:
                _drop_finished(consumer, stop)
    finally:
        consumer.close()


def _drop_finished(consumer: Consumer, stop: dict[int, int]) -> None:
    """Partitions whose end is a transaction marker never deliver their last offset: finish them by position."""
    for tp in consumer.position([TopicPartition(tp.topic, tp.partition) for tp in consumer.assignment()]):
        if tp.partition in stop and tp.offset >= stop[tp.partition]:
            del stop[tp.partition]


@dataclass
class QuarantineSummary:
    """What is in a stream's quarantine, and how much of it the re-drive has resolved."""

    stream: str
    topic: str
    total: int = 0
    open: int = 0
    republished: int = 0
    superseded: int = 0
    requarantined: int = 0
    by_check: Counter[str] = field(default_factory=Counter)
    """Open records per ``column: check``."""
    rows: list[QuarantinedRow] = field(default_factory=list)
    """The first open records, up to the requested limit."""

    def metadata(self) -> dict[str, int]:
        return {
            "quarantine_total": self.total,
            "quarantine_open": self.open,
            "redrive_republished": self.republished,
            "redrive_superseded": self.superseded,
            "redrive_requarantined": self.requarantined,
        }


def summarize(spec: "Spec", stream: str, *, list_rows: int = 0) -> QuarantineSummary:
    """Count a stream's quarantine by check; optionally keep the first ``list_rows`` open records."""
    from liberation_assets.core.publish.positions import PositionStore

    bootstrap = spec.kafka.resolved_bootstrap_servers()
    topic = quarantine_topic(spec.topic_for(stream))
    stored = PositionStore.for_spec(spec.kafka).get(redrive_position_key(stream)) or {}
    cursor = {int(p): int(o) for p, o in (stored.get("offsets") or {}).items()}
    summary = QuarantineSummary(
        stream,
        topic,
        republished=int(stored.get("republished", 0)),
        superseded=int(stored.get("superseded", 0)),
        requarantined=int(stored.get("requarantined", 0)),
    )
    for rows in read_range(bootstrap, topic):
        summary.total += len(rows)
        for row in rows:
            if row.offset < cursor.get(row.partition, 0):
                continue
            summary.open += 1
            summary.by_check.update(dict.fromkeys(row.checks, 1))
            if len(summary.rows) < list_rows:
                summary.rows.append(row)
    return summary
