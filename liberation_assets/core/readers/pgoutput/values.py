"""Text-format values by type OID, into the Python types psycopg returns (for the outbox relay).

Published column values are converted by ``readers.pg_types`` instead (JSON forms shared with the
SELECTs).  The replication session runs with ``DateStyle=ISO`` and ``TimeZone=UTC`` (see
``pg_slot.replication_dsn``), so every text form parsed here is the ISO one; intervals arrive in
ISO 8601 (``IntervalStyle=iso_8601``), which the postgres-style parser below does not read: they stay text.  A type without a parser stays ``str``: enums,
network types, ranges, user types.  Values that Python cannot represent
(``infinity`` timestamps, BC dates) also stay ``str`` rather than failing the
stream.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson

Parser = Callable[[str], Any]

PG_EPOCH_MS = 946_684_800_000
"""2000-01-01T00:00:00Z in Unix epoch milliseconds."""


def pg_time_to_epoch_ms(pg_micros: int) -> int:
    """pgoutput timestamps count microseconds from 2000-01-01 UTC."""
    return PG_EPOCH_MS + pg_micros // 1000


def _bool(text: str) -> bool:
    return text == "t"


def _bytea(text: str) -> bytes:
    if text.startswith("\\x"):
        return bytes.fromhex(text[2:])
    return _bytea_escape(text)


def _bytea_escape(text: str) -> bytes:
    """The legacy escape format (``bytea_output = escape``)."""
    out = bytearray()
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            if text[i + 1] == "\\":
                out.append(0x5C)
                i += 2
            else:
                out.append(int(text[i + 1:i + 4], 8))
                i += 4
        else:
            out.extend(char.encode("utf-8"))
            i += 1
    return bytes(out)


def _guarded(parse: Parser) -> Parser:
    """Keep the text when Python has no such value (infinity, BC, year 10000+)."""

    def safe(text: str) -> Any:
        try:
            return parse(text)
        except ValueError:
            return text

    return safe


def _timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _timetz(text: str) -> time:
    # Python wants +HH:MM; PostgreSQL writes +HH when the minutes are zero.
    if len(text) >= 3 and text[-3] in "+-" and text[-2:].isdigit():
        text += ":00"
    return time.fromisoformat(text)


_INTERVAL = re.compile(
    r"^(?:(?P<years>[+-]?\d+) years? ?)?(?:(?P<months>[+-]?\d+) mons? ?)?(?:(?P<days>[+-]?\d+) days? ?)?"
    r"(?:(?P<sign>[+-])?(?P<hours>\d+):(?P<minutes>\d+):(?P<seconds>\d+(?:\.\d+)?))?$"
)


def _interval(text: str) -> timedelta:
    """As psycopg does: a month is 30 days and a year 365 days."""
    match = _INTERVAL.match(text)
    if match is None or not text:
        raise ValueError(f"unsupported interval {text!r}")
    parts = match.groupdict()
    days = int(parts["years"] or 0) * 365 + int(parts["months"] or 0) * 30 + int(parts["days"] or 0)
    clock = timedelta(hours=int(parts["hours"] or 0), minutes=int(parts["minutes"] or 0),
                      seconds=float(Decimal(parts["seconds"] or 0)))
    return timedelta(days=days) + (-clock if parts["sign"] == "-" else clock)


def _float(text: str) -> float:
    return float(text)  # also handles NaN, Infinity and -Infinity


def _numeric(text: str) -> Decimal:
    return Decimal(text)


_SCALARS: dict[int, Parser] = {
    16: _bool,
    17: _bytea,
    20: int, 21: int, 23: int, 26: int, 28: int,  # int8, int2, int4, oid, xid
    700: _float, 701: _float,
    1700: _numeric,
    114: orjson.loads, 3802: orjson.loads,  # json, jsonb
    2950: uuid.UUID,
    1082: _guarded(date.fromisoformat),
    1083: time.fromisoformat,
    1266: _timetz,
    1114: _guarded(_timestamp),
    1184: _guarded(_timestamp),
    1186: _guarded(_interval),
}

# Array type OID → element type OID, for the element types above.
_ARRAYS: dict[int, int] = {
    1000: 16, 1001: 17, 1016: 20, 1005: 21, 1007: 23, 1028: 26, 1021: 700, 1022: 701, 1231: 1700,
    199: 114, 3807: 3802, 2951: 2950, 1182: 1082, 1183: 1083, 1270: 1266, 1115: 1114, 1185: 1184, 1187: 1186,
    1009: 25, 1015: 1043, 1014: 1042, 1003: 19,
}


def _identity(text: str) -> str:
    return text


def parser_for(type_oid: int) -> Parser:
    """The function that turns this type's text form into its Python value."""
    scalar = _SCALARS.get(type_oid)
    if scalar is not None:
        return scalar
    element = _ARRAYS.get(type_oid)
    if element is not None:
        item = _SCALARS.get(element, _identity)
        return lambda text: parse_array(text, item)
    return _identity


def parse_array(text: str, item: Parser) -> Any:
    """A (possibly nested) array literal such as ``{1,2,NULL}`` or ``{{"a b",c},{d,e}}``."""
    if text.startswith("["):  # explicit bounds, e.g. [0:2]={1,2,3}: Python lists start at 0
        text = text[text.index("=") + 1:]
    value, end = _array(text, 0, item)
    if end != len(text):
        raise ValueError(f"trailing characters in array {text!r}")
    return value


def _array(text: str, i: int, item: Parser) -> tuple[list[Any], int]:
    if text[i] != "{":
        raise ValueError(f"expected '{{' at {i} in {text!r}")
    i += 1
    out: list[Any] = []
    if text[i] == "}":
        return out, i + 1
    while True:
        char = text[i]
        if char == "{":
            nested, i = _array(text, i, item)
            out.append(nested)
        elif char == '"':
            i += 1
            chars = []
            while text[i] != '"':
                if text[i] == "\\":
                    i += 1
                chars.append(text[i])
                i += 1
            i += 1
            out.append(item("".join(chars)))
        else:
            end = i
            while text[end] not in ",}":
                end += 1
            raw = text[i:end]
            out.append(None if raw == "NULL" else item(raw))
            i = end
        if text[i] == ",":
            i += 1
            continue
        if text[i] == "}":
            return out, i + 1
        raise ValueError(f"unexpected {text[i]!r} at {i} in {text!r}")


def utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc)
