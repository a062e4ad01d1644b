"""Canonical change events: what every reader produces and every later stage consumes.

A reader yields batches; a batch carries its events and the position that
covers them, so the publisher can commit both in one Kafka transaction.
Events use ``__slots__`` and plain dicts for rows: one small object per change,
nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

# Debezium operation codes.
CREATE, UPDATE, DELETE, READ, TRUNCATE, MESSAGE = "c", "u", "d", "r", "t", "m"

Row = dict[str, Any]


@dataclass(slots=True)
class ChangeEvent:
    """One change to one row, in the stream's public column names."""

    op: str
    key: Row
    before: Row | None
    after: Row | None
    ts_ms: int
    """When the change happened at the source (updated_at or commit time), in epoch ms."""
    source: dict[str, Any] = field(default_factory=dict)
    """Pattern-specific source fields: snapshot flag, lsn, txId, binlog file/pos."""
    problems: list[str] | None = None
    """``"column <name>: <reason>"`` for each value that cannot be carried; the writer quarantines the row.
    The row holds the value's source text (or None) in that column, so the quarantine shows it."""

    @property
    def row(self) -> Row | None:
        """The image a contract validates: the after-image, or the before-image of a delete."""
        return self.after if self.after is not None else self.before


@dataclass(frozen=True, slots=True)
class Position:
    """Where a reader stands, stored in Kafka with the events it covers."""

    key: str
    value: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Position":
        return cls(key=data["key"], value=data["value"])


@dataclass(slots=True)
class ChangeBatch:
    """Events that are published atomically, together with their position."""

    events: list[ChangeEvent]
    position: Position | None
    extra_positions: list[Position] = field(default_factory=list)
    """More positions to store in the same transaction (for example a CDC source's streams)."""


@dataclass(frozen=True)
class StreamIdentity:
    """What a stream's envelope says about where its events come from."""

    name: str
    topic: str
    pattern: str
    db: str
    db_schema: str | None
    table: str
    schema_version: int = 1
    timezone: str = "UTC"

    def source_base(self) -> dict[str, Any]:
        return {
            "version": "liberation-0.1",
            "connector": "liberation",
            "name": self.name,
            "db": self.db,
            "schema": self.db_schema,
            "table": self.table,
        }

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            ("liberation.stream", self.name.encode()),
            ("liberation.pattern", self.pattern.encode()),
            ("liberation.schema.version", str(self.schema_version).encode()),
        ]

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
