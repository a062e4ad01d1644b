"""PostgreSQL CDC, the reader of one source: slot and publication, snapshot, streaming, flush and confirm.

See ``cdc_postgres`` for the guarantees; this module holds the moving parts, ``pg_streams`` the streams and
their table changes, ``pg_snapshot`` the snapshots, ``pg_changes`` the row mapping.
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
from liberation_assets.core.contract.serialize import dumps
from liberation_assets.core.engine.pg_changes import CdcStream, change_events, live_keys, reread_unchanged
from liberation_assets.core.engine.pg_snapshot import SnapshotSteps
from liberation_assets.core.engine.pg_streams import StreamSteps
from liberation_assets.core.engine.pg_summary import CdcSummary
from liberation_assets.core.engine.runtime import cdc_streams
from liberation_assets.core.engine.runtime import source_position_key as position_key
from liberation_assets.core.engine.writer import WriteResult
from liberation_assets.core.errors import SpecError
from liberation_assets.core.events import DELETE, READ, TRUNCATE, ChangeBatch, ChangeEvent
from liberation_assets.core.publish.flush import Flusher, FlushPolicy
from liberation_assets.core.publish.positions import PositionStore
from liberation_assets.core.publish.publisher import OutRecord, TransactionalPublisher
from liberation_assets.core.readers import pg_slot
from liberation_assets.core.readers.pg_keepalive import replication_keepalive
from liberation_assets.core.readers.pg_types import TypeCatalog
from liberation_assets.core.readers.pgoutput import Delete, Insert, LogicalMessage, Truncate, Update
from liberation_assets.core.readers.pgoutput.position import CdcPosition, TableProgress
from liberation_assets.core.readers.pgoutput.stream import (
    Change,
    Committed,
    Cursor,
    Marker,
    PgoutputStream,
    Transaction,
)
from liberation_assets.core.readers.pgoutput.watermark import WATERMARK_PREFIX, ChunkWindow, parse_watermark
from liberation_assets.core.spec import Spec

log = logging.getLogger("liberation.cdc_postgres")

HEARTBEAT_PREFIX = "liberation.heartbeat"
DRAIN_PREFIX = "liberation.drain"
BOUNDARY_PREFIXES = frozenset({HEARTBEAT_PREFIX, DRAIN_PREFIX, WATERMARK_PREFIX})
"""Our logical messages: between transactions, each one is a position the slot may advance to."""
SLOT_WAIT_SECONDS = pg_slot.SLOT_WAIT_SECONDS
POSITION_EVERY_SECONDS = 1.0
"""At most this often, a position-only transaction records progress made without events."""


class PostgresCdc(SnapshotSteps, StreamSteps):
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
        self._flusher: Flusher | None = None
        self._created: pg_slot.CreatedSlot | None = None
        """The slot this run created: its exported snapshot is read next (``snapshot``)."""
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
        """``connect``, then ``snapshot``: what a scheduled run and the tests call."""
        self.connect()
        self.snapshot()

    def connect(self) -> None:
        """Fence a crashed run, load the position, ensure publication and slot (created here if new)."""
        self._started = time.monotonic()
        kafka = self.spec.kafka
        bootstrap = kafka.resolved_bootstrap_servers()
        self._publisher = TransactionalPublisher(
            bootstrap, self.spec.transactional_id(self.source_name, "cdc"), kafka.producer
        )
        self._positions = PositionStore.for_spec(kafka)
        self._flusher = Flusher(
            self._publisher,
            self._positions.topic,
            self.key,
            self._policy,
            confirm=self.confirm,
            keepalive=lambda: replication_keepalive(self._live_cursor()),
        )
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
            self._created = pg_slot.create_slot(self._cursor, self.slot_names.slot)
            self.position = CdcPosition(
                lsn=self._created.consistent_point, slot=self.slot_names.slot, columns=self.position.columns
            )  # every table is read whole next
            self._log = PgoutputStream(self.position, BOUNDARY_PREFIXES)

    def snapshot(self) -> None:
        """A new slot's tables, read in its exported snapshot; then streaming starts (tables still to read are
        snapshotted with watermarks while it runs)."""
        if self._created is not None:
            created, self._created = self._created, None
            self._snapshot_exported(created.snapshot_name, created.consistent_point)
        self._snapshot_queue = [n for n in self.names if not self.position.tables.get(n, TableProgress()).done]
        pg_slot.start_streaming(self._cursor, self.slot_names.slot, self.slot_names.publication)
        self._streaming = True

    def confirm(self, lsn: int) -> None:
        """After a Kafka commit (``Flusher``): the slot may release WAL up to here."""
        self._cursor.send_feedback(flush_lsn=lsn, force=True)

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
        """Pending events of every stream and the position: one Kafka transaction, then the slot confirmed.

        ``at``: a (cursor, confirm) before the log's current one, for what came before a change.
        """
        cursor, confirm = at if at is not None else (self._log.at, self._log.confirm)
        position = self.position.at(*cursor)
        flusher = self._flusher
        assert flusher is not None
        if not flusher.due(pending=self._pending, moved=position != self._stored, finishing=force):
            return
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
        flusher.commit(out, position.to_dict(), confirm=confirm or None)
        for name, result in results:
            self.summary.add(name, result)
        self.summary.result.transactions += 1
        for stream in self.streams.values():
            stream.pending = []
            stream.unchanged = False
        self._pending = 0
        self.position = self._stored = position

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
