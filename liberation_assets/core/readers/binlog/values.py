"""Binlog values → the values SQLAlchemy returns for the same columns, so both paths serialize alike.

Two steps per column.  First the value python-mysql-replication decoded is
turned into what PyMySQL would have returned over the text protocol (a FLOAT
printed the way the server prints it, BINARY padded, BIT as bytes, SET as its
text).  Then the reflected SQLAlchemy type's own result processor runs, exactly
as it does for a SELECT (DOUBLE → Decimal, TIME → time, SET → set, BIT → int).
Only columns that need either step get a converter; the rest pass through.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import orjson
from pymysqlreplication.constants import FIELD_TYPE
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

from liberation_assets.core.readers.binlog.log import ColumnMeta

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


def _bits(nbytes: int) -> Converter:
    def to_bytes(value: str) -> bytes:
        return int(value, 2).to_bytes(nbytes, "big")

    return to_bytes


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
    return orjson.dumps(_plain_json(value)).decode()


def dbapi_converter(column: ColumnMeta, flavor: str) -> Converter | None:
    """What turns the library's value into PyMySQL's, or None where they already agree."""
    kind = column.type
    if kind == FIELD_TYPE.FLOAT:
        return float_as_mariadb if flavor == MARIADB else float_as_mysql
    if kind == FIELD_TYPE.STRING and column.max_length:
        if column.charset == "binary":
            return _padder(column.max_length)
        return _strip_spaces  # the server strips CHAR padding when it reads
    if column.charset == "binary" and kind in (FIELD_TYPE.VARCHAR, FIELD_TYPE.VAR_STRING, FIELD_TYPE.BLOB):
        return _as_bytes
    if kind == FIELD_TYPE.BIT and column.bit_bytes:
        return _bits(column.bit_bytes)
    if kind == FIELD_TYPE.SET and column.set_values is not None:
        return _set_text(column.set_values)
    if kind == FIELD_TYPE.JSON:
        return _json_text
    return None


def result_processor(sa_type: TypeEngine[Any] | None, dialect: Dialect) -> Converter | None:
    """The processor SQLAlchemy applies to this column's DBAPI values, if any."""
    if sa_type is None:
        return None
    return sa_type.dialect_impl(dialect).result_processor(dialect, None)


def column_converter(column: ColumnMeta, sa_type: TypeEngine[Any] | None, dialect: Dialect, flavor: str) -> Converter | None:
    """Both steps composed; None when the library's value is already what SQLAlchemy returns."""
    first = dbapi_converter(column, flavor)
    second = result_processor(sa_type, dialect)
    if first is None:
        return second
    if second is None:
        return first

    def both(value: Any) -> Any:
        return second(first(value))

    return both
