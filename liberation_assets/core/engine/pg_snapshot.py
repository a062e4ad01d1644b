"""PostgreSQL CDC snapshots: inside the slot's exported snapshot, or in DBLog watermark windows while streaming.

A mixin of ``PostgresCdc``: the attributes below are the reader's state these steps use.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from liberation_assets.core.contract.serialize import dumps
from liberation_assets.core.engine.pg_changes import CdcStream
from liberation_assets.core.engine.pg_summary import CdcSummary
from liberation_assets.core.events import READ
from liberation_assets.core.readers import codec, pg_slot
from liberation_assets.core.readers.pgoutput.position import CdcPosition, TableProgress
from liberation_assets.core.readers.pgoutput.watermark import (
    HIGH,
    LOW,
    WATERMARK_PREFIX,
    ChunkWindow,
    watermark_content,
)
from liberation_assets.core.readers.rows import events_from_rows
from liberation_assets.core.readers.snapshot import read_ahead
from liberation_assets.core.readers.sql import snapshot_chunk_query
from liberation_assets.core.spec import CdcSpec


class SnapshotSteps:
    _engine: Engine | None
    _admin: Connection | None
    _cursor: Any
    _pending: int
    _window: ChunkWindow | None
    _snapshot_queue: list[str]
    _flush_now: bool
    names: list[str]
    streams: dict[str, CdcStream]
    position: CdcPosition
    summary: CdcSummary
    cdc: CdcSpec

    def _flush(self, *, force: bool = False, at: Any = None) -> None:
        raise NotImplementedError

    # -- exported snapshot ----------------------------------------------------------------------------------
    def _snapshot_exported(self, snapshot_name: str, consistent_point: int) -> None:
        """Read every table inside the slot's exported snapshot, chunk by chunk, each chunk one Kafka transaction.

        The chunks are read on a helper thread, one ahead of the one being published (``read_ahead``).
        """
        source = {"snapshot": "true", "lsn": consistent_point}
        progress_of: dict[str, TableProgress] = {}
        for name, keys, rows in read_ahead(self._exported_chunks(snapshot_name)):
            stream = self.streams[name]
            progress = progress_of.get(name, TableProgress())
            is_last = len(rows) < self.cdc.snapshot_chunk
            events, tuples = events_from_rows(rows, stream.table, stream.zone, READ, source, keys=keys)
            if is_last and events:
                events[-1].source = {**source, "snapshot": "last"}
            after = codec.encode_all(tuples[-1][1:]) if tuples else progress.after_key
            progress = progress_of[name] = TableProgress(after, progress.rows + len(events), is_last)
            stream.pending.extend(events)
            self._pending += len(events)
            self.summary.snapshot_rows += len(events)
            self.position = self.position.with_table(name, progress)
            self._flush(force=True)

    def _exported_chunks(self, snapshot_name: str) -> Iterator[tuple[str, list[str], Sequence[Any]]]:
        """(table's stream, column keys, rows) of every chunk, in order, on one connection in the exported snapshot."""
        assert self._engine is not None
        chunk = self.cdc.snapshot_chunk
        with self._engine.connect() as connection:
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                pg_slot.use_snapshot(connection, snapshot_name)
                for name in self.names:
                    table = self.streams[name].table
                    after: tuple[Any, ...] | None = None
                    while True:
                        result = connection.execute(snapshot_chunk_query(table, after_key=after, limit=chunk))
                        keys, rows = list(result.keys()), result.all()  # plain tuples: no RowMapping per row
                        yield name, keys, rows
                        if len(rows) < chunk:
                            break
                        last = rows[-1]
                        after = tuple([last[keys.index(label)] for label in table.tuple_labels])

    def _chunk_query(self, stream: CdcStream, progress: TableProgress) -> sa.Select[Any]:
        after = codec.decode_all(progress.after_key) if progress.after_key is not None else None
        return snapshot_chunk_query(stream.table, after_key=after, limit=self.cdc.snapshot_chunk)

    # -- watermark snapshot ---------------------------------------------------------------------------------
    def _next_chunk(self) -> None:
        """Start the next DBLog chunk when none is in flight."""
        if self._window is not None or not self._snapshot_queue or self._cursor is None:
            return
        assert self._admin is not None and self._engine is not None
        name = self._snapshot_queue[0]
        stream = self.streams[name]
        progress = self.position.tables.get(name, TableProgress())
        chunk_id = uuid.uuid4().hex
        pg_slot.emit_message(self._admin, WATERMARK_PREFIX, watermark_content(chunk_id, LOW))
        with self._engine.connect() as connection:
            rows = connection.execute(self._chunk_query(stream, progress)).mappings().all()
        pg_slot.emit_message(self._admin, WATERMARK_PREFIX, watermark_content(chunk_id, HIGH))
        events, tuples = events_from_rows(rows, stream.table, stream.zone, READ, {"snapshot": "incremental"})
        after = codec.encode_all(tuples[-1][1:]) if tuples else progress.after_key
        self._window = ChunkWindow(
            name, chunk_id, {dumps(e.key): e for e in events}, after, len(rows) < self.cdc.snapshot_chunk
        )

    def _close_window(self) -> None:
        window = self._window
        assert window is not None
        stream = self.streams[window.stream]
        progress = self.position.tables.get(window.stream, TableProgress())
        rows = list(window.rows.values())
        stream.pending.extend(rows)
        self._pending += len(rows)
        self.summary.snapshot_rows += len(rows)
        self.position = self.position.with_table(
            window.stream, TableProgress(window.last_key, progress.rows + len(rows), window.is_last)
        )
        if window.is_last:
            self._snapshot_queue.remove(window.stream)
        self._window = None
        self._flush_now = True
