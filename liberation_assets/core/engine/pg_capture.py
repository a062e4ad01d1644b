"""PostgreSQL CDC, the reader of one source: slot and publication, snapshot, streaming, flush and confirm.

See ``cdc_postgres`` for the guarantees; this module holds the moving parts.
"""

from __future__ import annotations

import logging
import select
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sqlalchemy.engine import Connection, Engine

from liberation_assets.core.connect import create_source_engine
from liberation_assets.core.contract.formats import decode_key
from liberation_assets.core.contract.gate import ensure_schema
from liberation_assets.core.contract.history import SchemaVersion
from liberation_assets.core.contract.serialize import dumps
from liberation_assets.core.contract.validate import ContractValidator
from liberation_assets.core.engine.pg_changes import CdcStream, change_events, live_keys, reread_unchanged
from liberation_assets.core.engine.pg_snapshot import SnapshotSteps
from liberation_assets.core.engine.pg_summary import CdcSummary
from liberation_assets.core.engine.runtime import StreamRuntime, cdc_streams, stream_format
from liberation_assets.core.engine.runtime import source_position_key as position_key
from liberation_assets.core.engine.writer import StreamWriter, WriteResult
from liberation_assets.core.errors import SchemaIncompatible, SpecError
from liberation_assets.core.events import DELETE, READ, TRUNCATE, ChangeBatch, ChangeEvent, Position, StreamIdentity
from liberation_assets.core.publish.flush import FlushPolicy
from liberation_assets.core.publish.positions import PositionStore, position_record
from liberation_assets.core.publish.publisher import OutRecord, TransactionalPublisher
from liberation_assets.core.readers import pg_slot
from liberation_assets.core.readers.pg_keepalive import replication_keepalive
from liberation_assets.core.readers.pg_types import PgType, TypeCatalog
from liberation_assets.core.readers.pgoutput import Delete, Insert, LogicalMessage, Relation, Truncate, Update
from liberation_assets.core.readers.pgoutput.position import CdcPosition, TableProgress
from liberation_assets.core.readers.pgoutput.rows import RowPlan
from liberation_assets.core.readers.pgoutput.stream import (
    Change,
    Committed,
    Cursor,
    Marker,
    PgoutputStream,
    Transaction,
)
from liberation_assets.core.readers.pgoutput.watermark import WATERMARK_PREFIX, ChunkWindow, parse_watermark
from liberation_assets.core.readers.table import ProjectedTable, reflect_stream_table
from liberation_assets.core.spec import Spec

log = logging.getLogger("liberation.cdc_postgres")

HEARTBEAT_PREFIX = "liberation.heartbeat"
DRAIN_PREFIX = "liberation.drain"
BOUNDARY_PREFIXES = frozenset({HEARTBEAT_PREFIX, DRAIN_PREFIX, WATERMARK_PREFIX})
"""Our logical messages: between transactions, each one is a position the slot may advance to."""
SLOT_WAIT_SECONDS = pg_slot.SLOT_WAIT_SECONDS
POSITION_EVERY_SECONDS = 1.0
"""At most this often, a position-only transaction records progress made without events."""


class PostgresCdc(SnapshotSteps):
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
        self.streams: dict[str, CdcStream] = {}
        self._by_relid: dict[int, list[CdcStream]] = {}
        self._by_table: dict[tuple[str, str], list[CdcStream]] = {}
        self.position = CdcPosition()
        """Snapshot progress and slot; the log position lives in ``_log.at`` (a tuple per change is cheap)."""
        self._stored = CdcPosition()
        self._log = PgoutputStream(CdcPosition(), BOUNDARY_PREFIXES)
        self._pending = 0
        self._window: ChunkWindow | None = None
        self._snapshot_queue: list[str] = []
        self._last_heartbeat = 0.0
        self._last_store = 0.0
        self._policy = FlushPolicy(
            self.cdc.batch_size, max_age_seconds=0.0, idle_position_seconds=POSITION_EVERY_SECONDS
        )
        """Callers flush when the batch is full or the log goes quiet; a moved position alone at most every second."""
        self._drain_id: str | None = None
        self._drained = False
        self._flush_now = False
        self._started = 0.0
        self._streaming = False
        self._types = TypeCatalog()

    # -- setup ----------------------------------------------------------------------------------------------
    def open(self) -> None:
        """Fence a crashed run, load the position, ensure publication and slot, snapshot, start streaming."""
        self._started = time.monotonic()
        kafka = self.spec.kafka
        bootstrap = kafka.resolved_bootstrap_servers()
        self._publisher = TransactionalPublisher(
            bootstrap, self.spec.transactional_id(self.source_name, "cdc"), kafka.producer
        )
        self._positions = PositionStore.for_spec(kafka)
        stored = self._positions.get(self.key)
        self.position = self._stored = replace(CdcPosition.from_dict(stored), slot=self.slot_names.slot)
        self._log = PgoutputStream(self.position, BOUNDARY_PREFIXES)
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
        info = pg_slot.released_slot(admin, self.slot_names.slot)
        pg_slot.check_slot(info, slot=self.slot_names.slot, database=database, has_position=stored is not None)
        self._replication = pg_slot.open_replication(self.source)
        self._cursor = self._replication.cursor()
        if info is None:
            created = pg_slot.create_slot(self._cursor, self.slot_names.slot)
            self.position = CdcPosition(
                lsn=created.consistent_point, slot=self.slot_names.slot, columns=self.position.columns
            )  # every table is read whole next
            self._log = PgoutputStream(self.position, BOUNDARY_PREFIXES)
            self._snapshot_exported(created.snapshot_name, created.consistent_point)
        self._snapshot_queue = [n for n in self.names if not self.position.tables.get(n, TableProgress()).done]
        pg_slot.start_streaming(self._cursor, self.slot_names.slot, self.slot_names.publication)
        self._streaming = True

    def _add_stream(self, name: str) -> None:
        assert self._engine is not None and self._publisher is not None and self._positions is not None
        spec, stream_spec = self.spec, self.spec.streams[name]
        StreamRuntime(spec, name, "cdc").ensure_topics()
        table, published = self._gated_table(name)
        schema_version = published.version
        identity = StreamIdentity(
            name=name,
            topic=spec.topic_for(name),
            pattern="cdc",
            db=self.source.resolved_url().database or "",
            db_schema=stream_spec.db_schema,
            table=stream_spec.table,
            timezone=spec.timezone_for(name),
            schema_version=schema_version,
        )
        writer = StreamWriter(
            identity,
            self._publisher,
            self._positions.topic,
            ContractValidator(stream_spec.contract, stream_spec.key),
            halt_on_violation=stream_spec.on_violation == "halt",
            value_format=stream_format(spec, name, "cdc", published.schema),
        )
        schema = stream_spec.db_schema or "public"
        stream = CdcStream(
            name,
            table,
            writer,
            schema,
            stream_spec.columns() if stream_spec.projection is not None else None,
            stream_spec.toast == "reread",
            identity.zone,
            types=self._resolve_type,
        )
        self.streams[name] = stream
        self._by_table.setdefault((schema, stream_spec.table), []).append(stream)
        if stream.projection is None:
            self._track_columns(stream)

    def _resolve_type(self, oid: int) -> PgType:
        known = self._types.known(oid)
        if known is not None:
            return known
        assert self._engine is not None
        with self._engine.connect() as connection:
            return self._types.resolve_one(connection, oid)

    def _gated_table(self, name: str) -> tuple[ProjectedTable, SchemaVersion]:
        """The stream's table as the catalog has it now, and the schema version to publish it under.

        The compatibility gate runs here and raises ``SchemaIncompatible`` before anything is published.
        The log needs no cursor column; the table is reflected without one so tables without updated_at work too.
        """
        assert self._engine is not None
        table = reflect_stream_table(
            self._engine,
            self.spec.streams[name].model_copy(update={"cursor": None}),
            name,
            self.spec.timezone_for(name),
        )
        return table, ensure_schema(self.spec, name, self._engine, table=table)

    def _track_columns(self, stream: CdcStream) -> None:
        """Remember a publish-every-column stream's columns; if they changed since its snapshot, snapshot it again.

        The log carries a new column's value only for rows changed after the
        column was added; the other rows hold it too, so they are read again.
        """
        columns = list(stream.table.columns.values())
        known = self.position.columns.get(stream.name)
        if known is not None and known != columns and stream.name in self.position.tables:
            log.info(
                "stream %s: its columns changed (%s → %s); snapshotting again with watermarks",
                stream.name,
                ", ".join(known),
                ", ".join(columns),
            )
            if self._window is not None and self._window.stream == stream.name:
                self._window = None  # its rows were read with the old columns
            self.position = self.position.with_table(stream.name, TableProgress())
            if self._cursor is not None and stream.name not in self._snapshot_queue:
                self._snapshot_queue.append(stream.name)
        self.position = self.position.with_columns(stream.name, columns)

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
        item = self._log.feed(payload, data_start)
        if item is None:
            return
        if isinstance(item, Change):
            change = item.message
            if isinstance(change, Truncate):
                self._truncate(change, item)
            else:
                for stream in self._by_relid.get(change.relid, ()):
                    self._change(stream, change, item.tx, item.lsn)
        elif isinstance(item, Committed):
            self.summary.db_transactions += 1
            self.summary.last_commit_ms = item.tx.commit_ms
        elif isinstance(item, Marker):
            self._message(item.message)
        else:
            self._relation(item)

    def _relation(self, message: Relation) -> None:
        """A table met in the log: its row plan; a changed shape is gated and versioned."""
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

    def _schema_changed(self, stream: CdcStream, previous: RowPlan) -> None:
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
        log.info(
            "stream %s: the table changed (%s → %s); publishing schema version %d",
            stream.name,
            ", ".join(name for name, *_ in previous.shape),
            ", ".join(name for name, *_ in stream.plan.shape),
            version,
        )
        if stream.projection is None:
            self._track_columns(stream)

    def _message(self, message: LogicalMessage) -> None:
        if message.prefix == WATERMARK_PREFIX:
            if self._window is not None and self._window.on_marker(*parse_watermark(message.content)):
                self._close_window()
        elif message.prefix == DRAIN_PREFIX and message.content.decode() == self._drain_id:
            self._drained = self._flush_now = True
        # The position moved to the boundary below the message already (``PgoutputStream``).

    def _change(self, stream: CdcStream, message: Insert | Update | Delete, tx: Transaction, lsn: int) -> None:
        events = change_events(stream, message, tx, lsn)
        window = self._window
        if window is not None and window.stream == stream.name:
            for event in events:
                window.on_change(dumps(event.key))
        stream.pending.extend(events)
        self._pending += len(events)

    def _truncate(self, message: Truncate, change: Change) -> None:
        """A truncate: flush what came before, then one ``t`` event and a delete per live key, in one transaction."""
        streams = [s for relid in message.relids for s in self._by_relid.get(relid, ())]
        if not streams:
            return
        self._flush(force=True, at=change.before)
        tx, lsn = change.tx, change.lsn
        source = {"snapshot": "false", "lsn": lsn, "txId": tx.xid, "sequence": [tx.final_lsn, tx.index]}
        bootstrap = self.spec.kafka.resolved_bootstrap_servers()
        for stream in streams:
            if self._window is not None and self._window.stream == stream.name:
                self._window.on_truncate()
            stream.pending.append(ChangeEvent(TRUNCATE, {}, None, None, tx.commit_ms, source))
            deleted = {**source, "truncate": True}
            with replication_keepalive(self._live_cursor()):
                keys = list(live_keys(bootstrap, stream.writer.identity.topic))
            for raw in keys:
                key = decode_key(raw)
                stream.pending.append(ChangeEvent(DELETE, key, dict(key), None, tx.commit_ms, deleted))
            self._pending += len(stream.pending)
        self._flush(force=True)

    # -- publish --------------------------------------------------------------------------------------------
    def _flush(self, *, force: bool = False, at: tuple[Cursor, int] | None = None) -> None:
        """Publish pending events of every stream and the position in one Kafka transaction, then confirm.

        ``at``: a (cursor, confirm) before the log's current one, for what came before a change.
        """
        cursor, confirm = at if at is not None else (self._log.at, self._log.confirm)
        position = self.position.at(*cursor)
        if not self._policy.due(
            pending=self._pending,
            pending_age=0.0,
            moved=position != self._stored,
            since_commit=time.monotonic() - self._last_store,
            finishing=force,
        ):
            return
        assert self._publisher is not None and self._positions is not None
        out: list[OutRecord] = []
        results: list[tuple[str, WriteResult]] = []
        for stream in self.streams.values():
            if not stream.pending:
                continue
            events = reread_unchanged(self._engine, stream) if stream.unchanged else stream.pending
            snapshot_only = all(e.op == READ for e in events)  # a table's rows: each key once (contract)
            records, result = stream.writer.records(ChangeBatch(events, None), unique_key=snapshot_only)
            out.extend(records)
            results.append((stream.name, result))
        out.append(position_record(self._positions.topic, Position(self.key, position.to_dict())))
        with replication_keepalive(self._live_cursor()):
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
        if confirm:
            # Only now, after the Kafka commit: the slot may release WAL up to here.
            self._cursor.send_feedback(flush_lsn=confirm, force=True)

    def _live_cursor(self) -> Any:
        """The replication cursor once it streams (before, it holds the exported snapshot: leave it alone)."""
        return self._cursor if self._streaming else None

    # -- teardown -------------------------------------------------------------------------------------------
    def close(self) -> None:
        closers = [
            self._replication.close if self._replication is not None else None,
            self._admin.close if self._admin is not None else None,
            self._engine.dispose if self._engine is not None else None,
            self._publisher.close if self._publisher is not None else None,
        ]
        for closer in closers:
            try:
                if closer is not None:
                    closer()
            except Exception:  # closing is best effort; the error that got us here matters more
                pass
