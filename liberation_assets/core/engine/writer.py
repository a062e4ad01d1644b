"""Write batches of one stream: validate, serialize, publish with the position, in one transaction.

A poison row is a row problem, never a batch problem: an event whose values
could not be converted (``ChangeEvent.problems``), whose values the serializer
refuses, or whose record exceeds ``MAX_RECORD_BYTES`` goes to the quarantine
with its reason naming the column, in the same transaction as the rest of the
batch, and the stream goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from liberation_assets.core.contract.formats import DebeziumFormat, ValueFormat
from liberation_assets.core.contract.quarantine import quarantine_record, quarantine_topic
from liberation_assets.core.contract.serialize import dumps, now_ms
from liberation_assets.core.contract.validate import ContractValidator
from liberation_assets.core.errors import ContractViolation, SerializationError
from liberation_assets.core.events import DELETE, ChangeBatch, ChangeEvent, Row, StreamIdentity
from liberation_assets.core.publish.positions import position_record
from liberation_assets.core.publish.publisher import OutRecord, TransactionalPublisher
from liberation_assets.core.publish.topics import MAX_RECORD_BYTES


def lag_metadata(last_event_ms: int | None, max_publish_lag_ms: int | None) -> dict[str, float]:
    """The two freshness lags every publishing asset reports (numbers, so the UI plots them):
    source event time to publish time, and last event to now."""
    data: dict[str, float] = {}
    if max_publish_lag_ms is not None:
        data["event_to_publish_lag_seconds"] = round(max_publish_lag_ms / 1000, 3)
    if last_event_ms is not None:
        data["last_event_age_seconds"] = round(max(0, now_ms() - last_event_ms) / 1000, 3)
    return data


def record_size(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | None) -> int:
    """What a record weighs against the limit: key, value and headers."""
    return len(key or b"") + len(value or b"") + sum(len(name) + len(data) for name, data in headers or [])


def unserializable_reason(event: ChangeEvent) -> str:
    """``column <name>: <why>`` for the first value of the row the serializer refuses."""
    for image in (event.key, event.after, event.before):
        for name, value in (image or {}).items():
            try:
                dumps(value)
            except SerializationError as exc:
                return f"column {name}: cannot be serialized: {exc}"
    return "row: cannot be serialized"


def _largest_column(row: Row | None) -> tuple[str | None, int]:
    sizes = [(len(dumps(value)), name) for name, value in (row or {}).items()]
    if not sizes:
        return None, 0
    size, name = max(sizes)
    return name, size


def oversize_reason(event: ChangeEvent, size: int) -> str:
    """``column <largest>: record too large (value N bytes, limit L bytes)``: the column is the one to look at."""
    name, column_bytes = _largest_column(event.after if event.after is not None else event.before)
    where = f"column {name}" if name is not None else "row"
    return (
        f"{where}: record too large (value {size} bytes, limit {MAX_RECORD_BYTES} bytes; "
        f"the column alone is {column_bytes} bytes)"
    )


@dataclass
class WriteResult:
    """What one or more batches did; numbers only, so Dagster can plot them."""

    published: int = 0
    deletes: int = 0
    quarantined: int = 0
    transactions: int = 0
    last_event_ms: int | None = None
    max_publish_lag_ms: int = 0
    quarantine_samples: list[dict[str, Any]] = field(default_factory=list)

    def lag_metadata(self) -> dict[str, float]:
        return lag_metadata(self.last_event_ms, self.max_publish_lag_ms if self.last_event_ms is not None else None)

    def add(self, other: "WriteResult") -> None:
        self.published += other.published
        self.deletes += other.deletes
        self.quarantined += other.quarantined
        self.transactions += other.transactions
        if other.last_event_ms is not None:
            self.last_event_ms = max(self.last_event_ms or 0, other.last_event_ms)
        self.max_publish_lag_ms = max(self.max_publish_lag_ms, other.max_publish_lag_ms)
        self.quarantine_samples = (self.quarantine_samples + other.quarantine_samples)[:5]


class StreamWriter:
    """contract → serializer → publisher for one stream, one Kafka transaction per batch."""

    def __init__(
        self,
        identity: StreamIdentity,
        publisher: TransactionalPublisher,
        positions_topic: str,
        validator: ContractValidator,
        *,
        halt_on_violation: bool = False,
        value_format: ValueFormat | None = None,
    ):
        self.identity = identity
        self.publisher = publisher
        self.positions_topic = positions_topic
        self.validator = validator
        self.halt_on_violation = halt_on_violation
        self._source_base = identity.source_base()
        self._headers = identity.headers()
        self.value_format: ValueFormat = value_format or DebeziumFormat(identity.pattern)
        """Key and value bytes of the stream's format (core/contract/formats.py)."""

    def use_schema_version(self, version: int, value_format: ValueFormat | None = None) -> None:
        """A schema change while streaming: the events that follow carry the new version in their header
        (and, in a format that carries the schema, the new schema)."""
        self.identity = replace(self.identity, schema_version=version)
        self._headers = self.identity.headers()
        if value_format is not None:
            self.value_format = value_format

    def records(self, batch: ChangeBatch, *, unique_key: bool = False) -> tuple[list[OutRecord], WriteResult]:
        events = batch.events
        poisoned: list[tuple[ChangeEvent, list[str]]] = []
        if any(event.problems for event in events):
            poisoned = [(event, event.problems) for event in events if event.problems]
            events = [event for event in events if not event.problems]
        verdict = self.validator.validate(events, unique_key=unique_key)
        result = WriteResult()
        position = batch.position.value if batch.position else None
        if (verdict.rejected or poisoned) and self.halt_on_violation:
            first, reasons = (poisoned or verdict.rejected)[0]
            raise ContractViolation(
                f"stream {self.identity.name}: {len(verdict.rejected) + len(poisoned)} row(s) violate the contract, "
                f"first key {first.key}: {'; '.join(reasons)}"
            )
        topic, headers, source_base = self.identity.topic, self._headers, self._source_base
        processed = now_ms()
        out: list[OutRecord] = []
        append = out.append
        published: list[ChangeEvent] = []
        key_of, value_of = self.value_format.key, self.value_format.value
        headers_size = record_size(None, None, headers)  # the same headers on every record of the batch
        for event in verdict.valid:
            try:
                key = key_of(event.key)
                value = value_of(event, source_base, processed)
            except SerializationError as exc:
                said = str(exc)  # a format names the column itself (connect-json); else find it
                poisoned.append((event, [said if said.startswith("column ") else unserializable_reason(event)]))
                continue
            size = len(key) + (len(value) if value is not None else 0) + headers_size
            if size > MAX_RECORD_BYTES:
                poisoned.append((event, [oversize_reason(event, size)]))
                continue
            published.append(event)
            if value is not None:  # the flat format carries a delete as its tombstone alone
                append((topic, key, value, event.ts_ms, headers))
            if event.op == DELETE:
                append((topic, key, None, event.ts_ms, headers))
                result.deletes += 1
        if poisoned and self.halt_on_violation:
            first, reasons = poisoned[0]
            raise ContractViolation(
                f"stream {self.identity.name}: row with key {first.key} cannot be published: {'; '.join(reasons)}"
            )
        result.published = len(published)
        if published:
            result.last_event_ms = max(e.ts_ms for e in published)
            result.max_publish_lag_ms = max(0, processed - min(e.ts_ms for e in published))
        if verdict.rejected or poisoned:
            q_topic = quarantine_topic(topic)
            for event, reasons in poisoned:
                append(quarantine_record(q_topic, self.identity, event, reasons, position, processed, poison=True))
            for event, reasons in verdict.rejected:
                append(quarantine_record(q_topic, self.identity, event, reasons, position, processed))
            result.quarantined = len(verdict.rejected) + len(poisoned)
            result.quarantine_samples = [
                {"stream": self.identity.name, "key": e.key, "reasons": r} for e, r in (poisoned + verdict.rejected)[:5]
            ]
        for pos in ([batch.position] if batch.position else []) + batch.extra_positions:
            append(position_record(self.positions_topic, pos))
        return out, result

    def write(self, batch: ChangeBatch, *, unique_key: bool = False) -> WriteResult:
        out, result = self.records(batch, unique_key=unique_key)
        if out:
            self.publisher.publish(out)
            result.transactions = 1
        return result
