"""Log-based liberation from PostgreSQL: a snapshot consistent with the slot, then pgoutput streaming.

The coordinator of one source.  Every CDC stream of the source shares one slot,
one publication and one transactional producer (``<topic_prefix>.<source>.cdc``).
A micro-batch holds the events of all streams plus ONE position record, and is
one Kafka transaction; the slot is confirmed only after that commit.

- **Snapshot.**  A new slot exports a snapshot; tables are read inside it in
  key-ordered chunks, one Kafka transaction each, before streaming starts at the
  slot's consistent point: no gap, no overlap.  A snapshot that was
  interrupted, or a table added later, is finished with DBLog watermarks while
  streaming goes on (``pgoutput.watermark``).
- **Streaming.**  Changes go through in micro-batches of ``cdc.batch_size``
  events, so a huge transaction is never held in memory.  The position is
  (commit LSN, index of the change in its transaction), so a restart skips
  exactly what was committed to Kafka.
- **Idle databases.**  A heartbeat message every ``cdc.heartbeat_every`` makes
  the slot advance even when none of its tables change.
"""

from __future__ import annotations

import logging
import select
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from liberation_assets.core.connect import create_source_engine
from liberation_assets.core.contract.formats import decode_key, decode_value
from liberation_assets.core.contract.gate import ensure_schema
from liberation_assets.core.contract.history import SchemaVersion
from liberation_assets.core.contract.serialize import dumps, normalize_row, now_ms
from liberation_assets.core.contract.validate import ContractValidator
from liberation_assets.core.engine.runtime import StreamRuntime, stream_format
from liberation_assets.core.engine.writer import StreamIdentity, StreamWriter, WriteResult
from liberation_assets.core.errors import ConnectivityError, SchemaIncompatible, SlotInUse, SpecError
from liberation_assets.core.events import CREATE, DELETE, READ, TRUNCATE, UPDATE, ChangeBatch, ChangeEvent, Position
from liberation_assets.core.publish.positions import PositionStore, position_record
from liberation_assets.core.publish.publisher import OutRecord, TransactionalPublisher
from liberation_assets.core.publish.reading import committed_batches
from liberation_assets.core.readers import codec, pg_slot
from liberation_assets.core.readers.pgoutput import (
    UNCHANGED,
    Begin,
    Commit,
    Delete,
    Insert,
    LogicalMessage,
    Relation,
    Truncate,
    Update,
    decode_message,
    pg_time_to_epoch_ms,
)
from liberation_assets.core.readers.pgoutput.lsn import lsn_to_str
from liberation_assets.core.readers.pgoutput.position import CdcPosition, TableProgress
from liberation_assets.core.readers.pgoutput.rows import RowPlan, fill_unchanged, unchanged_columns
from liberation_assets.core.readers.pgoutput.watermark import (
    HIGH,
    LOW,
    WATERMARK_PREFIX,
    ChunkWindow,
    parse_watermark,
    watermark_content,
)
from liberation_assets.core.readers.rows import events_from_rows
from liberation_assets.core.readers.sql import snapshot_chunk_query
from liberation_assets.core.readers.table import ProjectedTable, reflect_stream_table
from liberation_assets.core.spec import Spec

log = logging.getLogger("liberation.cdc_postgres")

HEARTBEAT_PREFIX = "liberation.heartbeat"
DRAIN_PREFIX = "liberation.drain"
SLOT_WAIT_SECONDS = 60.0
"""How long to wait for a killed reader's walsender to release the slot."""
POSITION_EVERY_SECONDS = 1.0
"""At most this often, a position-only transaction records progress made without events."""
STABLE_WAIT_SECONDS = 180.0
"""Longer than the publisher's transaction.timeout.ms (120 s): the broker aborts a crashed writer's transaction by then."""


def position_key(source_name: str) -> str:
    return f"source/{source_name}/cdc"


def cdc_streams(spec: Spec, source_name: str) -> list[str]:
    return [name for name, s in spec.streams.items() if s.source == source_name and "cdc" in s.patterns]


@dataclass
class CdcSummary:
    """Numbers about one run, for the CLI and for Dagster metadata."""

    result: WriteResult = field(default_factory=WriteResult)
    per_stream: dict[str, int] = field(default_factory=dict)
    snapshot_rows: int = 0
    db_transactions: int = 0
    lsn: int = 0
    last_commit_ms: int | None = None
    slot: pg_slot.SlotInfo | None = None
    seconds: float = 0.0

    def add(self, stream: str, result: WriteResult) -> None:
        self.result.add(result)
        self.per_stream[stream] = self.per_stream.get(stream, 0) + result.published

    def metadata(self, stream: str | None = None) -> dict[str, int | float]:
        r = self.result
        data: dict[str, int | float] = {
            "events": self.per_stream.get(stream, 0) if stream else r.published,
            "events_all_streams": r.published,
            "deletes": r.deletes,
            "quarantined": r.quarantined,
            "kafka_transactions": r.transactions,
            "db_transactions": self.db_transactions,
            "snapshot_rows": self.snapshot_rows,
            "lsn": self.lsn,
            "seconds": round(self.seconds, 3),
        }
        if self.slot is not None:
            data["lag_bytes"] = self.slot.lag_bytes
            data["retained_wal_bytes"] = self.slot.retained_wal_bytes
        if self.last_commit_ms is not None:
            data["lag_seconds"] = round(max(0, now_ms() - self.last_commit_ms) / 1000, 3)
        data.update(r.lag_metadata())
        return data

    def describe(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.metadata().items())


@dataclass
class _Stream:
    """One CDC stream of the source: its table, its writer and its pending events."""

    name: str
    table: ProjectedTable
    writer: StreamWriter
    schema: str
    projection: dict[str, str] | None
    reread: bool
    zone: Any
    pending: list[ChangeEvent] = field(default_factory=list)
    unchanged: bool = False
    """Some pending event still lacks an unchanged TOAST value."""
    plan: RowPlan | None = None

    def build_plan(self, relation: Relation) -> None:
        self.plan = RowPlan.build(relation, self.projection, self.table.key_columns, self.table.key_public, self.name)


@dataclass
class _Transaction:
    final_lsn: int
    commit_ms: int
    xid: int
    index: int = -1


class PostgresCdc:
    """Snapshot and stream one PostgreSQL source into its streams' topics."""

    def __init__(self, spec: Spec, source_name: str):
        if source_name not in spec.sources:
            raise SpecError(f"unknown source {source_name!r}; defined: {sorted(spec.sources)}")
        self.spec = spec
        self.source_name = source_name
        self.source = spec.sources[source_name]
        if self.source.dialect != "postgresql":
            raise SpecError(f"source {source_name} is {self.source.dialect}: log-based capture here is for PostgreSQL")
        self.names = cdc_streams(spec, source_name)
        if not self.names:
            raise SpecError(f"source {source_name} has no stream with the cdc pattern")
        self.slot_names = pg_slot.SlotNames.for_source(source_name, self.source)
        self.cdc = self.source.cdc
        self.key = position_key(source_name)
        self.summary = CdcSummary()
        self._engine: Engine | None = None
        self._admin: Connection | None = None
        self._replication: Any = None
        self._cursor: Any = None
        self._publisher: TransactionalPublisher | None = None
        self._positions: PositionStore | None = None
        self.streams: dict[str, _Stream] = {}
        self._by_relid: dict[int, list[_Stream]] = {}
        self._by_table: dict[tuple[str, str], list[_Stream]] = {}
        self.position = CdcPosition()
        """Snapshot progress and slot; the log position lives in ``_at`` (a tuple per change is cheap)."""
        self._at: tuple[int, int, bool] = (0, -1, False)
        self._stored = CdcPosition()
        self._confirm = 0
        self._tx: _Transaction | None = None
        self._pending = 0
        self._window: ChunkWindow | None = None
        self._snapshot_queue: list[str] = []
        self._last_heartbeat = 0.0
        self._last_store = 0.0
        self._drain_id: str | None = None
        self._drained = False
        self._flush_now = False
        self._started = 0.0

    # -- setup ----------------------------------------------------------------------------------------------
    def open(self) -> None:
        """Fence a crashed run, load the position, ensure publication and slot, snapshot, start streaming."""
        self._started = time.monotonic()
        spec, kafka = self.spec, self.spec.kafka
        bootstrap = kafka.resolved_bootstrap_servers()
        self._publisher = TransactionalPublisher(bootstrap, self.spec.transactional_id(self.source_name, "cdc"), kafka.producer)
        self._positions = PositionStore.for_spec(kafka)
        stored = self._positions.get(self.key)
        self.position = self._stored = replace(CdcPosition.from_dict(stored), slot=self.slot_names.slot)
        self._at = (self.position.lsn, self.position.index, self.position.complete)
        self._engine = create_source_engine(self.source)
        for name in self.names:
            self._add_stream(name)
        self._admin = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        admin = self._admin
        pg_slot.check_role(admin)
        for stream in self.streams.values():
            if not stream.reread:
                pg_slot.ensure_replica_identity_full(admin, stream.schema, stream.table.table.name)
        pg_slot.ensure_publication(admin, self.slot_names.publication, sorted(self._by_table))
        database = self.source.resolved_url().database or ""
        info = self._wait_for_slot()
        pg_slot.check_slot(info, slot=self.slot_names.slot, database=database, has_position=stored is not None)
        self._replication = pg_slot.open_replication(self.source)
        self._cursor = self._replication.cursor()
        if info is None:
            created = pg_slot.create_slot(self._cursor, self.slot_names.slot)
            self.position = CdcPosition(lsn=created.consistent_point, slot=self.slot_names.slot,
                                        columns=self.position.columns)  # every table is read whole next
            self._at = (created.consistent_point, -1, False)
            self._snapshot_exported(created.snapshot_name, created.consistent_point)
        self._snapshot_queue = [n for n in self.names if not self.position.tables.get(n, TableProgress()).done]
        pg_slot.start_streaming(self._cursor, self.slot_names.slot, self.slot_names.publication)

    def _add_stream(self, name: str) -> None:
        assert self._engine is not None and self._publisher is not None and self._positions is not None
        spec, stream_spec = self.spec, self.spec.streams[name]
        StreamRuntime(spec, name, "cdc").ensure_topics()
        table, published = self._gated_table(name)
        schema_version = published.version
        identity = StreamIdentity(
            name=name, topic=spec.topic_for(name), pattern="cdc", db=self.source.resolved_url().database or "",
            db_schema=stream_spec.db_schema, table=stream_spec.table, timezone=spec.timezone_for(name),
            schema_version=schema_version,
        )
        writer = StreamWriter(identity, self._publisher, self._positions.topic,
                              ContractValidator(stream_spec.contract, stream_spec.key),
                              halt_on_violation=stream_spec.on_violation == "halt",
                              value_format=stream_format(spec, name, "cdc", published.schema))
        schema = stream_spec.db_schema or "public"
        stream = _Stream(name, table, writer, schema, stream_spec.columns() if stream_spec.projection is not None else None,
                         stream_spec.toast == "reread", identity.zone)
        self.streams[name] = stream
        self._by_table.setdefault((schema, stream_spec.table), []).append(stream)
        if stream.projection is None:
            self._track_columns(stream)

    def _gated_table(self, name: str) -> tuple[ProjectedTable, SchemaVersion]:
        """The stream's table as the catalog has it now, and the schema version to publish it under.

        The compatibility gate runs here and raises ``SchemaIncompatible`` before anything is published.
        The log needs no cursor column; the table is reflected without one so tables without updated_at work too.
        """
        assert self._engine is not None
        table = reflect_stream_table(self._engine, self.spec.streams[name].model_copy(update={"cursor": None}), name)
        return table, ensure_schema(self.spec, name, self._engine, table=table)

    def _track_columns(self, stream: _Stream) -> None:
        """Remember a publish-every-column stream's columns; if they changed since its snapshot, snapshot it again.

        The log carries a new column's value only for rows changed after the
        column was added; the other rows hold it too, so they are read again.
        """
        columns = list(stream.table.columns.values())
        known = self.position.columns.get(stream.name)
        if known is not None and known != columns and stream.name in self.position.tables:
            log.info("stream %s: its columns changed (%s → %s); snapshotting again with watermarks",
                     stream.name, ", ".join(known), ", ".join(columns))
            if self._window is not None and self._window.stream == stream.name:
                self._window = None  # its rows were read with the old columns
            self.position = self.position.with_table(stream.name, TableProgress())
            if self._cursor is not None and stream.name not in self._snapshot_queue:
                self._snapshot_queue.append(stream.name)
        self.position = self.position.with_columns(stream.name, columns)

    def _wait_for_slot(self) -> pg_slot.SlotInfo | None:
        """The slot, once no other walsender holds it (a killed reader's lingers for a moment)."""
        assert self._admin is not None
        deadline = time.monotonic() + SLOT_WAIT_SECONDS
        while True:
            info = pg_slot.slot_info(self._admin, self.slot_names.slot)
            if info is None or info.active_pid is None:
                return info
            if time.monotonic() > deadline:
                raise SlotInUse(f"replication slot {self.slot_names.slot} is held by backend {info.active_pid}; "
                                "is another `liberation follow` running?")
            time.sleep(0.5)

    # -- exported snapshot ----------------------------------------------------------------------------------
    def _snapshot_exported(self, snapshot_name: str, consistent_point: int) -> None:
        """Read every table inside the slot's exported snapshot, chunk by chunk, each chunk one Kafka transaction."""
        assert self._engine is not None
        with self._engine.connect() as connection:
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                pg_slot.use_snapshot(connection, snapshot_name)
                for name in self.names:
                    stream = self.streams[name]
                    progress = TableProgress()
                    while not progress.done:
                        rows = connection.execute(self._chunk_query(stream, progress)).mappings().all()
                        is_last = len(rows) < self.cdc.snapshot_chunk
                        source = {"snapshot": "true", "lsn": consistent_point}
                        events, tuples = events_from_rows(rows, stream.table, stream.zone, READ, source)
                        if is_last and events:
                            events[-1].source = {**source, "snapshot": "last"}
                        after = codec.encode_all(tuples[-1][1:]) if tuples else progress.after_key
                        progress = TableProgress(after, progress.rows + len(events), is_last)
                        stream.pending.extend(events)
                        self._pending += len(events)
                        self.summary.snapshot_rows += len(events)
                        self.position = self.position.with_table(name, progress)
                        self._flush(force=True)

    def _chunk_query(self, stream: _Stream, progress: TableProgress) -> sa.Select[Any]:
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
        self._window = ChunkWindow(name, chunk_id, {dumps(e.key): e for e in events}, after,
                                   len(rows) < self.cdc.snapshot_chunk)

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
            window.stream, TableProgress(window.last_key, progress.rows + len(rows), window.is_last))
        if window.is_last:
            self._snapshot_queue.remove(window.stream)
        self._window = None
        self._flush_now = True

    # -- streaming ------------------------------------------------------------------------------------------
    def run(self, *, until: Callable[[], bool]) -> None:
        """Consume the slot until ``until()`` says stop; flush whenever the log goes quiet."""
        cursor = self._cursor
        read, handle, batch_size = cursor.read_message, self._handle, self.cdc.batch_size
        heartbeat_every = self.cdc.heartbeat_every.total_seconds()
        while True:
            message = read()
            if message is not None:
                handle(message.payload, message.data_start)
                if self._pending >= batch_size or self._flush_now:
                    self._flush_now = False
                    self._flush()
                    if until():
                        return
                    self._next_chunk()
                continue
            self._flush()
            if until():
                return
            now = time.monotonic()
            if now - self._last_heartbeat >= heartbeat_every:
                self.heartbeat()
            self._next_chunk()
            wait = max(0.05, min(1.0, self._last_heartbeat + heartbeat_every - time.monotonic()))
            select.select([cursor], [], [], wait)

    def heartbeat(self) -> None:
        """A logical message in this database: the slot then advances even when its tables are idle."""
        assert self._admin is not None
        pg_slot.emit_message(self._admin, HEARTBEAT_PREFIX, "")
        self._last_heartbeat = time.monotonic()

    def drain(self) -> CdcSummary:
        """Stream up to the server's current LSN (and finish pending snapshots), then stop."""
        assert self._admin is not None
        self._drain_id = uuid.uuid4().hex
        pg_slot.emit_message(self._admin, DRAIN_PREFIX, self._drain_id)
        self.run(until=lambda: self._drained and self._window is None and not self._snapshot_queue)
        return self.finish()

    def finish(self) -> CdcSummary:
        self._flush(force=True)
        self.summary.lsn = self._stored.lsn
        self.summary.seconds = time.monotonic() - self._started
        if self._admin is not None:
            self.summary.slot = pg_slot.slot_info(self._admin, self.slot_names.slot)
        return self.summary

    def _handle(self, payload: bytes, data_start: int) -> None:
        message = decode_message(payload)
        if isinstance(message, (Insert, Update, Delete, Truncate)):
            tx = self._tx
            if tx is None:
                raise ConnectivityError("pgoutput: a change outside a transaction")
            tx.index += 1
            if self._stored.skips(tx.final_lsn, tx.index):
                return  # committed to Kafka before a restart
            if isinstance(message, Truncate):
                self._truncate(message, tx, data_start)
            else:
                for stream in self._by_relid.get(message.relid, ()):
                    self._change(stream, message, tx, data_start)
            self._at = (tx.final_lsn, tx.index, False)
            self._confirm = tx.final_lsn  # resent whole on restart; the index skips what is done
        elif isinstance(message, Begin):
            self._tx = _Transaction(message.final_lsn, pg_time_to_epoch_ms(message.commit_ts), message.xid)
        elif isinstance(message, Commit):
            tx = self._tx
            if tx is None:
                raise ConnectivityError("pgoutput: a commit outside a transaction")
            self._tx = None
            self.summary.db_transactions += 1
            self.summary.last_commit_ms = tx.commit_ms
            if not self._stored.skips(tx.final_lsn, tx.index + 1):
                self._at = (tx.final_lsn, tx.index, True)
                self._confirm = message.end_lsn  # never sent again
        elif isinstance(message, Relation):
            streams = self._by_table.get((message.namespace, message.name))
            if streams:
                for stream in streams:
                    previous = stream.plan
                    try:
                        stream.build_plan(message)
                    except SchemaIncompatible:
                        self._flush(force=True)  # what came before the change still goes out
                        raise
                    assert stream.plan is not None
                    if previous is not None and previous.shape != stream.plan.shape:
                        self._schema_changed(stream, previous)
                self._by_relid[message.relid] = streams
        elif isinstance(message, LogicalMessage):
            self._message(message)

    def _schema_changed(self, stream: _Stream, previous: RowPlan) -> None:
        """A table change seen in the log: gate it and version it before any event that follows is published.

        Events read so far go out first, under the version they were read with.
        The compatibility gate then checks the table as the catalog has it now; an
        incompatible change stops the stream here with a clear error.  A stream that
        publishes every column and gained one is snapshotted again with watermarks
        (``_track_columns``).
        """
        assert stream.plan is not None
        self._flush(force=True)
        stream.table, published = self._gated_table(stream.name)
        version = published.version
        stream.writer.use_schema_version(version, stream_format(self.spec, stream.name, "cdc", published.schema))
        log.info("stream %s: the table changed (%s → %s); publishing schema version %d", stream.name,
                 ", ".join(name for name, *_ in previous.shape), ", ".join(name for name, *_ in stream.plan.shape), version)
        if stream.projection is None:
            self._track_columns(stream)

    def _message(self, message: LogicalMessage) -> None:
        if message.prefix == WATERMARK_PREFIX:
            if self._window is not None and self._window.on_marker(*parse_watermark(message.content)):
                self._close_window()
        elif message.prefix == DRAIN_PREFIX and message.content.decode() == self._drain_id:
            self._drained = self._flush_now = True
        elif message.prefix != HEARTBEAT_PREFIX:
            return
        # Between transactions everything before this message has been handled.  Its LSN is where its record
        # ends, which is exactly where the next commit record may start: stay one byte below, or that
        # transaction would count as published.
        boundary = message.lsn - 1
        if self._tx is None and boundary > self._at[0]:
            self._at = (boundary, -1, True)
            self._confirm = boundary

    def _change(self, stream: _Stream, message: Insert | Update | Delete, tx: _Transaction, lsn: int) -> None:
        plan = stream.plan
        assert plan is not None
        source = {"snapshot": "false", "lsn": lsn, "txId": tx.xid, "sequence": [tx.final_lsn, tx.index]}
        ts = tx.commit_ms
        zone, key_public = stream.zone, stream.table.key_public
        events: list[ChangeEvent]
        if isinstance(message, Insert):
            after = normalize_row(plan.row(message.new), zone)
            events = [ChangeEvent(CREATE, {k: after[k] for k in key_public}, None, after, ts, source)]
        elif isinstance(message, Update):
            full_old = message.old if message.old_kind == "O" else None
            new = fill_unchanged(message.new, full_old)
            if UNCHANGED in new:
                stream.unchanged = True
            after = normalize_row(plan.row(new), zone)
            before = normalize_row(plan.row(full_old), zone) if full_old is not None else None
            key = {k: after[k] for k in key_public}
            old_key = normalize_row(plan.key_of(message.old), zone) if message.old is not None else key
            if old_key != key:
                # A primary-key change: a delete of the old key, then a create of the new one.
                events = [ChangeEvent(DELETE, old_key, before or dict(old_key), None, ts, source),
                          ChangeEvent(CREATE, key, None, after, ts, source)]
            else:
                events = [ChangeEvent(UPDATE, key, before, after, ts, source)]
        else:
            key = normalize_row(plan.key_of(message.old), zone)
            before = normalize_row(plan.row(message.old), zone) if message.old_kind == "O" else dict(key)
            events = [ChangeEvent(DELETE, key, before, None, ts, source)]
        window = self._window
        if window is not None and window.stream == stream.name:
            for event in events:
                window.on_change(dumps(event.key))
        stream.pending.extend(events)
        self._pending += len(events)

    def _truncate(self, message: Truncate, tx: _Transaction, lsn: int) -> None:
        """A truncate: flush what came before, then one ``t`` event and a delete per live key, in one transaction."""
        streams = [s for relid in message.relids for s in self._by_relid.get(relid, ())]
        if not streams:
            return
        self._flush(force=True)
        source = {"snapshot": "false", "lsn": lsn, "txId": tx.xid, "sequence": [tx.final_lsn, tx.index]}
        bootstrap = self.spec.kafka.resolved_bootstrap_servers()
        for stream in streams:
            if self._window is not None and self._window.stream == stream.name:
                self._window.on_truncate()
            stream.pending.append(ChangeEvent(TRUNCATE, {}, None, None, tx.commit_ms, source))
            deleted = {**source, "truncate": True}
            for raw in live_keys(bootstrap, stream.writer.identity.topic):
                key = decode_key(raw)
                stream.pending.append(ChangeEvent(DELETE, key, dict(key), None, tx.commit_ms, deleted))
            self._pending += len(stream.pending)
        self._at = (tx.final_lsn, tx.index, False)
        self._confirm = tx.final_lsn
        self._flush(force=True)

    # -- publish --------------------------------------------------------------------------------------------
    def _flush(self, *, force: bool = False) -> None:
        """Publish pending events of every stream and the position in one Kafka transaction, then confirm."""
        position = self.position.at(*self._at)
        moved = position != self._stored
        if not self._pending and not moved:
            return
        if not self._pending and not force and time.monotonic() - self._last_store < POSITION_EVERY_SECONDS:
            return
        assert self._publisher is not None and self._positions is not None
        out: list[OutRecord] = []
        results: list[tuple[str, WriteResult]] = []
        for stream in self.streams.values():
            if not stream.pending:
                continue
            events = self._reread(stream) if stream.unchanged else stream.pending
            snapshot_only = all(e.op == READ for e in events)  # a table's rows: each key once (contract)
            records, result = stream.writer.records(ChangeBatch(events, None), unique_key=snapshot_only)
            out.extend(records)
            results.append((stream.name, result))
        out.append(position_record(self._positions.topic, Position(self.key, position.to_dict())))
        self._publisher.publish(out)
        for name, result in results:
            self.summary.add(name, result)
        self.summary.result.transactions += 1
        for stream in self.streams.values():
            stream.pending = []
            stream.unchanged = False
        self._pending = 0
        self.position = self._stored = position
        self._last_store = time.monotonic()
        if self._confirm:
            # Only now, after the Kafka commit: the slot may release WAL up to here.
            self._cursor.send_feedback(flush_lsn=self._confirm, force=True)

    def _reread(self, stream: _Stream) -> list[ChangeEvent]:
        """Fill unchanged TOAST values by reading the rows again; a row gone since is left to its later delete."""
        assert self._engine is not None
        todo = [e for e in stream.pending if e.after is not None and UNCHANGED in e.after.values()]
        if not todo:
            return stream.pending
        table = stream.table
        keys = {tuple(e.key[k] for k in table.key_public) for e in todo}
        query = sa.select(*table.select_list(with_cursor=False)).where(
            sa.tuple_(*table.key_exprs).in_(list(keys)))
        with self._engine.connect() as connection:
            current = {dumps({k: r[k] for k in table.key_public}): r
                       for r in (normalize_row(dict(m), stream.zone) for m in connection.execute(query).mappings())}
        kept = []
        for event in stream.pending:
            if event.after is not None and UNCHANGED in event.after.values():
                row = current.get(dumps(event.key))
                if row is None:
                    continue
                for name in unchanged_columns(event.after):
                    event.after[name] = row[name]
            kept.append(event)
        return kept

    # -- teardown -------------------------------------------------------------------------------------------
    def close(self) -> None:
        closers = [self._replication.close if self._replication is not None else None,
                   self._admin.close if self._admin is not None else None,
                   self._engine.dispose if self._engine is not None else None,
                   self._publisher.close if self._publisher is not None else None]
        for closer in closers:
            try:
                if closer is not None:
                    closer()
            except Exception:  # closing is best effort; the error that got us here matters more
                pass


def live_keys(bootstrap_servers: str, topic: str) -> Iterator[bytes]:
    """Keys whose latest record in the topic is a live row (read_committed); keeps keys only, not values.

    Our own producer has no transaction open here, so one that holds the topic
    back is a killed writer's: wait for it to end rather than miss keys behind it.
    """
    live: dict[bytes, bool] = {}
    for batch in committed_batches(bootstrap_servers, topic, settle_seconds=STABLE_WAIT_SECONDS, must_settle=True):
        for msg in batch:
            value = msg.value()
            live[msg.key() or b""] = (decoded := decode_value(value)) is not None and decoded.get("after") is not None
    return (key for key, is_live in live.items() if is_live)


# -- entry points --------------------------------------------------------------------------------------------
def drain(spec: Spec, source_name: str) -> CdcSummary:
    """One Dagster run: snapshot if needed, then stream everything up to the current LSN."""
    cdc = PostgresCdc(spec, source_name)
    try:
        cdc.open()
        return cdc.drain()
    finally:
        cdc.close()


@dataclass(frozen=True)
class SlotStatus:
    """What a sensor and a health check need: the slot's WAL figures and whether changes await a run."""

    info: pg_slot.SlotInfo | None
    pending: bool | None
    """Unread changes of a published table; None while a reader (``liberation follow``) holds the slot."""


def slot_status(spec: Spec, source_name: str) -> SlotStatus:
    source = spec.sources[source_name]
    names = pg_slot.SlotNames.for_source(source_name, source)
    engine = create_source_engine(source)
    try:
        with engine.connect() as connection:
            info = pg_slot.slot_info(connection, names.slot)
            if info is None:
                return SlotStatus(None, True)  # the first run creates the slot and takes the snapshot
            if info.active_pid is not None:
                return SlotStatus(info, None)
            return SlotStatus(info, pg_slot.has_pending_changes(connection, names.slot, names.publication))
    finally:
        engine.dispose()


def follow(spec: Spec, source_name: str, duration: float | None = None,
           on_summary: Callable[[CdcSummary], None] | None = None) -> int:
    """``liberation follow <source>``: stream continuously (or for ``duration`` seconds), stop on SIGTERM."""
    stop = {"now": False}

    def request_stop(_signum: int, _frame: Any) -> None:
        stop["now"] = True

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, request_stop) if in_main else None
    deadline = time.monotonic() + duration if duration is not None else None
    cdc = PostgresCdc(spec, source_name)
    try:
        cdc.open()
        print(f"liberation: following {source_name} from slot {cdc.slot_names.slot} "
              f"(publication {cdc.slot_names.publication}) at {lsn_to_str(cdc.position.lsn)}", file=sys.stderr, flush=True)
        cdc.run(until=lambda: stop["now"] or (deadline is not None and time.monotonic() >= deadline))
        summary = cdc.finish()
    finally:
        cdc.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    (on_summary or (lambda s: print(s.describe(), flush=True)))(summary)
    return 0

