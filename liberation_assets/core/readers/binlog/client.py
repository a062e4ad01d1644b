"""The binlog I/O: server checks, binlog coordinates, and the replication stream as neutral log items.

This is the only module that knows python-mysql-replication's event classes.
The stream connects as a replica with its own server id, starting at a
transaction boundary, with server heartbeats so an idle log still wakes the
reader up to flush and to notice a deadline.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pymysql
import sqlalchemy as sa
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.bitmap import BitGet
from pymysqlreplication.constants import FIELD_TYPE
from pymysqlreplication.event import GtidEvent, HeartbeatLogEvent, MariadbGtidEvent, QueryEvent, RotateEvent, XidEvent
from pymysqlreplication.row_event import DeleteRowsEvent, RowsEvent, UpdateRowsEvent, WriteRowsEvent
from sqlalchemy.engine import Connection

from liberation_assets.core.errors import PermissionProblem, PositionLost, SourceMisconfigured
from liberation_assets.core.events import CREATE, DELETE, UPDATE
from liberation_assets.core.readers.binlog.log import (
    Begin,
    ColumnMeta,
    Commit,
    Heartbeat,
    LogItem,
    LogTable,
    Rotate,
    Rows,
    Statement,
)
from liberation_assets.core.readers.binlog.position import BinlogPosition, coordinates_key
from liberation_assets.core.readers.binlog.rows import RowImageReader
from liberation_assets.core.readers.binlog.temporal import TEMPORAL, read_temporal
from liberation_assets.core.readers.binlog.values import MARIADB, MYSQL
from liberation_assets.core.spec import SourceSpec

ER_MASTER_FATAL_ERROR_READING_BINLOG = 1236
ER_ACCESS_DENIED = (1045, 1227, 1142, 1044)
_REQUIRED = {"log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "FULL", "binlog_row_metadata": "FULL"}
_EVENTS = [
    RotateEvent,
    GtidEvent,
    MariadbGtidEvent,
    QueryEvent,
    XidEvent,
    WriteRowsEvent,
    UpdateRowsEvent,
    DeleteRowsEvent,
    HeartbeatLogEvent,
]


# Row images are read by ``rows.RowImageReader`` where it can (``_read_rows``); where it cannot, the library reads
# them.  The library has no hook for its column decoding, so its (name-mangled) reader is wrapped once, here, in the
# only module that knows the library: temporal columns are read by ``temporal``, every other type by the library.
_library_read_value = RowsEvent._RowsEvent__read_values_name  # type: ignore[attr-defined]


def _read_value(
    self: Any,
    column: Any,
    null_bitmap: Any,
    null_bitmap_index: int,
    is_partial: bool,
    cols_bitmap: Any,
    unsigned: bool,
    i: int,
) -> Any:
    """The library's column reader, with temporal values decoded by ``temporal`` (see there why)."""
    if column.type in TEMPORAL and BitGet(cols_bitmap, i) and not self._is_null(null_bitmap, null_bitmap_index):
        return read_temporal(self.packet.read, column)
    return _library_read_value(self, column, null_bitmap, null_bitmap_index, is_partial, cols_bitmap, unsigned, i)


RowsEvent._RowsEvent__read_values_name = _read_value  # type: ignore[attr-defined]


def connection_settings(source: SourceSpec) -> dict[str, Any]:
    """PyMySQL settings for the replication connection; secrets resolve here, never stored."""
    url = source.resolved_url()
    return {
        "host": url.host or "127.0.0.1",
        "port": url.port or 3306,
        "user": url.username or "",
        "password": url.password or "",
        "connect_timeout": 10,
        "charset": "utf8mb4",
    }


def replica_server_id(source_name: str, source: SourceSpec) -> int:
    """The server id this reader presents: configured, or derived from the source so each source has its own.

    The server drops an older replica connection that uses the same id, so two
    readers of one source cannot stream at once, while different sources can.
    """
    if source.cdc.server_id:
        return source.cdc.server_id
    url = source.resolved_url()
    identity = f"{source_name}|{url.host}|{url.port}|{url.database}"
    return 1_000_000 + zlib.crc32(identity.encode()) % 2_000_000_000


@dataclass(frozen=True)
class ServerInfo:
    """Which server this is and whether its binlog can be captured."""

    flavor: str
    version: str
    server_id: int


def binlog_problems(settings: dict[str, str]) -> list[str]:
    """What in the server's global variables keeps its binlog from being captured row by row."""
    problems = [
        f"{name}={settings.get(name, 'unsupported')} (needs {wanted})"
        for name, wanted in _REQUIRED.items()
        if settings.get(name, "").upper() != wanted
    ]
    if "PARTIAL_JSON" in settings.get("binlog_row_value_options", "").upper():
        problems.append(
            "binlog_row_value_options=PARTIAL_JSON (needs it empty: partial JSON updates carry no full image)"
        )
    return problems


def inspect_server(connection: Connection, source_name: str) -> ServerInfo:
    """The server's flavor and id; a clear error when its binlog settings do not allow row capture."""
    version = str(connection.exec_driver_sql("SELECT VERSION()").scalar_one())
    server_id = int(connection.exec_driver_sql("SELECT @@server_id").scalar_one())
    names = ", ".join(f"'{name}'" for name in (*_REQUIRED, "binlog_row_value_options"))
    settings = {
        str(k).lower(): str(v)
        for k, v in connection.exec_driver_sql(f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({names})").all()
    }
    if problems := binlog_problems(settings):
        raise SourceMisconfigured(
            f"source {source_name}: the binlog cannot be captured: {', '.join(problems)}. Start the server with "
            "--log-bin --binlog-format=ROW --binlog-row-image=FULL --binlog-row-metadata=FULL "
            "(binlog_row_metadata needs MariaDB 10.5+ or MySQL 8.0.14+)."
        )
    return ServerInfo(MARIADB if "mariadb" in version.lower() else MYSQL, version, server_id)


def _privileged(connection: Connection, statement: str, what: str) -> list[Any]:
    try:
        return list(connection.exec_driver_sql(statement).all())
    except sa.exc.DBAPIError as exc:
        code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
        if code in ER_ACCESS_DENIED:
            raise PermissionProblem(
                f"{what} needs the REPLICATION CLIENT (MariaDB: BINLOG MONITOR) privilege: {exc.orig}"
            ) from None
        raise


def binary_logs(connection: Connection) -> list[tuple[str, int]]:
    """The server's binlog files, oldest first, with their sizes."""
    return [
        (str(row[0]), int(row[1])) for row in _privileged(connection, "SHOW BINARY LOGS", "listing the binlog files")
    ]


def current_coordinates(connection: Connection) -> tuple[str, int]:
    """Where the server is writing its binlog now."""
    try:
        rows = _privileged(connection, "SHOW MASTER STATUS", "reading the binlog position")
    except sa.exc.ProgrammingError:  # MySQL 8.4 renamed it
        rows = _privileged(connection, "SHOW BINARY LOG STATUS", "reading the binlog position")
    if not rows:
        raise SourceMisconfigured("the server has no binary log: start it with --log-bin")
    return str(rows[0][0]), int(rows[0][1])


def bytes_behind(logs: list[tuple[str, int]], file: str, pos: int) -> int:
    """How many binlog bytes lie after ``file:pos``: a lag figure that needs no clocks."""
    here = coordinates_key(file, pos)
    total = 0
    for name, size in logs:
        start = coordinates_key(name, 0)
        if start[0] > here[0]:
            total += size
        elif start[0] == here[0]:
            total += max(0, size - pos)
    return total


def ensure_resumable(logs: list[tuple[str, int]], position: BinlogPosition, source_name: str) -> None:
    """Fail loudly when the server no longer has the stored position: never skip what was purged."""
    sizes = dict(logs)
    if position.file in sizes and position.pos <= sizes[position.file]:
        return
    oldest = logs[0][0] if logs else "none"
    why = (
        f"{position.file} has been purged from the server (its oldest binlog is now {oldest})"
        if position.file not in sizes
        else f"{position.file} is shorter than {position.pos} bytes (was the binlog reset?)"
    )
    raise PositionLost(
        f"source {source_name}: the stored binlog position {position.describe()} can no longer be read: {why}. "
        "Changes made since then are gone from the log, so liberation stops instead of skipping them. "
        f"Re-snapshot the source: `liberation follow {source_name} --resnapshot`, or materialize its cdc assets with "
        "run config resnapshot: true. To avoid this, keep binlog_expire_logs_seconds longer than any outage of liberation."
    )


class LogReader:
    """The replication stream from a transaction boundary, as log items, for the given schemas and tables."""

    def __init__(
        self,
        settings: dict[str, Any],
        server_id: int,
        start: BinlogPosition,
        *,
        schemas: Iterable[str],
        tables: Iterable[str],
        heartbeat_seconds: float,
        source_name: str,
    ):
        self.source_name = source_name
        self.start = start
        self._stream = BinLogStreamReader(
            connection_settings=dict(settings),
            server_id=server_id,
            log_file=start.file,
            log_pos=start.pos,
            resume_stream=True,
            blocking=True,
            only_events=_EVENTS,
            only_schemas=sorted(set(schemas)),
            only_tables=sorted(set(tables)),
            slave_heartbeat=heartbeat_seconds,
            enable_logging=False,
        )
        self._layouts: dict[tuple[Any, ...], LogTable] = {}
        self._readers: dict[tuple[Any, ...], RowImageReader | None] = {}
        self._last: tuple[object, LogTable, bool, RowImageReader | None] | None = None

    def close(self) -> None:
        self._stream.close()

    def __iter__(self) -> Iterator[LogItem]:
        try:
            for event in self._stream:
                item = self._item(event)
                if item is not None:
                    yield item
        except pymysql.err.MySQLError as exc:
            if exc.args and exc.args[0] == ER_MASTER_FATAL_ERROR_READING_BINLOG:
                raise PositionLost(
                    f"source {self.source_name}: the server cannot stream from {self.start.describe()}: {exc.args[1]}. "
                    f"Re-snapshot the source: `liberation follow {self.source_name} --resnapshot`."
                ) from None
            raise

    def _item(self, event: Any) -> LogItem | None:
        kind = type(event)
        if kind is WriteRowsEvent:
            return self._rows(CREATE, event)
        if kind is UpdateRowsEvent:
            return self._rows(UPDATE, event)
        if kind is DeleteRowsEvent:
            return self._rows(DELETE, event)
        if kind is XidEvent:
            return Commit(event.packet.log_pos)
        if kind is QueryEvent:
            schema = event.schema.decode() if isinstance(event.schema, bytes) else str(event.schema)
            return Statement(schema, event.query, event.packet.log_pos)
        if kind is MariadbGtidEvent or kind is GtidEvent:
            return Begin(str(event.gtid), event.packet.server_id)
        if kind is RotateEvent:
            return Rotate(event.next_binlog, event.position)
        if kind is HeartbeatLogEvent:
            return Heartbeat(event.ident, event.packet.log_pos)
        return None

    def _rows(self, op: str, event: Any) -> Rows:
        layout, has_sets, reader = self._layout(event)
        rows = _read_rows(reader, op, event) if reader is not None else None
        if rows is not None:  # images as sequences in the layout's column order
            return Rows(op, layout, rows, event.packet.log_pos, event.timestamp, event.packet.server_id, True)
        if op == UPDATE:
            rows = [
                (
                    _image(r, "before_values", "before_none_sources", has_sets),
                    _image(r, "after_values", "after_none_sources", has_sets),
                )
                for r in event.rows
            ]
        else:
            rows = [_image(r, "values", "none_sources", has_sets) for r in event.rows]
        return Rows(op, layout, rows, event.packet.log_pos, event.timestamp, event.packet.server_id)

    def _layout(self, event: Any) -> tuple[LogTable, bool, RowImageReader | None]:
        table = event.table_map[event.table_id]
        if self._last is not None and self._last[0] is table:
            return self._last[1], self._last[2], self._last[3]
        columns = tuple(
            ColumnMeta(
                name=str(c.name),
                type=c.type,
                unsigned=bool(c.unsigned),
                charset=c.character_set_name,
                max_length=getattr(c, "max_length", None),
                bit_bytes=getattr(c, "bytes", None),
                set_values=tuple(c.set_values) if getattr(c, "set_values", None) else None,
            )
            for c in event.columns
        )
        signature = (event.schema, event.table, columns)
        layout = self._layouts.setdefault(signature, LogTable(event.schema, event.table, columns))
        has_sets = any(c.type == FIELD_TYPE.SET for c in columns)
        shape = tuple(_reader_key(c) for c in event.columns)
        if shape not in self._readers:
            self._readers[shape] = RowImageReader.of(event.columns, RowsEvent.charset_to_encoding)
        reader = self._readers[shape]
        self._last = (table, layout, has_sets, reader)
        return layout, has_sets, reader


def _reader_key(column: Any) -> tuple[Any, ...]:
    """Everything of a library column its ``RowImageReader`` depends on."""
    return (
        column.name,
        column.type,
        bool(column.unsigned),
        column.character_set_name,
        *(
            tuple(value) if isinstance(value, list) else value
            for value in (
                getattr(column, attribute, None)
                for attribute in ("max_length", "length_size", "fsp", "precision", "decimals", "size", "bits", "bytes")
            )
        ),
        tuple(column.enum_values or ()),
        tuple(column.set_values or ()),
    )


def _read_rows(reader: RowImageReader, op: str, event: Any) -> list[Any] | None:
    """The event's rows read by ``reader`` straight from its bytes; None leaves them to the library (an image
    without every column, or bytes the reader does not end exactly on: the library then raises its own error)."""
    wrapper = event.packet
    if not event.complete or wrapper._BinLogPacketWrapper__data_buffer or event.number_of_columns != reader.columns:
        return None
    full = reader.all_present
    bitmaps = (
        (event.columns_present_bitmap, event.columns_present_bitmap2)
        if op == UPDATE
        else (event.columns_present_bitmap,)
    )
    if any(int.from_bytes(bitmap, "little") & full != full for bitmap in bitmaps):
        return None
    packet = wrapper.packet
    start = packet._position
    try:
        return reader.rows(packet._data, start, start + event.event_size - wrapper.read_bytes, op == UPDATE)
    except Exception:  # noqa: BLE001 - whatever the reader trips on, the library reads (or refuses) itself
        return None


def _image(row: dict[str, Any], values: str, none_sources: str, has_sets: bool) -> dict[str, Any]:
    image: dict[str, Any] = row[values]
    if has_sets:
        # The library gives None for an empty SET as for NULL; only its none_sources tell them apart.
        for name, why in row.get(none_sources, {}).items():
            if why == "empty set":
                image[name] = set()
    return image
