"""Incremental polling of one table on a ``(cursor, key)`` watermark.

Each poll reads the ceiling first (see ``ceiling``), then pages through rows
strictly after the last published ``(cursor, key)`` tuple and strictly below
the ceiling.  The new watermark is the last row published, never the ceiling,
so rows sharing a timestamp across a page boundary are never skipped.

Where the database cannot tell us about open transactions exactly (anything but
PostgreSQL), a re-read window re-reads the last ``window`` of cursor values and
drops rows already published, by a hash of their ``(cursor, key)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy.engine import Engine

from liberation_assets.core.events import UPDATE, ChangeBatch, Position
from liberation_assets.core.readers import codec
from liberation_assets.core.readers.ceiling import Ceiling, read_ceiling
from liberation_assets.core.readers.rows import events_from_rows
from liberation_assets.core.readers.sql import incremental_query
from liberation_assets.core.readers.table import ProjectedTable


@dataclass(frozen=True)
class QueryPosition:
    """The watermark: the last published ``(cursor, key...)`` and recently published row hashes."""

    after: tuple[Any, ...] | None = None
    since: Any = None
    recent: dict[str, Any] = field(default_factory=dict)
    """Fingerprint → cursor value of rows published inside the re-read window."""
    rows: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "after": codec.encode_all(self.after) if self.after is not None else None,
            "since": codec.encode(self.since),
            "recent": [[h, codec.encode(c)] for h, c in sorted(self.recent.items())],
            "rows": self.rows,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "QueryPosition":
        if not data:
            return cls()
        after = data.get("after")
        return cls(
            after=codec.decode_all(after) if after is not None else None,
            since=codec.decode(data.get("since")),
            recent={h: codec.decode(c) for h, c in data.get("recent") or ()},
            rows=int(data.get("rows", 0)),
        )


def row_fingerprint(values: tuple[Any, ...]) -> str:
    return hashlib.blake2b(
        orjson.dumps(codec.encode_all(values), option=orjson.OPT_NAIVE_UTC), digest_size=8
    ).hexdigest()


@dataclass
class PollStats:
    """Numbers about one poll, for metadata."""

    ceiling: Ceiling | None = None
    rows: int = 0
    skipped_as_seen: int = 0


def poll_batches(
    engine: Engine,
    table: ProjectedTable,
    *,
    position_key: str,
    start: QueryPosition,
    batch_size: int,
    zone: ZoneInfo,
    skew: timedelta,
    safety_lag: timedelta,
    reread_window: timedelta,
    stats: PollStats | None = None,
    deleted_when: str = "not_null",
) -> Iterator[ChangeBatch]:
    """Yield batches of rows changed since ``start``, each with the watermark that covers it."""
    stats = stats if stats is not None else PollStats()
    with engine.connect() as connection:
        ceiling = read_ceiling(connection, skew=skew, safety_lag=safety_lag)
        connection.rollback()
    stats.ceiling = ceiling
    bound = ceiling.for_column(table.cursor_is_naive, zone)

    published_after, recent = start.after, dict(start.recent)
    rows_total = start.rows
    if reread_window and published_after is not None:
        page_after, since = None, _minus(published_after[0], reread_window)
    else:
        page_after, since = published_after, start.since if published_after is None else None

    while True:
        query = incremental_query(table, after=page_after, since=since, ceiling=bound, limit=batch_size)
        with engine.connect() as connection:
            result = connection.execute(query)
            keys, rows = list(result.keys()), result.all()
        if not rows:
            return
        events, tuples = events_from_rows(
            rows, table, zone, UPDATE, {"snapshot": "false"}, deleted_when=deleted_when, keys=keys
        )
        page_after = tuples[-1]
        if reread_window:
            fresh = [(e, t) for e, t in zip(events, tuples) if row_fingerprint(t) not in recent]
            stats.skipped_as_seen += len(events) - len(fresh)
            events = [e for e, _ in fresh]
            if fresh:
                newest = max(t for _, t in fresh)
                published_after = max(published_after, newest) if published_after is not None else newest
                recent.update((row_fingerprint(t), t[0]) for _, t in fresh)
                horizon = _minus(published_after[0], reread_window)
                recent = {h: c for h, c in recent.items() if c >= horizon}
        else:
            published_after = page_after
        if events:
            rows_total += len(events)
            stats.rows += len(events)
            position = QueryPosition(published_after, start.since, recent, rows_total)
            yield ChangeBatch(events, Position(position_key, position.to_dict()))
        if len(rows) < batch_size:
            return


def _minus(value: Any, window: timedelta) -> Any:
    return value - window if isinstance(value, datetime) else value
