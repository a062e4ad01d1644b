"""Binlog values → the inputs the shared column converters take (``readers.mysql_types``), so both paths publish alike.

A SELECT hands the converters what PyMySQL parsed from the server's text; this
module turns what python-mysql-replication decoded into the same thing: a FLOAT
printed the way the server prints it, BINARY padded with the zeros the log
drops, CHAR without the padding the server strips when it reads, BIT an int,
SET its text, a binary string as bytes.  Temporal columns are decoded raw by
``client`` (the library wraps negative TIME fractions and turns zero dates into
None), as the server's values or, for zero dates, the server's text.  The
shared converter then runs on top (``log_converter``).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from pymysqlreplication.constants import FIELD_TYPE

from liberation_assets.core.readers.binlog.log import ColumnMeta
from liberation_assets.core.readers.mysql_types import SourceType, naive_to_utc, time_value, value_converter

Converter = Callable[[Any], Any]

MARIADB, MYSQL = "mariadb", "mysql"


def float_as_mariadb(value: float) -> float:
    """MariaDB prints FLOAT with 6 significant digits (``%g``)."""
    return float(f"{value:.6g}")


def float_as_mysql(value: float) -> float:
    """MySQL 8 prints FLOAT as the shortest text that reads back as the same single-precision value."""
    packed = struct.pack("<f", value)
    for digits in range(6, 10):
        text = float(f"{value:.{digits}g}")
        if struct.pack("<f", text) == packed:
            return text
    return value


def _as_bytes(value: bytes | str) -> bytes:
    """The library decodes an empty binary string to '' (Python skips the codec lookup for b'')."""
    return value.encode() if isinstance(value, str) else value


def _padder(length: int) -> Converter:
    def pad(value: bytes | str) -> bytes:
        return _as_bytes(value).ljust(length, b"\x00")

    return pad


def _strip_spaces(value: str) -> str:
    return value.rstrip(" ")


def _bits(value: str) -> int:
    return int(value, 2) if value else 0


def _set_text(members: tuple[str, ...]) -> Converter:
    def join(value: set[str]) -> str:
        return ",".join(member for member in members if member in value)

    return join


def _plain_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {_plain_json(k): _plain_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_json(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value


def _json_text(value: Any) -> str:
    """MySQL's binary JSON as MySQL prints it (``{"a": [1, 2]}``)."""
    return json.dumps(_plain_json(value), ensure_ascii=False)


def dbapi_converter(column: ColumnMeta, flavor: str) -> Converter | None:
    """What turns the library's value into the input a SELECT gives the shared converter, or None where they agree."""
    kind = column.type
    if kind == FIELD_TYPE.FLOAT:
        return float_as_mariadb if flavor == MARIADB else float_as_mysql
    if kind == FIELD_TYPE.STRING and column.max_length:
        if column.charset == "binary":
            return _padder(column.max_length)
        return _strip_spaces  # the server strips CHAR padding when it reads
    if column.charset == "binary" and kind in (FIELD_TYPE.VARCHAR, FIELD_TYPE.VAR_STRING, FIELD_TYPE.BLOB):
        return _as_bytes
    if kind == FIELD_TYPE.BIT:
        return _bits
    if kind == FIELD_TYPE.SET and column.set_values is not None:
        return _set_text(column.set_values)
    if kind == FIELD_TYPE.JSON:
        return _json_text
    return None


def log_converter(column: ColumnMeta, source: SourceType | None, flavor: str, zone: Any) -> Converter | None:
    """The library's value → the published value: the step above, then the column type's shared converter."""
    first = dbapi_converter(column, flavor)
    second = value_converter(source, zone) if source is not None else _fallback(zone)
    if first is None:
        return second
    if second is None:
        return first

    def both(value: Any) -> Any:
        return second(first(value))

    return both


def _fallback(zone: Any) -> Converter:
    """A column the reflected types do not know yet (added since): by its Python value."""

    def convert(value: Any) -> Any:
        if isinstance(value, datetime):  # an instant (TIMESTAMP) is never placed in the zone
            return naive_to_utc(value, zone) if value.tzinfo is None else value.astimezone(timezone.utc)
        if isinstance(value, timedelta):
            return time_value(value)
        return value

    return convert
