"""MariaDB / MySQL CDC, the reader of one source: its streams' writers, the snapshot, the binlog, the flushes.

See ``cdc_mysql`` for the entry points.  One reader per source reads every CDC stream of that source.  All records
of a micro-batch, across the source's streams, and ONE position record form one
Kafka transaction of the producer ``liberation.<source>.cdc``; the position
(binlog file, transaction start, last published rows event, GTID) is stored
under ``source/<name>/cdc``.  A crash therefore loses nothing and repeats
nothing: a restart reads the position committed with the last events.

The snapshot takes no global lock on MariaDB (and only an instant one on
MySQL), is chunked, and resumes after its last committed chunk.  Streaming then
starts from the snapshot's binlog position.  When the stored position has been
purged from the server, ``PositionLost`` says so and asks for a re-snapshot:
nothing is ever skipped silently.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from liberation_assets.core.connect import create_source_engine
from liberation_assets.core.contract.formats import decode_key
from liberation_assets.core.contract.serialize import now_ms
from liberation_assets.core.engine.mysql_summary import CdcSummary
from liberation_assets.core.engine.reconcile import end_offsets, unseen_live_keys
from liberation_assets.core.engine.runtime import StreamRuntime, cdc_streams
from liberation_assets.core.engine.runtime import source_position_key as position_key
from liberation_assets.core.engine.writer import StreamWriter
from liberation_assets.core.errors import SpecError
from liberation_assets.core.events import DELETE, ChangeBatch, ChangeEvent
from liberation_assets.core.publish.flush import Flusher, FlushPolicy
from liberation_assets.core.publish.positions import PositionStore
from liberation_assets.core.publish.publisher import OutRecord, TransactionalPublisher
from liberation_assets.core.readers.binlog.client import (
    LogReader,
    ServerInfo,
    binary_logs,
    bytes_behind,
    connection_settings,
    current_coordinates,
    ensure_resumable,
    inspect_server,
    replica_server_id,
)
from liberation_assets.core.readers.binlog.decoder import BinlogDecoder, Routes
from liberation_assets.core.readers.binlog.mapping import Hints, StreamMapper, StreamShape
from liberation_assets.core.readers.binlog.position import BinlogPosition, StreamSnapshot, coordinates_key
from liberation_assets.core.readers.binlog.snapshot import consistent_snapshot, snapshot_chunks
from liberation_assets.core.readers.mysql_types import source_types
from liberation_assets.core.readers.table import ProjectedTable, reflect_stream_table
from liberation_assets.core.spec import Spec

log = logging.getLogger("liberation.cdc_mysql")

FLUSH_AFTER_SECONDS = 0.1
"""A partly filled batch is committed after this long: the latency bound under light load.  The loop only looks
at the clock when the server sends something, so an idle server's heartbeats come as often (``WAKE_SECONDS``)."""
WAKE_SECONDS = 0.1
"""The server's heartbeat period while streaming: a quiet log still wakes the loop to commit a waiting batch (at 1 s,
the old period, a change waited up to a second for the next heartbeat after its commit)."""
IDLE_POSITION_SECONDS = 5.0
"""When only other tables change, the position still moves forward this often."""

SnapshotProgress = Callable[[str, int], None]
"""Called after each committed snapshot chunk with (stream, rows so far)."""


class MySqlCdc:
    """The snapshot-then-binlog reader of one MySQL/MariaDB source (``cdc_mysql`` runs it)."""

    def __init__(self, spec: Spec, source_name: str, *, progress: SnapshotProgress | None = None):
        if source_name not in spec.sources:
            raise SpecError(f"unknown source {source_name!r}; sources: {', '.join(spec.sources)}")
        self.spec = spec
        self.name = source_name
        self.source = spec.sources[source_name]
        if self.source.dialect != "mysql":
            raise SpecError(f"source {source_name} is {self.source.dialect}, not MySQL/MariaDB")
        self.names = cdc_streams(spec, source_name)
        if not self.names:
            raise SpecError(f"source {source_name} has no stream with the cdc pattern (patterns: [cdc])")
        self.progress = progress
        self.bootstrap = spec.kafka.resolved_bootstrap_servers()
        self.engine = create_source_engine(self.source)
        self.runtimes = {name: StreamRuntime(spec, name, "cdc") for name in self.names}
        for runtime in self.runtimes.values():
            runtime.ensure_topics()
        # init_transactions fences a crashed run of this source before its position is read.
        self.publisher = TransactionalPublisher(
            self.bootstrap, spec.transactional_id(source_name, "cdc"), spec.kafka.producer
        )
        self.store = PositionStore.for_spec(spec.kafka)
        cdc = self.source.cdc
        self.flusher = Flusher(
            self.publisher,
            self.store.topic,
            position_key(source_name),
            FlushPolicy(
                cdc.batch_size, max_age_seconds=FLUSH_AFTER_SECONDS, idle_position_seconds=IDLE_POSITION_SECONDS
            ),
        )
        """The binlog needs no confirm: the position in Kafka is all a restart reads."""
        self.writers = {name: self._writer(runtime) for name, runtime in self.runtimes.items()}
        self._tables: dict[str, ProjectedTable] = {}
        self.info: ServerInfo | None = None

    def _writer(self, runtime: StreamRuntime) -> StreamWriter:
        """A stream's writer on the source's shared publisher (building its identity runs the schema gate)."""
        return runtime.writer_on(self.publisher, self.store.topic)

    def _refresh_schemas(self, position: BinlogPosition) -> list[str]:
        """After DDL: rebuild the writers, so a compatible table change registers the next schema version before
        the following events are published (an incompatible one stops the stream).  Returns the streams that
        publish every column and whose columns changed: rows the log will not touch must be read again."""
        for name in self.names:
            self.runtimes[name].close()
            self.runtimes[name] = StreamRuntime(self.spec, name, "cdc")
            self.writers[name] = self._writer(self.runtimes[name])
        self._tables.clear()
        return [name for name, columns in self._all_columns().items() if position.columns.get(name) != columns]

    def _all_columns(self) -> dict[str, tuple[str, ...]]:
        """The current source columns of the streams that publish every column."""
        return {
            name: tuple(self.table(name).columns.values())
            for name in self.names
            if self.spec.streams[name].projection is None
        }

    def close(self) -> None:
        self.publisher.close()
        for runtime in self.runtimes.values():
            runtime.close()
        self.engine.dispose()

    # -- the run ------------------------------------------------------------------------------------------
    def run(
        self,
        *,
        drain: bool,
        until: Callable[[], bool] | None = None,
        resnapshot: bool = False,
        summary: CdcSummary | None = None,
    ) -> CdcSummary:
        """Snapshot what needs it, then stream: to the binlog's end as of now (``drain``) or until told to stop.

        ``summary``: counters to add to (one summary across reconnects).
        """
        summary = summary if summary is not None else CdcSummary()
        position = self.connect(resnapshot=resnapshot)
        position = self.snapshot(position, summary)
        self.changes(position, summary, drain=drain, until=until)
        return summary

    def connect(self, *, resnapshot: bool = False) -> BinlogPosition | None:
        """Reach the server and read the stored position (None: nothing published yet, or ``resnapshot``);
        ``PositionLost`` if the binlog it names was purged."""
        with self.engine.connect() as connection:
            self.info = inspect_server(connection, self.name)
            logs = binary_logs(connection)
        stored = None if resnapshot else self.store.get(position_key(self.name))
        position = BinlogPosition.from_dict(stored) if stored else None
        if position is not None:
            ensure_resumable(logs, position, self.name)
        return position

    def snapshot(self, position: BinlogPosition | None, summary: CdcSummary) -> BinlogPosition:
        """The streams not snapshotted yet (all of them the first time), or an interrupted snapshot, finished."""
        missing = [name for name in self.names if position is None or name not in position.streams]
        if position is None or missing or position.snapshot:
            return self._snapshot(position, missing, summary)
        return position

    def changes(
        self, position: BinlogPosition, summary: CdcSummary, *, drain: bool, until: Callable[[], bool] | None
    ) -> None:
        """Stream the binlog; a table change that asks for streams to be snapshotted again does that and goes on."""
        while True:
            position = self._stream(position, summary, drain=drain, until=until)
            if set(self.names) <= set(position.streams):
                break
            position = self.snapshot(position, summary)
        with self.engine.connect() as connection:
            final = summary.position or position
            summary.bytes_behind = bytes_behind(binary_logs(connection), final.file, final.pos)

    def _publish(self, records: list[OutRecord], position: BinlogPosition, summary: CdcSummary) -> None:
        self.flusher.commit(records, position.to_dict())
        summary.transactions += 1
        summary.position = position

    # -- snapshot -----------------------------------------------------------------------------------------
    def table(self, name: str) -> ProjectedTable:
        if name not in self._tables:
            stream = self.spec.streams[name].model_copy(update={"cursor": None})
            self._tables[name] = reflect_stream_table(self.engine, stream, name)
        return self._tables[name]

    def _snapshot(self, position: BinlogPosition | None, missing: list[str], summary: CdcSummary) -> BinlogPosition:
        """Snapshot the streams that need it; the binlog is then streamed from the stored (or this snapshot's) position.

        A resumed or added-stream snapshot reads at a later binlog position than
        streaming restarts from, so changes in between are applied again after
        those rows: with full row images every key still ends at its exact state.
        """
        assert self.info is not None
        summary.snapshot_started_s = time.time()
        with consistent_snapshot(self.engine, self.info.flavor) as (connection, point):
            summary.snapshot_lock_ms += point.lock_ms
            if position is None:
                position = BinlogPosition(point.file, point.pos, gtid=point.gtid, server_id=self.info.server_id)
            todo = {n: p for n, p in (position.snapshot or {}).items() if n in self.runtimes}
            for name in missing:
                if name not in todo:
                    todo[name] = StreamSnapshot(start_offsets=end_offsets(self.bootstrap, self.runtimes[name].topic))
            columns = {n: c for n, c in self._all_columns().items() if n in todo}
            position = replace(position, snapshot=todo, columns={**position.columns, **columns})
            source = {"file": point.file, "pos": point.pos, "gtid": point.gtid, "server_id": self.info.server_id}
            log.info("source %s: snapshot of %s at %s:%s", self.name, ", ".join(todo), point.file, point.pos)
            for name, progress in todo.items():
                if not progress.chunks_done:
                    position = self._snapshot_stream(connection, name, progress, position, source, summary)
        for name in todo:
            self._reconcile(name, position, summary)
        position = position.snapshot_finished()
        self._publish([], position, summary)
        summary.snapshot_finished_s = time.time()
        return position

    def _snapshot_stream(
        self,
        connection: sa.Connection,
        name: str,
        progress: StreamSnapshot,
        position: BinlogPosition,
        source: dict[str, Any],
        summary: CdcSummary,
    ) -> BinlogPosition:
        writer = self.writers[name]
        chunks = snapshot_chunks(
            connection,
            self.table(name),
            after_key=progress.after_key,
            chunk_size=self.source.cdc.snapshot_chunk,
            zone=writer.identity.zone,
            source=source,
        )
        for events, after_key, last in chunks:
            progress = replace(progress, after_key=after_key, rows=progress.rows + len(events), chunks_done=last)
            position = position.with_snapshot(name, progress)
            records, result = writer.records(ChangeBatch(events, None), unique_key=True)
            self._publish(records, position, summary)
            summary.result(name).add(result)
            summary.snapshot_rows[name] = summary.snapshot_rows.get(name, 0) + len(events)
            if self.progress:
                self.progress(name, progress.rows)
        return position

    def _reconcile(self, name: str, position: BinlogPosition, summary: CdcSummary) -> None:
        """Delete keys that stayed live in the topic but were not found by the snapshot (see ``reconcile``)."""
        assert position.snapshot is not None
        runtime = self.runtimes[name]
        vanished = unseen_live_keys(self.bootstrap, runtime.topic, position.snapshot[name].start_offsets)
        batch = self.source.cdc.batch_size
        for start in range(0, len(vanished), batch):
            ts = now_ms()
            events = [
                ChangeEvent(DELETE, decode_key(key), None, None, ts, {"snapshot": "false", "reconciliation": True})
                for key in vanished[start : start + batch]
            ]
            records, result = self.writers[name].records(ChangeBatch(events, None))
            self._publish(records, position, summary)
            summary.result(name).add(result)
            summary.reconciled_deletes += len(events)

    # -- streaming ----------------------------------------------------------------------------------------
    def _hints(self, name: str) -> Callable[[], Hints]:
        stream = self.spec.streams[name]

        def reflect() -> Hints:
            with self.engine.connect() as connection:
                return source_types(connection, stream.db_schema, stream.table)

        return reflect

    def _routes(self) -> Routes:
        assert self.info is not None
        database = self.source.resolved_url().database or ""
        routes: Routes = {}
        for name in self.names:
            stream = self.spec.streams[name]
            shape = StreamShape.of(name, stream, self.table(name), self.writers[name].identity.zone)
            mapper = StreamMapper(shape, self.info.flavor, self._hints(name))
            routes.setdefault((stream.db_schema or database, stream.table), []).append(mapper)
        return routes

    def _stream(
        self, position: BinlogPosition, summary: CdcSummary, *, drain: bool, until: Callable[[], bool] | None
    ) -> BinlogPosition:
        """Publish the binlog from ``position``; returns the last committed position."""
        with self.engine.connect() as connection:
            target = coordinates_key(*current_coordinates(connection)) if drain else None
        if target is not None and position.event == 0 and position.coordinates >= target:
            summary.position = summary.position or position
            return position
        routes = self._routes()
        decoder = BinlogDecoder(position, routes)
        cdc = self.source.cdc
        reader = LogReader(
            connection_settings(self.source),
            replica_server_id(self.name, self.source),
            position,
            schemas=[schema for schema, _ in routes],
            tables=[table for _, table in routes],
            heartbeat_seconds=min(cdc.heartbeat_every.total_seconds(), WAKE_SECONDS),
            source_name=self.name,
        )
        log.info("source %s: streaming the binlog from %s", self.name, position.describe())
        pending: dict[str, list[ChangeEvent]] = {}
        count, first_pending, committed = 0, 0.0, position
        flusher = self.flusher
        flusher.last_commit = time.monotonic()  # a moved position alone waits its idle period from here
        ddl_seen = truncated_seen = 0
        try:
            for item in reader:
                added = decoder.feed(item, pending)
                if decoder.stats.ddl != ddl_seen:
                    ddl_seen = decoder.stats.ddl
                    if count:  # events before the DDL go out under the schema they were written with
                        committed, count = self._flush(pending, decoder, summary), 0
                    reread = self._refresh_schemas(position) + decoder.stats.truncated[truncated_seen:]
                    truncated_seen = len(decoder.stats.truncated)
                    if reread:
                        committed = replace(
                            decoder.position(), streams=tuple(n for n in position.streams if n not in reread)
                        )
                        self._publish([], committed, summary)
                        log.info(
                            "source %s: %s changed (columns or truncated); snapshotting again",
                            self.name,
                            ", ".join(reread),
                        )
                        break
                now = time.monotonic()
                if added and not count:
                    first_pending = now
                count += added
                finished = (
                    target is not None
                    and not decoder.in_transaction
                    and coordinates_key(decoder.file, decoder.boundary) >= target
                ) or (until is not None and until())
                moved = decoder.position() != committed
                if flusher.due(pending=count, pending_age=now - first_pending, moved=moved, finishing=finished):
                    committed, count = self._flush(pending, decoder, summary), 0
                if finished:
                    break
        finally:
            reader.close()
        summary.ddl += decoder.stats.ddl
        summary.skipped_as_published += decoder.stats.skipped_as_published
        summary.truncated.extend(decoder.stats.truncated)
        summary.position = committed
        return committed

    def _flush(
        self, pending: dict[str, list[ChangeEvent]], decoder: BinlogDecoder, summary: CdcSummary
    ) -> BinlogPosition:
        records: list[OutRecord] = []
        for name, events in pending.items():
            out, result = self.writers[name].records(ChangeBatch(events, None))
            records.extend(out)
            summary.result(name).add(result)
        pending.clear()
        position = decoder.position()
        self._publish(records, position, summary)
        return position
