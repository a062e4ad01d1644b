"""Re-drive a stream's quarantine after its contract or its data was fixed.

Quarantined records are read in offset order (per partition, so per key) from
the re-drive cursor to the end of the topic as of the start, and each is

- *superseded* when the topic already holds a version of its key at least as
  new (the source was fixed and the pattern republished the row, or it was
  deleted since): republishing the old image would roll the key back;
- otherwise validated again against the *current* contract: rows that pass
  are republished (their envelope's ``source.redrive`` names the quarantine
  record), rows that still fail are quarantined again as new records with
  their current reasons.

Each batch's republished rows, re-quarantined rows and the advanced cursor
commit in ONE Kafka transaction, so a re-drive that crashes resumes after its
last batch and never publishes a row twice.  Streams with the query pattern
re-drive under the poll's transactional id, which fences a concurrent poll
the way reconciliation does.  The compatibility gate applies as for any
publish.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass

import orjson
from confluent_kafka import Consumer, KafkaError, TopicPartition

from liberation_assets.core.contract.formats import canonical_key
from liberation_assets.core.contract.quarantine import (
    QuarantinedRow,
    quarantine_record,
    quarantine_topic,
    read_range,
    redrive_position_key,
)
from liberation_assets.core.contract.serialize import dumps, now_ms
from liberation_assets.core.contract.validate import UNIQUE_KEY_CHECK, ContractValidator
from liberation_assets.core.drivers import kafka_logger
from liberation_assets.core.engine.runtime import StreamRuntime
from liberation_assets.core.engine.writer import StreamWriter
from liberation_assets.core.events import ChangeBatch, Position
from liberation_assets.core.publish.reading import END_POLL_SECONDS, settled_watermarks
from liberation_assets.core.spec import Spec


@dataclass
class RedriveSummary:
    """What one re-drive did; ``republished + superseded + requarantined == examined``."""

    examined: int = 0
    republished: int = 0
    superseded: int = 0
    requarantined: int = 0
    transactions: int = 0

    def metadata(self) -> dict[str, int]:
        return dict(self.__dict__)


def redrive(spec: Spec, stream_name: str, *, batch_size: int | None = None) -> RedriveSummary:
    stream = spec.streams[stream_name]
    runtime = StreamRuntime(spec, stream_name, "query" if "query" in stream.patterns else "redrive")
    try:
        return _redrive(runtime, batch_size or stream.batch_size)
    finally:
        runtime.close()


def _redrive(runtime: StreamRuntime, batch_size: int) -> RedriveSummary:
    name, topic, bootstrap = runtime.name, runtime.topic, runtime.bootstrap
    key = redrive_position_key(name)
    stored = runtime.positions_for(key) or {}  # builds the writer: fences a concurrent poll, passes the gate
    cursor = {int(p): int(o) for p, o in (stored.get("offsets") or {}).items()}
    before = {k: int(stored.get(k, 0)) for k in ("republished", "superseded", "requarantined")}
    validator = ContractValidator(runtime.stream.contract, runtime.stream.key)
    kinds = {name: rule.kind for name, rule in validator.contract.rules.items()} if validator.contract else {}
    writer = StreamWriter(
        runtime.identity,
        runtime.publisher,
        runtime.positions.topic,
        validator,
        halt_on_violation=False,
        value_format=runtime.value_format,
    )
    q_topic = quarantine_topic(topic)
    keys = {row.key for rows in read_range(bootstrap, q_topic, cursor, batch_size) for row in rows}
    newest = published_event_times(bootstrap, topic, keys) if keys else {}
    summary = RedriveSummary()
    for rows in read_range(bootstrap, q_topic, cursor, batch_size):
        live: list[QuarantinedRow] = []
        poison: list[QuarantinedRow] = []
        for row in rows:
            cursor[row.partition] = row.offset + 1
            if newest.get(row.key, -1) >= int(row.value["event_ts_ms"]):
                summary.superseded += 1
            elif row.poison:
                poison.append(row)
            else:
                live.append(row)
        duplicates, candidates = _still_duplicated(live)
        events = [
            row.event(kinds, {"redrive": {"partition": row.partition, "offset": row.offset}}) for row in candidates
        ]
        out, result = writer.records(ChangeBatch(events, None))
        processed = now_ms()
        for row in duplicates:
            reasons = [r for r in row.value.get("failed_checks") or [] if UNIQUE_KEY_CHECK in r]
            event = row.event(kinds, {"redrive": {"partition": row.partition, "offset": row.offset}})
            out.append(quarantine_record(q_topic, runtime.identity, event, reasons, None, processed))
        for row in poison:
            again = {
                **row.value,
                "quarantined_ts_ms": processed,
                "redrive": {"partition": row.partition, "offset": row.offset},
            }
            out.append((q_topic, row.key, dumps(again), int(row.value["event_ts_ms"]), runtime.identity.headers()))
        summary.examined += len(rows)
        summary.republished += result.published
        summary.requarantined += result.quarantined + len(duplicates) + len(poison)
        position = {
            "offsets": {str(p): o for p, o in sorted(cursor.items())},
            **{k: before[k] + getattr(summary, k) for k in before},
        }
        out.append(runtime.positions.record(Position(key, position)))
        runtime.publisher.publish(out)
        summary.transactions += 1
        for event in events:
            event_key = dumps(event.key)
            newest[event_key] = max(newest.get(event_key, -1), event.ts_ms)
    return summary


def _still_duplicated(rows: list[QuarantinedRow]) -> tuple[list[QuarantinedRow], list[QuarantinedRow]]:
    """Rows quarantined as duplicate keys stay so while another row of their original batch has the same key."""

    def group(row: QuarantinedRow) -> tuple[bytes, bytes]:
        return row.key, orjson.dumps(row.value.get("position"), option=orjson.OPT_SORT_KEYS)

    flagged = [r for r in rows if any(check.endswith(UNIQUE_KEY_CHECK) for check in r.checks)]
    sizes = Counter(group(r) for r in flagged)
    duplicates = [r for r in flagged if sizes[group(r)] > 1]
    chosen = {id(r) for r in duplicates}
    return duplicates, [r for r in rows if id(r) not in chosen]


def published_event_times(bootstrap_servers: str, topic: str, keys: set[bytes]) -> dict[bytes, int]:
    """Key → newest event time (``source.ts_ms``) the topic holds for it, deletes included; only for ``keys``."""
    consumer = Consumer(
        {
            "logger": kafka_logger(),
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"liberation-redrive-{uuid.uuid4()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    newest: dict[bytes, int] = {}
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = list(metadata.topics[topic].partitions)
        remaining = {
            p for p, (_low, end) in settled_watermarks(bootstrap_servers, topic, partitions).items() if end > 0
        }
        consumer.assign([TopicPartition(topic, p, 0) for p in remaining])
        while remaining:
            for msg in consumer.consume(10_000, timeout=END_POLL_SECONDS):
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        remaining.discard(msg.partition())
                    continue
                key = canonical_key(msg.key())  # every format: the Kafka timestamp is the event time
                if key not in keys:
                    continue
                ts = int(msg.timestamp()[1])
                if ts > newest.get(key, -1):
                    newest[key] = ts
    finally:
        consumer.close()
    return newest
