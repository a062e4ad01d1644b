"""PostgreSQL CDC: the streams of one source, their writers, and their tables' changes met in the log.

A mixin of ``PostgresCdc`` (like ``pg_snapshot.SnapshotSteps``): the attributes
below are the reader's state these steps use.  Each stream's table is gated
(``contract.gate``) and versioned here, before any event read with its new shape
is published.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.engine import Connection, Engine

from liberation_assets.core.contract.gate import ensure_schema
from liberation_assets.core.contract.history import SchemaVersion
from liberation_assets.core.contract.validate import ContractValidator
from liberation_assets.core.engine.pg_changes import CdcStream
from liberation_assets.core.engine.runtime import StreamRuntime, stream_format
from liberation_assets.core.engine.writer import StreamWriter
from liberation_assets.core.errors import SchemaIncompatible
from liberation_assets.core.events import StreamIdentity
from liberation_assets.core.publish.positions import PositionStore
from liberation_assets.core.publish.publisher import TransactionalPublisher
from liberation_assets.core.readers.pg_types import PgType, TypeCatalog
from liberation_assets.core.readers.pgoutput import Relation
from liberation_assets.core.readers.pgoutput.position import CdcPosition, TableProgress
from liberation_assets.core.readers.pgoutput.rows import RowPlan
from liberation_assets.core.readers.pgoutput.watermark import ChunkWindow
from liberation_assets.core.readers.table import ProjectedTable, reflect_stream_table
from liberation_assets.core.spec import SourceSpec, Spec

log = logging.getLogger("liberation.cdc_postgres")


class StreamSteps:
    spec: Spec
    source: SourceSpec
    _engine: Engine | None
    _admin: Connection | None
    _cursor: Any
    _publisher: TransactionalPublisher | None
    _positions: PositionStore | None
    _window: ChunkWindow | None
    _snapshot_queue: list[str]
    _types: TypeCatalog
    streams: dict[str, CdcStream]
    _by_relid: dict[int, list[CdcStream]]
    _by_table: dict[tuple[str, str], list[CdcStream]]
    position: CdcPosition

    def _flush(self, *, force: bool = False, at: Any = None) -> None:
        raise NotImplementedError

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
