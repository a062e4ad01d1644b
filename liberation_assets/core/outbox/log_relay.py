"""``via: cdc``: relay an outbox from PostgreSQL's log instead of polling the table.

A slot and an inserts-only publication of the outbox table
(``liberation_outbox_<name>``) feed the ``EventRouter``.  The relay holds the same lease as the polling relay
(a session advisory lock) before it touches the slot or the producer, so a
second relay stands by instead of fencing the first.  Each batch is ONE Kafka
transaction of records plus the position (commit LSN, index of the change in
its transaction, and the batch's ``seq`` ranges); only after the commit is the
slot confirmed and are rows the application left in the table cleaned up.
Records leave in commit order, so one aggregate's events keep the order in
which their transactions committed.

A new slot exports a snapshot: rows already in the table then are published
from it, in the same transaction as the first position, so none is missed
(``snapshot``, after ``recover``: rows the last committed batch holds are
left out).  Flushes go through ``publish.flush.Flusher``; its ``confirm`` hook
(``confirm`` here) sends the slot's feedback and cleans up the rows.
A slot without a stored position never published anything and is recreated.
"""

from __future__ import annotations

import re
import select
import time
import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from liberation_assets.core.connect import create_source_engine
from liberation_assets.core.errors import SpecError
from liberation_assets.core.outbox.event_router import EventRouter
from liberation_assets.core.outbox.relay import (
    OutboxPosition,
    Router,
    TopicCreator,
    build_records,
    cleanup_statement,
    dialect_of,
    pending_query,
    position_key,
    transactional_id,
    try_lease,
)
from liberation_assets.core.outbox.table import check_outbox_table, table_for
from liberation_assets.core.publish.flush import Flusher, FlushPolicy
from liberation_assets.core.publish.positions import PositionStore
from liberation_assets.core.publish.publisher import OutRecord, TransactionalPublisher
from liberation_assets.core.readers import pg_slot
from liberation_assets.core.readers.pg_keepalive import replication_keepalive
from liberation_assets.core.readers.pgoutput import Insert, Relation
from liberation_assets.core.readers.pgoutput.position import CdcPosition
from liberation_assets.core.readers.pgoutput.stream import Change, Marker, PgoutputStream
from liberation_assets.core.spec import Spec

HEARTBEAT_PREFIX = "liberation.outbox.heartbeat"
DRAIN_PREFIX = "liberation.outbox.drain"
POSITION_EVERY_SECONDS = 1.0
SNAPSHOT_LIMIT = 100_000
"""Rows a new slot publishes from its snapshot in one transaction; more must be drained with ``via: poll`` first."""
BOUNDARY_PREFIXES = frozenset({HEARTBEAT_PREFIX, DRAIN_PREFIX})


def slot_name(outbox: str) -> str:
    return ("liberation_outbox_" + re.sub(r"[^a-z0-9_]", "_", outbox.lower()))[:63]


class OutboxLogRelay:
    """One outbox relayed from the log: slot (the lease), event router, transactional producer."""

    def __init__(self, spec: Spec, name: str):
        self.spec = spec
        self.name = name
        self.outbox = spec.outboxes[name]
        self.source = spec.sources[self.outbox.source]
        if self.source.dialect != "postgresql":
            raise SpecError(f"outboxes.{name}.via: cdc needs PostgreSQL; {self.outbox.source} is {self.source.dialect}")
        self.slot = self.publication = slot_name(name)
        self.table = table_for(self.outbox)
        self.bootstrap = spec.kafka.resolved_bootstrap_servers()
        self.router = Router(self.outbox.route, topic_prefix=spec.kafka.topic_prefix, outbox=name)
        self.events = EventRouter(self.outbox.db_schema or "public", self.outbox.table, self.router)
        self.relayed = self.transactions = 0
        self.position = self._stored = CdcPosition()
        self._engine: Engine | None = None
        self._admin: Connection | None = None
        self._replication: Any = None
        self._cursor: Any = None
        self._publisher: TransactionalPublisher | None = None
        self._positions: PositionStore | None = None
        self._flusher: Flusher | None = None
        self._created: pg_slot.CreatedSlot | None = None
        self.ensure_topics = TopicCreator(spec)
        self._pending: list[OutRecord] = []
        self._seqs: list[int] = []
        self._log = PgoutputStream(CdcPosition(), BOUNDARY_PREFIXES)
        self._last_heartbeat = 0.0
        self._policy = FlushPolicy(
            self.outbox.batch_size, max_age_seconds=0.0, idle_position_seconds=POSITION_EVERY_SECONDS
        )
        self._drain_id: str | None = None
        self._drained = False
        self._last_batch: list[int] = []
        self._streaming = False

    # -- setup ----------------------------------------------------------------------------------------------
    def acquire(self) -> bool:
        """Take the lease, then the slot (creating it with a snapshot if needed); False when another relay leads."""
        self._engine = create_source_engine(self.source, pool_size=1, max_overflow=2)
        self._admin = admin = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        pg_slot.check_role(admin)
        check_outbox_table(admin, self.outbox)
        if not try_lease(admin, self.outbox):
            return False
        self._ensure_publication(admin)
        info = pg_slot.released_slot(admin, self.slot)
        self._replication = pg_slot.open_replication(self.source)
        self._cursor = self._replication.cursor()
        self._start_producer()
        stored = self._positions.get(position_key(self.name)) if self._positions else None
        from_log = stored is not None and "lsn" in stored  # not a position left by `via: poll`
        if info is not None and not from_log:
            # Nothing was ever published from this slot (a crash right after creating it): start it afresh.
            admin.execute(sa.text("SELECT pg_drop_replication_slot(:s)"), {"s": self.slot})
            info = None
        pg_slot.check_slot(
            info, slot=self.slot, database=self.source.resolved_url().database or "", has_position=from_log
        )
        self.position = self._stored = CdcPosition.from_dict(stored)
        self._log = PgoutputStream(self._stored, BOUNDARY_PREFIXES)
        if info is None:
            self._created = pg_slot.create_slot(self._cursor, self.slot)
        self._last_batch = OutboxPosition.from_dict(stored).seqs()
        return True

    def snapshot(self) -> None:
        """A new slot's rows, from its exported snapshot; then streaming starts."""
        if self._created is not None:
            created, self._created = self._created, None
            self._publish_snapshot(created)
        pg_slot.start_streaming(self._cursor, self.slot, self.publication)
        self._streaming = True

    def _ensure_publication(self, admin: Connection) -> None:
        """Inserts only: the log then carries no cleanup deletes, and a peek at the slot means real events."""
        if admin.execute(sa.text("SELECT 1 FROM pg_publication WHERE pubname = :p"), {"p": self.publication}).first():
            return
        quote = admin.dialect.identifier_preparer.quote
        admin.exec_driver_sql(
            f"CREATE PUBLICATION {quote(self.publication)} FOR TABLE "
            f"{quote(self.events.schema)}.{quote(self.outbox.table)} WITH (publish = 'insert')"
        )

    def recover(self) -> int:
        """Clean up the rows of the last batch Kafka committed, if a crash left them; never publish them again."""
        return self._cleanup(self._last_batch)

    def _start_producer(self) -> None:
        self._publisher = TransactionalPublisher(
            self.bootstrap, transactional_id(self.spec, self.name), self.spec.kafka.producer
        )
        self._positions = PositionStore.for_spec(self.spec.kafka)
        self._flusher = Flusher(
            self._publisher,
            self._positions.topic,
            position_key(self.name),
            self._policy,
            confirm=self.confirm,
            keepalive=lambda: replication_keepalive(self._cursor if self._streaming else None),
        )

    def _publish_snapshot(self, created: pg_slot.CreatedSlot) -> None:
        """Rows committed before the slot's consistent point, read in its exported snapshot, with the first position."""
        assert self._engine is not None
        with self._engine.connect() as connection:
            connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                pg_slot.use_snapshot(connection, created.snapshot_name)
                rows = connection.execute(pending_query(self.table, SNAPSHOT_LIMIT + 1)).all()
        if len(rows) > SNAPSHOT_LIMIT:
            raise SpecError(
                f"outbox {self.name} holds more than {SNAPSHOT_LIMIT} unrelayed rows; relay them with "
                "`via: poll` first, then switch to `via: cdc`"
            )
        committed = set(self._last_batch)  # Kafka holds them: cleaned up by ``recover``, still in the snapshot
        rows = [row for row in rows if row[0] not in committed]
        self._pending = build_records(rows, self.router)
        self._seqs = [row[0] for row in rows]
        self.position = CdcPosition(lsn=created.consistent_point, complete=True, slot=self.slot)
        self._log = PgoutputStream(self.position, BOUNDARY_PREFIXES)
        self._flush(force=True)

    # -- streaming ------------------------------------------------------------------------------------------
    def run(self, until: Callable[[], bool]) -> None:
        """Stream until ``until()``; publish whenever a batch fills or the log goes quiet."""
        cursor, batch_size = self._cursor, self.outbox.batch_size
        heartbeat_every = self.source.cdc.heartbeat_every.total_seconds()
        while True:
            message = cursor.read_message()
            if message is not None:
                self._handle(message.payload)
                if len(self._pending) >= batch_size:
                    self._flush()
                    if until():
                        return
                continue
            self._flush()
            if until():
                return
            if time.monotonic() - self._last_heartbeat >= heartbeat_every:
                self._emit(HEARTBEAT_PREFIX, "")
            select.select([cursor], [], [], min(1.0, self.outbox.follow_poll_every.total_seconds() * 4))

    def drain(self) -> None:
        """Relay everything committed up to now, then return."""
        self._drain_id = uuid.uuid4().hex
        self._emit(DRAIN_PREFIX, self._drain_id)
        self.run(until=lambda: self._drained)
        self._flush(force=True)

    def _emit(self, prefix: str, content: str) -> None:
        assert self._admin is not None
        pg_slot.emit_message(self._admin, prefix, content)
        self._last_heartbeat = time.monotonic()

    def _handle(self, payload: bytes) -> None:
        item = self._log.feed(payload)
        if isinstance(item, Change):
            if type(item.message) is Insert and (routed := self.events.record(item.message)) is not None:
                self._seqs.append(routed[0])
                self._pending.append(routed[1])
        elif isinstance(item, Relation):
            self.events.relation(item)
        elif isinstance(item, Marker):
            if item.message.prefix == DRAIN_PREFIX and item.message.content.decode() == self._drain_id:
                self._drained = True

    def _flush(self, *, force: bool = False) -> None:
        """Records and position in one Kafka transaction; then confirm the slot and clean up the rows."""
        self.position = self._log.position(self.position)
        flusher = self._flusher
        assert flusher is not None
        if not flusher.due(pending=len(self._pending), moved=self.position != self._stored, finishing=force):
            return
        records, seqs = self._pending, self._seqs
        self._pending, self._seqs = [], []
        relayed = len(records)
        self.ensure_topics({record[0] for record in records})
        value = {**self.position.to_dict(), **OutboxPosition.of(seqs).to_dict()}
        flusher.commit(records, value, confirm=(self._log.confirm, seqs))
        self._stored = self.position
        self.relayed += relayed
        self.transactions += 1

    def confirm(self, through: tuple[int, list[int]]) -> None:
        """After the Kafka commit (``Flusher``): the slot up to the LSN, then the rows the application left."""
        lsn, seqs = through
        if lsn:
            self._cursor.send_feedback(flush_lsn=lsn, force=True)
        self._cleanup(seqs)

    def _cleanup(self, seqs: list[int]) -> int:
        """Rows the application did not delete itself go now that Kafka has them."""
        if not seqs:
            return 0
        assert self._admin is not None
        statement = cleanup_statement(self.table, seqs, self.outbox.cleanup, dialect_of(self._admin))
        return int(self._admin.execute(statement).rowcount or 0)

    def close(self) -> None:
        """Best effort: the error that brought us here, if any, matters more than one raised while closing."""
        closers: list[Callable[[], object]] = []
        if self._replication is not None:
            closers.append(self._replication.close)
        if self._admin is not None:
            closers.append(self._admin.close)
        if self._engine is not None:
            closers.append(self._engine.dispose)
        if self._publisher is not None:
            closers.append(self._publisher.close)
        for closer in closers:
            try:
                closer()
            except Exception:
                pass
