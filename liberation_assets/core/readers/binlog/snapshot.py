"""A consistent snapshot of a source's CDC tables at a known binlog position, without locking writers out.

MariaDB keeps ``binlog_snapshot_file``/``binlog_snapshot_position`` consistent
with ``START TRANSACTION WITH CONSISTENT SNAPSHOT``, so no lock is taken at all.
MySQL has no such variables: ``FLUSH TABLES WITH READ LOCK`` is held only while
the snapshot transaction starts and the binlog status is read (milliseconds),
then released; the snapshot itself is plain MVCC reads.  Tables are read in
key-ordered chunks on that one transaction, so memory holds one chunk.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from pymysql.constants import FIELD_TYPE
from pymysql.converters import convert_datetime
from sqlalchemy.engine import Connection, Engine

from liberation_assets.core.errors import PermissionProblem
from liberation_assets.core.events import READ, ChangeEvent
from liberation_assets.core.readers.binlog.client import ER_ACCESS_DENIED, current_coordinates
from liberation_assets.core.readers.binlog.values import MARIADB
from liberation_assets.core.readers.rows import events_from_rows
from liberation_assets.core.readers.sql import snapshot_chunk_query
from liberation_assets.core.readers.table import ProjectedTable


@dataclass(frozen=True)
class SnapshotPoint:
    """The binlog position the snapshot transaction sees the database at."""

    file: str
    pos: int
    gtid: str | None
    lock_ms: float
    """How long writers were blocked to take it: 0 on MariaDB."""


def _datetime(text: str) -> Any:
    """PyMySQL's ``convert_datetime`` at a thirtieth of its cost: the server prints DATETIME and TIMESTAMP as
    ``YYYY-MM-DD HH:MM:SS[.ffffff]``, which ``fromisoformat`` reads to the same value; what it refuses (zero and
    partly zero dates) goes to PyMySQL's own decoder, which gives the text."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return convert_datetime(text)


_SNAPSHOT_DECODERS = {FIELD_TYPE.DATETIME: _datetime, FIELD_TYPE.TIMESTAMP: _datetime}


@contextmanager
def _snapshot_decoders(connection: Connection) -> Iterator[None]:
    """The connection's PyMySQL decoders with ``_SNAPSHOT_DECODERS`` while the snapshot reads, restored after (the
    connection goes back to the pool)."""
    raw = connection.connection.dbapi_connection
    decoders = getattr(raw, "decoders", None)
    if not isinstance(decoders, dict):  # not PyMySQL
        yield
        return
    raw.decoders = {**decoders, **_SNAPSHOT_DECODERS}  # type: ignore[union-attr]
    try:
        yield
    finally:
        raw.decoders = decoders  # type: ignore[union-attr]


@contextmanager
def consistent_snapshot(engine: Engine, flavor: str) -> Iterator[tuple[Connection, SnapshotPoint]]:
    """A connection inside a consistent-snapshot transaction, and the binlog position it corresponds to."""
    with engine.connect() as connection, _snapshot_decoders(connection):
        connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        point = _mariadb_point(connection) if flavor == MARIADB else _mysql_point(connection)
        try:
            yield connection, point
        finally:
            connection.rollback()


def _mariadb_point(connection: Connection) -> SnapshotPoint:
    connection.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT")
    status = {str(k).lower(): v for k, v in connection.exec_driver_sql("SHOW STATUS LIKE 'binlog_snapshot_%%'").all()}
    file, pos = str(status["binlog_snapshot_file"]), int(status["binlog_snapshot_position"])
    gtid = connection.exec_driver_sql("SELECT BINLOG_GTID_POS(%s, %s)", (file, pos)).scalar()
    return SnapshotPoint(file, pos, str(gtid) if gtid else None, 0.0)


def _mysql_point(connection: Connection) -> SnapshotPoint:
    started = time.perf_counter()
    try:
        connection.exec_driver_sql("FLUSH TABLES WITH READ LOCK")
    except sa.exc.DBAPIError as exc:
        if exc.orig is not None and exc.orig.args and exc.orig.args[0] in ER_ACCESS_DENIED:
            raise PermissionProblem(
                f"a consistent MySQL snapshot needs the RELOAD privilege (for a brief FLUSH TABLES "
                f"WITH READ LOCK): {exc.orig}"
            ) from None
        raise
    try:
        connection.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        file, pos = current_coordinates(connection)
        gtid = connection.exec_driver_sql("SELECT @@GLOBAL.gtid_executed").scalar()
    finally:
        connection.exec_driver_sql("UNLOCK TABLES")
    return SnapshotPoint(file, pos, str(gtid) if gtid else None, (time.perf_counter() - started) * 1000)


def snapshot_chunks(
    connection: Connection,
    table: ProjectedTable,
    *,
    after_key: tuple[Any, ...] | None,
    chunk_size: int,
    zone: ZoneInfo,
    source: dict[str, Any],
) -> Iterator[tuple[list[ChangeEvent], tuple[Any, ...] | None, bool]]:
    """(events, last key read, is last chunk) per key-ordered chunk, from after ``after_key``."""
    while True:
        result = connection.execute(snapshot_chunk_query(table, after_key=after_key, limit=chunk_size))
        keys = list(result.keys())
        rows = result.all()  # plain rows with their keys: no mapping object per row
        last = len(rows) < chunk_size
        events, tuples = events_from_rows(
            rows, table, zone, READ, {**source, "snapshot": "last" if last else "true"}, keys=keys
        )
        if tuples:
            after_key = tuples[-1][1:]
        yield events, after_key, last
        if last:
            return
