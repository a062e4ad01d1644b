"""Row images read by one typed loop over the columns: the module mypyc compiles (``rows.RowImageReader``'s
compiled path).

Interpreted, a loop that dispatches per column is slower than ``rows``' straight-line code compiled per table
map with ``exec``; compiled by mypyc, the same loop is plain C (byte arithmetic, no ``struct`` call, no call per
value for integers, strings, DECIMAL, DATETIME2 and TIMESTAMP2), so ``rows`` uses it only when it is compiled
(``scripts/build_compiled.py``; ``rows`` loads the build with ``compiled.native``).  A column is a kind code, a
size and one extra (an encoding, a scale, or the column's reader as a callable for the rarer types); the values
are exactly ``rows``' column readers' values.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, Final

from liberation_assets.core.readers.binlog.temporal import datetime2_from, timestamp2_from

CALL: Final = 0
"""Extra: the column's reader, ``(data, pos) -> (value, pos after it)``."""
INT: Final = 1
"""Size: 1, 2, 3, 4 or 8 bytes, little-endian, signed."""
UINT: Final = 2
TEXT: Final = 3
"""Size: the length's bytes (1-4); extra: the encoding."""
BINARY_TEXT: Final = 4
"""A string column whose encoding Python lacks: the bytes themselves, ``''`` for none (the library's way)."""
DECIMAL: Final = 5
"""Size: the precision; extra: the scale."""
DATETIME2: Final = 6
"""Size: the fraction's bytes; extra: the fsp."""
TIMESTAMP2: Final = 7
"""Size: the fraction's bytes; extra: the fsp."""

_DIG2BYTES: Final = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _big_endian(data: bytes, start: int, size: int, flip: int) -> int:
    value = 0
    for index in range(start, start + size):
        value = (value << 8) | (data[index] ^ flip)
    return value


def _nine_digit_groups(
    data: bytes, pos: int, at: int, count: int, first: int, flip: int, value: int
) -> tuple[int, int]:
    """``count`` 4-byte groups of nine digits from ``at``, appended to ``value``; and the offset after them. The
    DECIMAL's first byte (at ``pos``) is read as ``first``, its sign bit already flipped."""
    for _ in range(count):
        if at == pos:
            group = (first << 24) | _big_endian(data, pos + 1, 3, flip)
        else:
            group = _big_endian(data, at, 4, flip)
        value = value * 1_000_000_000 + group
        at += 4
    return value, at


def _decimal(data: bytes, pos: int, precision: int, scale: int) -> tuple[str, int]:
    """MySQL's packed DECIMAL as the exact text the server prints (``rows._decimal``'s value)."""
    integral = precision - scale
    head = _DIG2BYTES[integral % 9]
    tail = _DIG2BYTES[scale % 9]
    size = head + 4 * (integral // 9) + 4 * (scale // 9) + tail
    negative = not (data[pos] & 0x80)
    flip = 0xFF if negative else 0
    first = data[pos] ^ 0x80 ^ flip
    whole = 0
    at = pos
    if head:
        whole = (first << (8 * (head - 1))) | _big_endian(data, pos + 1, head - 1, flip)
        at = pos + head
    whole, at = _nine_digit_groups(data, pos, at, integral // 9, first, flip, whole)
    end = pos + size
    if not scale:
        return ("-" + str(whole) if negative else str(whole)), end
    part, at = _nine_digit_groups(data, pos, at, scale // 9, first, flip, 0)
    if tail:
        if at == pos:
            group = (first << (8 * (tail - 1))) | _big_endian(data, pos + 1, tail - 1, flip)
        else:
            group = _big_endian(data, at, tail, flip)
        part = part * 10 ** (scale % 9) + group
    text = str(whole) + "." + str(part).zfill(scale)
    return ("-" + text if negative else text), end


_DAYS: dict[int, tuple[int, int, int]] = {}
"""Days since the epoch → (year, month, day): a TIMESTAMP is one of at most ~50,000 days (1970-2106)."""


def _instant(seconds: int, micros: int) -> datetime:
    """``_EPOCH + timedelta(seconds=seconds, microseconds=micros)`` (``temporal.timestamp2_from``'s value), by one
    positional ``datetime`` call and the day's date from ``_DAYS``: a third of the cost of the timedelta sum."""
    days = seconds // 86_400
    ymd = _DAYS.get(days)
    if ymd is None:
        day = _EPOCH + timedelta(days)
        ymd = (day.year, day.month, day.day)
        _DAYS[days] = ymd
    second = seconds - days * 86_400
    return datetime(ymd[0], ymd[1], ymd[2], second // 3600, second // 60 % 60, second % 60, micros, timezone.utc)


def _image(
    data: bytes,
    pos: int,
    kinds: list[int],
    sizes: list[int],
    extras: list[Any],
) -> tuple[list[Any], int]:
    """One row image at ``pos`` (its null bitmap, then the non-NULL values), its values in column order."""
    count = len(kinds)
    nulls = pos
    pos += (count + 7) >> 3
    image: list[Any] = [None] * count
    for index in range(count):
        if (data[nulls + (index >> 3)] >> (index & 7)) & 1:
            continue
        kind = kinds[index]
        size = sizes[index]
        value: Any
        if kind == INT or kind == UINT:
            number = 0
            for shift in range(size):
                number |= data[pos + shift] << (8 * shift)
            if kind == INT and number >> (8 * size - 1):
                number -= 1 << (8 * size)
            value = number
            pos += size
        elif kind == TEXT or kind == BINARY_TEXT:
            length = data[pos]
            for shift in range(1, size):
                length |= data[pos + shift] << (8 * shift)
            start = pos + size
            pos = start + length
            if pos > len(data):
                raise ValueError("a string runs past the event")
            raw = data[start:pos]
            if kind == TEXT:
                encoding: str = extras[index]
                value = raw.decode(encoding)
            else:
                value = raw if raw else ""
        elif kind == DATETIME2:
            whole = _big_endian(data, pos, 5, 0) - 0x8000000000
            micros = 0
            if size:
                micros = _big_endian(data, pos + 5, size, 0)
                if micros >> (8 * size - 1):
                    micros -= 1 << (8 * size)
                micros *= 10_000 if size == 1 else 100 if size == 2 else 1
            ymd = whole >> 17
            hms = whole & 0x1FFFF
            year_month = ymd >> 5
            try:
                value = datetime(
                    year_month // 13,
                    year_month % 13,
                    ymd & 31,
                    hms >> 12,
                    (hms >> 6) & 63,
                    hms & 63,
                    micros,
                )
            except ValueError:
                value = datetime2_from(data[pos : pos + 5 + size], int(extras[index]))
            pos += 5 + size
        elif kind == TIMESTAMP2:
            seconds = _big_endian(data, pos, 4, 0)
            micros = 0
            if size:
                micros = _big_endian(data, pos + 4, size, 0) * (10_000 if size == 1 else 100 if size == 2 else 1)
            if seconds == 0 and micros == 0:
                value = timestamp2_from(data[pos : pos + 4 + size], int(extras[index]))
            else:
                value = _instant(seconds, micros)
            pos += 4 + size
        elif kind == DECIMAL:
            value, pos = _decimal(data, pos, size, int(extras[index]))
        else:
            read: Callable[[bytes, int], tuple[Any, int]] = extras[index]
            value, pos = read(data, pos)
        image[index] = value
    return image, pos


def read_rows(
    data: bytes,
    pos: int,
    end: int,
    pairs: bool,
    kinds: list[int],
    sizes: list[int],
    extras: list[Any],
) -> list[Any]:
    """Every row of the event body ``data[pos:end]``: (before, after) pairs for updates, else images (lists of
    the values in column order).  Raises ``ValueError`` unless the images end exactly at ``end``."""
    out: list[Any] = []
    while pos < end:
        if pairs:
            before, pos = _image(data, pos, kinds, sizes, extras)
            after, pos = _image(data, pos, kinds, sizes, extras)
            out.append((before, after))
        else:
            values, pos = _image(data, pos, kinds, sizes, extras)
            out.append(values)
    if pos != end:
        raise ValueError(f"rows event read to {pos}, its body ends at {end}")
    return out
