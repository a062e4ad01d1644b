"""Temporal columns of binlog rows, decoded from their bytes as the server stores them.

python-mysql-replication turns zero and partly zero dates into None, reads the
zero TIMESTAMP as 1970-01-01, and gets negative TIME values with a fraction
wrong (it negates the fraction separately from the whole part).  These decoders
follow the server's own ``my_*_packed_from_binary`` (MySQL 5.6 formats, which
MariaDB writes too) and give what a SELECT gives through PyMySQL: a
``date``/``datetime``/``timedelta`` where Python can hold it, else the server's
text (``0000-00-00``, ``2024-00-15 10:00:00.000``).  TIMESTAMP is an aware UTC datetime (an instant: its
converter then has nothing to place).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from functools import partial
from typing import Any

from pymysqlreplication.constants import FIELD_TYPE

Read = Callable[[int], bytes]
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _fraction_bytes(fsp: int) -> int:
    return (fsp + 1) // 2


def _date_text(year: int, month: int, day: int) -> str:
    return f"{year:04d}-{month:02d}-{day:02d}"


def _time_text(hour: int, minute: int, second: int, micros: int, fsp: int) -> str:
    text = f"{hour:02d}:{minute:02d}:{second:02d}"
    return f"{text}.{micros:06d}"[: len(text) + 1 + fsp] if fsp else text


def _date_or_text(year: int, month: int, day: int) -> date | str:
    try:
        return date(year, month, day)
    except ValueError:
        return _date_text(year, month, day)


def _datetime_or_text(
    year: int, month: int, day: int, hour: int, minute: int, second: int, micros: int, fsp: int
) -> datetime | str:
    try:
        return datetime(year, month, day, hour, minute, second, micros)
    except ValueError:
        return f"{_date_text(year, month, day)} {_time_text(hour, minute, second, micros, fsp)}"


def date_from(raw: bytes) -> date | str:
    packed = int.from_bytes(raw, "little")
    return _date_or_text(packed >> 9, (packed >> 5) & 15, packed & 31)


def read_date(read: Read) -> date | str:
    return date_from(read(3))


def _signed_fraction(raw: bytes) -> int:
    size = len(raw)
    if not size:
        return 0
    value = int.from_bytes(raw, "big", signed=True)
    return value * (10_000 if size == 1 else 100 if size == 2 else 1)


def datetime2_from(raw: bytes, fsp: int) -> datetime | str:
    whole = int.from_bytes(raw[:5], "big") - 0x8000000000
    micros = _signed_fraction(raw[5:])
    ymd, hms = whole >> 17, whole & 0x1FFFF
    year_month = ymd >> 5
    return _datetime_or_text(
        year_month // 13, year_month % 13, ymd & 31, hms >> 12, (hms >> 6) & 63, hms & 63, micros, fsp
    )


def _datetime2_decoder(fsp: int) -> Callable[[bytes], datetime | str]:
    """``datetime2_from`` for one fsp, with no call but the datetime's own for a valid value (the common case)."""
    size = _fraction_bytes(fsp)
    scale = 10_000 if size == 1 else 100 if size == 2 else 1
    from_bytes = int.from_bytes

    def decode(raw: bytes) -> datetime | str:
        whole = from_bytes(raw[:5], "big") - 0x8000000000
        ymd, hms = whole >> 17, whole & 0x1FFFF
        year_month = ymd >> 5
        try:
            return datetime(
                year_month // 13,
                year_month % 13,
                ymd & 31,
                hms >> 12,
                (hms >> 6) & 63,
                hms & 63,
                from_bytes(raw[5:], "big", signed=True) * scale if size else 0,
            )
        except ValueError:
            return datetime2_from(raw, fsp)

    return decode


def read_datetime2(read: Read, fsp: int) -> datetime | str:
    return datetime2_from(read(5 + _fraction_bytes(fsp)), fsp)


def timestamp2_from(raw: bytes, fsp: int) -> datetime | str:
    seconds = int.from_bytes(raw[:4], "big")
    size = len(raw) - 4
    micros = int.from_bytes(raw[4:], "big") * (10_000 if size == 1 else 100 if size == 2 else 1) if size else 0
    if seconds == 0 and micros == 0:
        return f"0000-00-00 {_time_text(0, 0, 0, 0, fsp)}"  # the zero TIMESTAMP
    return _EPOCH + timedelta(seconds=seconds, microseconds=micros)


def read_timestamp2(read: Read, fsp: int) -> datetime | str:
    return timestamp2_from(read(4 + _fraction_bytes(fsp)), fsp)


def time2_from(raw: bytes) -> timedelta:
    """TIME: the whole part with an offset, then the fraction; negative values keep the fraction's sort order."""
    size = len(raw) - 3
    if size == 3:
        packed = int.from_bytes(raw, "big") - 0x800000000000
    else:
        whole = int.from_bytes(raw[:3], "big") - 0x800000
        fraction = int.from_bytes(raw[3:], "big") if size else 0
        if whole < 0 and fraction:
            whole += 1
            fraction -= 0x100 if size == 1 else 0x10000
        packed = (whole << 24) + fraction * (10_000 if size == 1 else 100 if size == 2 else 1)
    negative = packed < 0
    packed = abs(packed)
    hms, micros = packed >> 24, packed & 0xFFFFFF
    value = timedelta(hours=(hms >> 12) & 0x3FF, minutes=(hms >> 6) & 63, seconds=hms & 63, microseconds=micros)
    return -value if negative else value


def read_time2(read: Read, fsp: int) -> timedelta:
    return time2_from(read(3 + _fraction_bytes(fsp)))


def datetime_from(raw: bytes) -> datetime | str:
    """The pre-5.6 DATETIME: YYYYMMDDhhmmss as a little-endian integer."""
    value = int.from_bytes(raw, "little")
    day_part, time_part = divmod(value, 1_000_000)
    return _datetime_or_text(
        day_part // 10_000,
        day_part // 100 % 100,
        day_part % 100,
        time_part // 10_000,
        time_part // 100 % 100,
        time_part % 100,
        0,
        0,
    )


def read_datetime(read: Read) -> datetime | str:
    return datetime_from(read(8))


TEMPORAL = (FIELD_TYPE.DATE, FIELD_TYPE.DATETIME2, FIELD_TYPE.TIMESTAMP2, FIELD_TYPE.TIME2, FIELD_TYPE.DATETIME)


def temporal_decoder(kind: int, fsp: int) -> tuple[int, Callable[[bytes], Any]]:
    """How many bytes a non-NULL value of a temporal column takes, and what turns them into its value."""
    size = _fraction_bytes(fsp)
    if kind == FIELD_TYPE.DATE:
        return 3, date_from
    if kind == FIELD_TYPE.DATETIME2:
        return 5 + size, _datetime2_decoder(fsp)
    if kind == FIELD_TYPE.TIMESTAMP2:
        return 4 + size, partial(timestamp2_from, fsp=fsp)
    if kind == FIELD_TYPE.TIME2:
        return 3 + size, time2_from
    return 8, datetime_from


def read_temporal(read: Read, column: Any) -> Any:
    """One non-NULL temporal value of ``column`` (a library column with ``type`` and ``fsp``)."""
    width, decode = temporal_decoder(column.type, getattr(column, "fsp", 0))
    return decode(read(width))
