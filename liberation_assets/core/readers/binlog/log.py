"""Neutral log items: what the I/O layer turns library events into, and all the pure layers see.

Keeping python-mysql-replication's event classes out of the decoder lets the
decoder be tested with plain values and keeps one place that knows the library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ColumnMeta:
    """One column as the binlog's table map describes it (with ``binlog_row_metadata=FULL``)."""

    name: str
    type: int
    """A ``pymysqlreplication.constants.FIELD_TYPE`` code."""
    unsigned: bool = False
    charset: str | None = None
    """``binary`` for binary strings, a character set name for text, None for non-string types."""
    max_length: int | None = None
    """Byte length of CHAR/BINARY and VARCHAR/VARBINARY columns."""
    bit_bytes: int | None = None
    set_values: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True, eq=False)
class LogTable:
    """A table's layout at one point of the log.  Interned by the client, so identity means same layout."""

    schema: str
    table: str
    columns: tuple[ColumnMeta, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)


@dataclass(frozen=True, slots=True)
class Rotate:
    """The log continues in ``file`` at ``pos`` (also sent once when a dump starts)."""

    file: str
    pos: int


@dataclass(frozen=True, slots=True)
class Begin:
    """A transaction starts (a GTID event)."""

    gtid: str | None
    server_id: int


@dataclass(frozen=True, slots=True)
class Rows:
    """One rows event: ``op`` is c, u or d; ``rows`` are images, or (before, after) pairs of them for updates.
    An image is a dict by column name, or (``positional``) its values in the order of ``table.columns``."""

    op: str
    table: LogTable
    rows: list[Any]
    end_pos: int
    """Where the next event starts: identifies this event within its file."""
    timestamp: int
    """Seconds since the epoch, from the event header: when the statement ran."""
    server_id: int
    positional: bool = False


@dataclass(frozen=True, slots=True)
class Commit:
    """A transaction ends (XID event or COMMIT query)."""

    end_pos: int


@dataclass(frozen=True, slots=True)
class Statement:
    """A statement logged as text outside a transaction: DDL, mostly.  It ends a unit of the log."""

    schema: str
    query: str
    end_pos: int


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The server had nothing to send for a while."""

    file: str
    pos: int


LogItem = Rotate | Begin | Rows | Commit | Statement | Heartbeat
