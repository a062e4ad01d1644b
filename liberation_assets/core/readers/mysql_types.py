"""MariaDB/MySQL column types → published values: one converter per type, shared by every reader.

The snapshot, the query poll and the binlog reader hand each converter the
same canonical input for a column, and the converter alone decides the
published form (docs/architecture.md, "MariaDB / MySQL types"):

- SELECT readers select the published columns without SQLAlchemy's result
  processors (``raw_column``), so a value is what PyMySQL parsed from the
  server's own text: DOUBLE a float, TIME a timedelta, a zero date the text
  itself;
- the binlog reader turns the library's values into the same inputs first
  (``binlog.values``), decoding temporal columns itself (``binlog.client``).

What a converter cannot carry exactly raises ``UnconvertibleValue``;
``RowConverter`` names the column and the row goes to the quarantine.
"""

from __future__ import annotations

import base64
import ipaddress
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from liberation_assets.core.errors import UnconvertibleValue

Converter = Callable[[Any], Any]
UTC = timezone.utc
_DAY_US = 86_400 * 1_000_000


@dataclass(frozen=True)
class SourceType:
    """A column's type as the server describes it in information_schema.COLUMNS."""

    data_type: str
    """DATA_TYPE, lower case: ``datetime``, ``inet6``, ``longtext`` (MariaDB's JSON), ..."""
    column_type: str = ""
    """COLUMN_TYPE: ``bigint(20) unsigned``, ``enum('a','b')``, ``binary(4)``."""
    fsp: int = 0
    """Fractional-second digits of TIME, DATETIME and TIMESTAMP."""

    @property
    def unsigned(self) -> bool:
        return "unsigned" in self.column_type


def source_types(connection: Connection, schema: str | None, table: str) -> dict[str, SourceType]:
    """Column name → its type, from the server (SQLAlchemy's reflection does not know INET6, UUID or GEOMETRY)."""
    rows = connection.execute(
        sa.text(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, DATETIME_PRECISION FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = COALESCE(:schema, DATABASE()) AND TABLE_NAME = :table"
        ),
        {"schema": schema, "table": table},
    )
    return {
        str(name): SourceType(str(kind).lower(), str(full).lower(), int(fsp or 0)) for name, kind, full, fsp in rows
    }


def raw_column(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """The column without SQLAlchemy's result processing (which turns DOUBLE into a 10-digit Decimal, wraps TIME
    into a time of day, and looks ENUM labels up in reflected labels that lost their emoji)."""
    return sa.type_coerce(column, sa.types.NullType())


# -- temporal --------------------------------------------------------------------------------------------------
def _is_utc(zone: Any) -> bool:
    return zone is None or zone is UTC or str(getattr(zone, "key", "")) in ("UTC", "Etc/UTC")


def naive_to_utc(value: datetime, zone: Any) -> datetime:
    """A naive DATETIME read in ``zone``, as MariaDB's CONVERT_TZ places it: an ambiguous time (DST overlap) is its
    first occurrence, a time in a DST gap is the instant the gap ends."""
    if _is_utc(zone):
        return value.replace(tzinfo=UTC)
    try:
        before = value.replace(tzinfo=zone, fold=0).astimezone(UTC)
        if before.astimezone(zone).replace(tzinfo=None) == value:
            return before
        # In a gap: fold=1 gives a UTC second before the transition, fold=0 one after; find the transition's
        # second, which keeps the value's fraction (as the server does: 02:30:00.5 → 07:00:00.5 in New York).
        whole = value.replace(microsecond=0)
        low, high = (
            whole.replace(tzinfo=zone, fold=1).astimezone(UTC),
            whole.replace(tzinfo=zone, fold=0).astimezone(UTC),
        )
        after_offset = high.astimezone(zone).utcoffset()
        while high - low > timedelta(seconds=1):
            middle = low + timedelta(seconds=(high - low).total_seconds() // 2)
            if middle.astimezone(zone).utcoffset() == after_offset:
                high = middle
            else:
                low = middle
        return high.replace(microsecond=value.microsecond)
    except (OverflowError, ValueError):
        raise UnconvertibleValue(f"DATETIME {value.isoformat(' ')} in {zone} is outside years 1..9999 in UTC") from None


def _datetime_in(zone: Any) -> Converter:
    if _is_utc(zone):

        def in_utc(value: Any) -> Any:
            if value.__class__ is datetime:
                return value.replace(tzinfo=UTC)
            return naive_to_utc(value, zone) if isinstance(value, datetime) else _text(value)

        return in_utc

    def convert(value: Any) -> Any:
        if isinstance(value, datetime):
            return naive_to_utc(value, zone)
        return _text(value)  # a zero or partly zero datetime: the server's text

    return convert


def _timestamp(value: Any) -> Any:
    """TIMESTAMP is an instant: sessions and the binlog give it in UTC, never in the source's zone."""
    if value.__class__ is datetime and value.tzinfo is UTC:  # the binlog's
        return value
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return _text(value)


def _date(value: Any) -> Any:
    if isinstance(value, date):
        return value
    return _text(value)


def time_value(value: Any) -> Any:
    """TIME: a time of day when it is one, else ``[-]HH:MM:SS[.ffffff]`` with as many hour digits as needed."""
    if isinstance(value, time):
        return value
    if not isinstance(value, timedelta):
        return _text(value)
    micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    if 0 <= micros < _DAY_US:
        seconds, fraction = divmod(micros, 1_000_000)
        return time(seconds // 3600, seconds // 60 % 60, seconds % 60, fraction)
    sign = "-" if micros < 0 else ""
    seconds, fraction = divmod(abs(micros), 1_000_000)
    text = f"{sign}{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{text}.{fraction:06d}" if fraction else text


def _text(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return value


# -- numbers, bits, strings ------------------------------------------------------------------------------------
def _bit(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return int.from_bytes(value, "big")
    if isinstance(value, str):
        return int(value, 2) if value else 0
    return value


def _year(value: Any) -> Any:
    return 0 if value == 1900 else value  # the binlog stores the zero YEAR as 0, which the library reads as 1900


def _decimal(value: Any) -> Any:
    """DECIMAL as its exact text with the column's scale (``12.50``), the published form: the binlog reader gives
    that text already, PyMySQL a ``Decimal`` parsed from it."""
    if value.__class__ is str:
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise UnconvertibleValue(f"DECIMAL {value} has no exact form")
        return format(value, "f")
    return value


def _json_text(value: Any) -> Any:
    return _text(value) if isinstance(value, (bytes, bytearray)) else value


def _binary(value: Any) -> Any:
    return value.encode() if isinstance(value, str) else value


# -- MariaDB's own types ---------------------------------------------------------------------------------------
def _inet4(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return str(ipaddress.IPv4Address(bytes(value).ljust(4, b"\0")))
    return value


def inet6_text(packed: bytes) -> str:
    """INET6 text as MariaDB prints it: IPv4-mapped and IPv4-compatible addresses end in a dotted quad."""
    packed = packed.ljust(16, b"\0")
    if packed[:10] == b"\0" * 10 and packed[10:12] == b"\xff\xff":
        return "::ffff:" + str(ipaddress.IPv4Address(packed[12:]))
    if packed[:12] == b"\0" * 12 and int.from_bytes(packed[12:], "big") > 1:
        return "::" + str(ipaddress.IPv4Address(packed[12:]))
    return str(ipaddress.IPv6Address(packed))


def _inet6(value: Any) -> Any:
    return inet6_text(bytes(value)) if isinstance(value, (bytes, bytearray)) else value


def _uuid(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return str(uuid.UUID(bytes=bytes(value).ljust(16, b"\0")))
    return value


_BY_TYPE: dict[str, Converter] = {
    "decimal": _decimal,
    "numeric": _decimal,
    "bit": _bit,
    "year": _year,
    "timestamp": _timestamp,
    "date": _date,
    "time": time_value,
    "json": _json_text,
    "binary": _binary,
    "varbinary": _binary,
    "tinyblob": _binary,
    "blob": _binary,
    "mediumblob": _binary,
    "longblob": _binary,
    "inet4": _inet4,
    "inet6": _inet6,
    "uuid": _uuid,
}


def value_converter(source: SourceType, zone: Any) -> Converter | None:
    """The converter of one column type; None where the input is already the published value (integers, FLOAT and
    DOUBLE as floats, whose JSON text is the shortest that reads back, text, ENUM, SET)."""
    if source.data_type == "datetime":
        return _datetime_in(zone)
    return _BY_TYPE.get(source.data_type)


def source_text(value: Any) -> Any:
    """What the quarantine shows of a value that could not be converted."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return str(value)


Plan = list[tuple[str, Converter]]


class RowConverter:
    """Applies the columns' converters to one row in place and names the columns it could not convert."""

    def __init__(self, converters: Mapping[str, Converter | None]):
        self.plan: Plan = [(name, convert) for name, convert in converters.items() if convert is not None]

    @classmethod
    def for_columns(cls, columns: Mapping[str, str], types: Mapping[str, SourceType], zone: Any) -> "RowConverter":
        """``columns`` is public name → source column, as in a stream's projection."""
        return cls(
            {
                public: value_converter(types[source], zone) if source in types else None
                for public, source in columns.items()
            }
        )

    def apply(self, row: dict[str, Any]) -> list[str] | None:
        problems: list[str] | None = None
        for name, convert in self.plan:
            value = row.get(name)
            if value is None:
                continue
            try:
                row[name] = convert(value)
            except UnconvertibleValue as exc:
                row[name] = source_text(value)
                problems = [*(problems or []), f"column {name}: {exc.reason}"]
        return problems
