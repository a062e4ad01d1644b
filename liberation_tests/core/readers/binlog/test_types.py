"""Against real MariaDB: every column type read from the binlog is published exactly as the snapshot SELECT publishes it."""

from __future__ import annotations

import orjson
import pytest

from liberation_assets.core.contract.serialize import dumps
from liberation_assets.core.events import ChangeEvent
from liberation_assets.core.readers.binlog.client import (
    LogReader,
    connection_settings,
    current_coordinates,
    inspect_server,
    replica_server_id,
)
from liberation_assets.core.readers.binlog.decoder import BinlogDecoder
from liberation_assets.core.readers.binlog.mapping import StreamMapper, StreamShape
from liberation_assets.core.readers.binlog.position import BinlogPosition, coordinates_key
from liberation_assets.core.readers.mysql_types import source_types
from liberation_assets.core.readers.rows import events_from_rows
from liberation_assets.core.readers.sql import snapshot_chunk_query
from liberation_assets.core.readers.table import ProjectedTable, reflect_table
from liberation_tests.core.readers.binlog.support import UTC

pytestmark = pytest.mark.integration

TYPES = """
CREATE TABLE typed (
  id INT UNSIGNED PRIMARY KEY, flag TINYINT(1), small SMALLINT, medium MEDIUMINT, big BIGINT UNSIGNED,
  f FLOAT, d DOUBLE, money DECIMAL(20, 6), ch CHAR(5), vc VARCHAR(40), t TEXT, lt LONGTEXT, j JSON,
  bl BLOB, vb VARBINARY(8), bn BINARY(4), dt DATE, dtm DATETIME(6), ts TIMESTAMP(3) NULL, tm TIME(2), y YEAR,
  e ENUM('red', 'green'), s SET('x', 'y', 'z'), bits BIT(5)
) CHARACTER SET utf8mb4
"""
ROWS = [
    "(1, 1, -32768, 8388607, 18446744073709551615, 0.3979, 0.1, 12345678901234.123456, 'ab', 'Grüße', 'text ✓', "
    "'🚀 long', '{\"a\": [1, 2.5, null], \"b\": \"ü\"}', x'00ff10', x'0102', x'01', '2024-02-29', "
    "'2024-01-02 03:04:05.678901', '2024-01-02 03:04:05.678', '12:34:56.78', 2024, 'green', 'x,z', b'10101')",
    "(2, 0, NULL, NULL, 0, -1.5e-7, -2.5e300, -0.000001, '', '', '', NULL, NULL, x'', NULL, x'00000000', NULL, NULL, "
    "NULL, '-838:59:59', NULL, NULL, '', b'0')",
]


def test_binlog_values_are_published_like_the_snapshot_select(mysql_engine, make_spec, mysql_database) -> None:
    source = make_spec(mysql=mysql_database).sources["mysql"]
    with mysql_engine.begin() as connection:
        connection.exec_driver_sql(TYPES)
        info = inspect_server(connection, "mysql")
        start = current_coordinates(connection)
    with mysql_engine.begin() as connection:
        connection.exec_driver_sql(f"INSERT INTO typed VALUES {', '.join(ROWS)}")
        connection.exec_driver_sql("UPDATE typed SET vc = 'changed', s = 'y' WHERE id = 2")
    with mysql_engine.connect() as connection:
        target = coordinates_key(*current_coordinates(connection))

    with mysql_engine.connect() as connection:
        types = source_types(connection, None, "typed")
    shape = StreamShape("typed", None, ("id",), ("id",), UTC)
    mapper = StreamMapper(shape, info.flavor, lambda: types)
    decoder = BinlogDecoder(BinlogPosition(*start), {(mysql_database, "typed"): [mapper]})
    pending: dict[str, list[ChangeEvent]] = {}
    reader = LogReader(
        connection_settings(source),
        replica_server_id("types", source),
        BinlogPosition(*start),
        schemas=[mysql_database],
        tables=["typed"],
        heartbeat_seconds=0.5,
        source_name="mysql",
    )
    try:
        for item in reader:
            decoder.feed(item, pending)
            if not decoder.in_transaction and coordinates_key(decoder.file, decoder.boundary) >= target:
                break
    finally:
        reader.close()

    from_log = {e.key["id"]: orjson.loads(dumps(e.after)) for e in pending["typed"]}
    table = reflect_table(mysql_engine, "typed", None)
    projected = ProjectedTable(
        table, {str(c): str(c) for c in table.c.keys()}, ["id"], ["id"], None, source_types=types
    )
    with mysql_engine.connect() as connection:
        result = connection.execute(snapshot_chunk_query(projected, after_key=None, limit=10))
        keys, rows = list(result.keys()), result.all()
    events, _ = events_from_rows(rows, projected, UTC, "r", {}, keys=keys)
    from_select = {e.key["id"]: orjson.loads(dumps(e.after)) for e in events}
    assert [e.op for e in pending["typed"]] == ["c", "c", "u"]
    assert from_log == from_select
    assert from_log[1]["f"] == 0.3979 and from_log[1]["s"] == "x,z" and from_log[1]["bits"] == 21
    assert (
        from_log[1]["d"] == 0.1
        and from_log[1]["tm"] == "12:34:56.780000"
        and from_log[1]["ts"] == "2024-01-02T03:04:05.678000Z"
    )
    assert from_log[2]["bn"] == "AAAAAA==" and from_log[2]["s"] == "y" and from_log[2]["tm"] == "-838:59:59"
