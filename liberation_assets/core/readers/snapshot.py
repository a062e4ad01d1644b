"""The resumable, chunked snapshot of one table, through its projection.

Chunks are read in key order with keyset pagination, so memory holds one chunk
at most.  Each chunk is one Kafka transaction together with the snapshot's
position (the last key published), so a killed snapshot resumes after its last
committed chunk instead of starting over.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine

from liberation_assets.core.events import READ, ChangeBatch, Position
from liberation_assets.core.readers import codec
from liberation_assets.core.readers.rows import events_from_rows
from liberation_assets.core.readers.sql import snapshot_chunk_query
from liberation_assets.core.readers.table import ProjectedTable


@dataclass(frozen=True)
class SnapshotPosition:
    """Progress of one snapshot: the last key published and whether it finished."""

    after_key: tuple[Any, ...] | None = None
    rows: int = 0
    done: bool = False
    incremental_from: Any = None
    """The ceiling read before the snapshot began: incremental polling starts there."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "after_key": codec.encode_all(self.after_key) if self.after_key is not None else None,
            "rows": self.rows,
            "done": self.done,
            "incremental_from": codec.encode(self.incremental_from),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "SnapshotPosition":
        if not data:
            return cls()
        after = data.get("after_key")
        return cls(
            after_key=codec.decode_all(after) if after is not None else None,
            rows=int(data.get("rows", 0)),
            done=bool(data.get("done", False)),
            incremental_from=codec.decode(data.get("incremental_from")),
        )


def snapshot_batches(
    engine: Engine,
    table: ProjectedTable,
    *,
    position_key: str,
    start: SnapshotPosition,
    chunk_size: int,
    zone: ZoneInfo,
    key_range: tuple[Any, Any] | None = None,
) -> Iterator[ChangeBatch]:
    """Yield one batch per chunk, from where ``start`` left off; the last batch marks the snapshot done."""
    after_key, rows_done = start.after_key, start.rows
    while True:
        query = snapshot_chunk_query(table, after_key=after_key, limit=chunk_size, key_range=key_range)
        with engine.connect() as connection:
            result = connection.execute(query)
            keys, rows = list(result.keys()), result.all()
        is_last = len(rows) < chunk_size
        events, tuples = events_from_rows(
            rows, table, zone, READ, {"snapshot": "last" if is_last else "true"}, keys=keys
        )
        if tuples:
            after_key = tuples[-1][1:]
        rows_done += len(events)
        position = SnapshotPosition(after_key, rows_done, is_last, start.incremental_from)
        yield ChangeBatch(events, Position(position_key, position.to_dict()))
        if is_last:
            return
