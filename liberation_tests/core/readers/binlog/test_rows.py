"""Against real MariaDB: ``RowImageReader`` reads every rows event of the type corpus exactly as the library does,
by both of its paths (``images``, compiled or not, and the code it compiles per table map)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from liberation_assets.core.events import CREATE, DELETE, UPDATE
from liberation_assets.core.readers.binlog.client import (
    LogReader,
    _image,
    _read_rows,
    connection_settings,
    current_coordinates,
)
from liberation_assets.core.readers.binlog.position import BinlogPosition, coordinates_key
from liberation_tests.core.readers.binlog.test_maria_type_corpus import BINARIES, NUMBERS, SPECIALS, TEMPORALS, TEXTS

pytestmark = pytest.mark.integration

FAMILIES = {"numbers": NUMBERS, "texts": TEXTS, "binaries": BINARIES, "temporals": TEMPORALS, "specials": SPECIALS}
_OPS = {WriteRowsEvent: CREATE, UpdateRowsEvent: UPDATE, DeleteRowsEvent: DELETE}


def _as_reader_gives(image: dict[str, Any]) -> dict[str, Any]:
    """The library's image with DECIMAL as the reader gives it: the exact text, the column's scale kept."""
    return {name: format(value, "f") if isinstance(value, Decimal) else value for name, value in image.items()}


def _library_rows(event: Any, op: str, has_sets: bool) -> list[Any]:
    if op == UPDATE:
        return [
            (
                _as_reader_gives(_image(r, "before_values", "before_none_sources", has_sets)),
                _as_reader_gives(_image(r, "after_values", "after_none_sources", has_sets)),
            )
            for r in event.rows
        ]
    return [_as_reader_gives(_image(r, "values", "none_sources", has_sets)) for r in event.rows]


def _by_name(rows: list[Any] | None, names: tuple[str, ...], op: str) -> list[Any] | None:
    """The reader's positional images as dicts by column name, as the library gives them."""
    if rows is None:
        return None
    if op == UPDATE:
        return [(dict(zip(names, before)), dict(zip(names, after))) for before, after in rows]
    return [dict(zip(names, image)) for image in rows]


def test_row_images_are_read_as_the_library_reads_them(mysql_engine, make_spec, mysql_database) -> None:
    source = make_spec(mysql=mysql_database).sources["mysql"]
    with mysql_engine.connect() as connection:
        start = current_coordinates(connection)
    with mysql_engine.begin() as connection:
        connection.exec_driver_sql("SET SESSION sql_mode = '', time_zone = '+00:00'")  # zero dates are allowed
        for family, table in FAMILIES.items():
            columns = ", ".join(table["columns"])
            connection.exec_driver_sql(f"CREATE TABLE {family} (id INT PRIMARY KEY, {columns}) CHARACTER SET utf8mb4")
            values = ", ".join(f"({index}, {row})" for index, row in enumerate(table["rows"], 1))
            connection.exec_driver_sql(f"INSERT INTO {family} VALUES {values}")
            connection.exec_driver_sql(f"UPDATE {family} SET id = id + 100")  # both images of every row
            connection.exec_driver_sql(f"DELETE FROM {family} WHERE MOD(id, 2) = 0")
    with mysql_engine.connect() as connection:
        target = coordinates_key(*current_coordinates(connection))

    reader = LogReader(
        connection_settings(source),
        2_100_000_000,
        BinlogPosition(*start),
        schemas=[mysql_database],
        tables=list(FAMILIES),
        heartbeat_seconds=0.5,
        source_name="mysql",
    )
    compared: dict[str, int] = {}
    try:
        for event in reader._stream:
            op = _OPS.get(type(event))
            if op is not None:
                layout, has_sets, row_reader = reader._layout(event)
                assert row_reader is not None, f"{event.table} is left to the library"
                fast = _by_name(_read_rows(row_reader, op, event), layout.names, op)
                assert fast is not None, f"a rows event of {event.table} is left to the library"
                # The other of the reader's two paths (``images``' typed loop, or the code compiled per table map).
                row_reader.compiled = not row_reader.compiled
                try:
                    other = _by_name(_read_rows(row_reader, op, event), layout.names, op)
                finally:
                    row_reader.compiled = not row_reader.compiled
                library = _library_rows(event, op, has_sets)  # reads the packet: after the reader's paths
                assert repr(fast) == repr(library), event.table
                assert repr(other) == repr(library), f"{event.table}, compiled={not row_reader.compiled}"
                compared[event.table] = compared.get(event.table, 0) + len(fast)
            if coordinates_key(reader._stream.log_file, reader._stream.log_pos) >= target:
                break
    finally:
        reader.close()
    assert compared == {family: 2 * len(table["rows"]) + len(table["rows"]) // 2 for family, table in FAMILIES.items()}
