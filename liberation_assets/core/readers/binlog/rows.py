"""Rows events' bytes → row images (values in column order), read with one plan per table map instead of the library's per-value dispatch.

python-mysql-replication reads each value through its packet wrapper and a
chain of type tests (a few µs per column, so most of an update's cost).  A
``RowImageReader`` is built once per table map: one small reader per column,
picked by its type, reading straight from the event's bytes.  It gives exactly
what the library gives (with ``temporal`` for temporal columns and an empty SET
as ``set()``, as ``client`` patches them); a table with a column type it does
not read, or an event it cannot read to its exact end, is left to the library.
An image is a sequence, not a dict: ``mapping`` picks its values by position.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

from pymysqlreplication.constants import FIELD_TYPE

from liberation_assets.core import compiled
from liberation_assets.core.readers.binlog import images
from liberation_assets.core.readers.binlog.temporal import TEMPORAL, temporal_decoder

ColumnRead = Callable[[bytes, int], tuple[Any, int]]
"""(event bytes, offset) → (value, offset after it)."""

_DIG2BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)


def _fixed(fmt: str) -> ColumnRead:
    unpack_from = struct.Struct(fmt).unpack_from
    size = struct.calcsize(fmt)

    def read(data: bytes, pos: int) -> tuple[Any, int]:
        return unpack_from(data, pos)[0], pos + size

    return read


def _int24(signed: bool) -> ColumnRead:
    def read(data: bytes, pos: int) -> tuple[Any, int]:
        return int.from_bytes(data[pos : pos + 3], "little", signed=signed), pos + 3

    return read


def _year(data: bytes, pos: int) -> tuple[Any, int]:
    return data[pos] + 1900, pos + 1


def _decoder(encoding: str | None) -> Callable[[bytes], Any]:
    """The library's ``__read_string`` decoding: strict, and the bytes themselves for an encoding Python lacks
    (``binary``), except that ``b''`` decodes to ``''`` whatever the encoding."""
    if encoding is None:
        return bytes.decode
    try:
        "".encode(encoding)
    except LookupError:
        return lambda raw: raw if raw else ""
    return lambda raw: raw.decode(encoding)


def _string(length_size: int, encoding: str | None) -> ColumnRead:
    decode = _decoder(encoding)
    if length_size == 1:

        def read_short(data: bytes, pos: int) -> tuple[Any, int]:
            end = pos + 1 + data[pos]
            return decode(data[pos + 1 : end]), end

        return read_short

    def read(data: bytes, pos: int) -> tuple[Any, int]:
        start = pos + length_size
        end = start + int.from_bytes(data[pos:start], "little")
        return decode(data[start:end]), end

    return read


def _raw(length_size: int) -> ColumnRead:
    def read(data: bytes, pos: int) -> tuple[Any, int]:
        start = pos + length_size
        end = start + int.from_bytes(data[pos:start], "little")
        return data[start:end], end

    return read


def _decimal(precision: int, scale: int) -> ColumnRead:
    """MySQL's packed DECIMAL as the exact text the server prints (``12.50``, the column's scale kept): the
    published form, so no ``Decimal`` is built per value (the library's ``__read_new_decimal`` gives the same
    digits as a Decimal, whose ``format(value, "f")`` is this text)."""
    integral = precision - scale
    whole_int, part_int = divmod(integral, 9)
    whole_frac, part_frac = divmod(scale, 9)
    head, tail = _DIG2BYTES[part_int], _DIG2BYTES[part_frac]
    size = head + 4 * whole_int + 4 * whole_frac + tail
    # The value is read as one unsigned integer; each digit group is a bit field of it, (shift, mask, base)
    # from the most significant one, integral groups then fraction groups.
    lengths = ([(head, 10**part_int)] if head else []) + [(4, 10**9)] * whole_int
    fraction_lengths = [(4, 10**9)] * whole_frac + ([(tail, 10**part_frac)] if tail else [])
    fraction_bits = 8 * (4 * whole_frac + tail)

    def fields(groups: list[tuple[int, int]], bits: int) -> tuple[tuple[int, int, int], ...]:
        out = []
        for length, base in groups:
            bits -= 8 * length
            out.append((bits, (1 << (8 * length)) - 1, base))
        return tuple(out)

    integral_fields = fields(lengths, 8 * size)
    fraction_fields = fields(fraction_lengths, fraction_bits)
    sign_bit = 1 << (8 * size - 1)
    all_ones = (1 << (8 * size)) - 1
    width = f"0{scale}d"

    def read(data: bytes, pos: int) -> tuple[Any, int]:
        end = pos + size
        packed = int.from_bytes(data[pos:end], "big") ^ sign_bit  # the sign bit is set for positive values
        negative = packed & sign_bit
        if negative:
            packed ^= all_ones  # negative values are stored with every bit inverted
        whole = 0
        for shift, mask, base in integral_fields:
            whole = whole * base + ((packed >> shift) & mask)
        if not scale:
            return (f"-{whole}" if negative else str(whole)), end
        part = 0
        for shift, mask, base in fraction_fields:
            part = part * base + ((packed >> shift) & mask)
        return (f"-{whole}.{part:{width}}" if negative else f"{whole}.{part:{width}}"), end

    return read


def _temporal(kind: int, fsp: int) -> ColumnRead:
    width, decode = temporal_decoder(kind, fsp)

    def read(data: bytes, pos: int) -> tuple[Any, int]:
        end = pos + width
        return decode(data[pos:end]), end

    return read


def _enum(size: int, labels: Sequence[str]) -> ColumnRead:
    def read(data: bytes, pos: int) -> tuple[Any, int]:
        return labels[int.from_bytes(data[pos : pos + size], "little")], pos + size

    return read


def _set(size: int, members: Sequence[str]) -> ColumnRead:
    def read(data: bytes, pos: int) -> tuple[Any, int]:
        mask = int.from_bytes(data[pos : pos + size], "little")
        return {member for index, member in enumerate(members) if mask & (1 << index)}, pos + size

    return read


def _bit(bits: int, size: int) -> ColumnRead:
    """BIT as the library gives it: the column's bits as a string of 0s and 1s, most significant first."""
    mask = (1 << bits) - 1

    def read(data: bytes, pos: int) -> tuple[Any, int]:
        return format(int.from_bytes(data[pos : pos + size], "big") & mask, f"0{bits}b"), pos + size

    return read


_FIXED = {
    (FIELD_TYPE.TINY, False): "<b",
    (FIELD_TYPE.TINY, True): "<B",
    (FIELD_TYPE.SHORT, False): "<h",
    (FIELD_TYPE.SHORT, True): "<H",
    (FIELD_TYPE.LONG, False): "<i",
    (FIELD_TYPE.LONG, True): "<I",
    (FIELD_TYPE.LONGLONG, False): "<q",
    (FIELD_TYPE.LONGLONG, True): "<Q",
}


def column_reader(column: Any, encoding_of: Callable[[str], str]) -> ColumnRead | None:
    """The reader of one library column (``pymysqlreplication.column.Column``), or None for a type left to the
    library (MySQL's binary JSON, the pre-5.6 TIME and TIMESTAMP, ENUM/SET without their labels)."""
    kind = column.type
    if kind in TEMPORAL:
        return _temporal(kind, getattr(column, "fsp", 0))
    fmt = _FIXED.get((kind, bool(column.unsigned)))
    if fmt is not None:
        return _fixed(fmt)
    if kind == FIELD_TYPE.INT24:
        return _int24(not column.unsigned)
    if kind == FIELD_TYPE.FLOAT:
        return _fixed("<f")
    if kind == FIELD_TYPE.DOUBLE:
        return _fixed("<d")
    if kind in (FIELD_TYPE.VARCHAR, FIELD_TYPE.STRING, FIELD_TYPE.BLOB):
        charset = column.character_set_name
        encoding = encoding_of(charset) if charset is not None else None
        size = column.length_size if kind == FIELD_TYPE.BLOB else 2 if column.max_length > 255 else 1
        return _string(size, encoding)
    if kind == FIELD_TYPE.GEOMETRY:
        return _raw(column.length_size)
    if kind == FIELD_TYPE.NEWDECIMAL:
        return _decimal(column.precision, column.decimals)
    if kind == FIELD_TYPE.YEAR:
        return _year
    if kind == FIELD_TYPE.ENUM and column.enum_values:
        return _enum(column.size, tuple(column.enum_values))
    if kind == FIELD_TYPE.SET and column.set_values:
        return _set(column.size, tuple(column.set_values))
    if kind == FIELD_TYPE.BIT:
        return _bit(column.bits, column.bytes)
    return None


def _inline(index: int, column: Any, encoding_of: Callable[[str], str]) -> tuple[list[str], dict[str, Any]] | None:
    """Source lines reading column ``index`` into ``c<index>`` (advancing ``pos``) for the commonest types, with the
    names they use; None for the others, which call their ``column_reader``."""
    kind, value = column.type, f"c{index}"
    names: dict[str, Any] = {}
    fmt = _FIXED.get((kind, bool(column.unsigned))) or {FIELD_TYPE.FLOAT: "<f", FIELD_TYPE.DOUBLE: "<d"}.get(kind)
    if fmt is not None and kind not in TEMPORAL:
        names[f"u{index}"] = struct.Struct(fmt).unpack_from
        return [f"{value} = u{index}(data, pos)[0]", f"pos += {struct.calcsize(fmt)}"], names
    if kind in TEMPORAL:
        width, decode = temporal_decoder(kind, getattr(column, "fsp", 0))
        names[f"t{index}"] = decode
        return [f"{value} = t{index}(data[pos : pos + {width}])", f"pos += {width}"], names
    if kind in (FIELD_TYPE.VARCHAR, FIELD_TYPE.STRING, FIELD_TYPE.BLOB):
        size = column.length_size if kind == FIELD_TYPE.BLOB else 2 if column.max_length > 255 else 1
        if size == 1:
            lines = ["end = pos + 1 + data[pos]", "raw = data[pos + 1 : end]"]
        else:
            lines = [
                f"end = pos + {size} + from_bytes(data[pos : pos + {size}], 'little')",
                f"raw = data[pos + {size} : end]",
            ]
        charset = column.character_set_name
        encoding = encoding_of(charset) if charset is not None else "utf-8"
        try:
            "".encode(encoding)
        except LookupError:
            lines.append(f"{value} = raw if raw else ''")  # the library keeps the bytes (b'' decodes to '')
        else:
            names[f"e{index}"] = encoding
            lines.append(f"{value} = raw.decode(e{index})")
        return [*lines, "pos = end"], names
    return None


_native_images = compiled.native("liberation_assets.core.readers.binlog.images")
USE_COMPILED = _native_images is not None
"""Whether readers built from now on read with the mypyc build of ``images`` (interpreted, that loop is slower
than their own code); the kind codes are the same in the source module and its build."""
_read_rows: Callable[..., list[Any]] = (_native_images or images).read_rows

_INTEGER_SIZES = {
    FIELD_TYPE.TINY: 1,
    FIELD_TYPE.SHORT: 2,
    FIELD_TYPE.INT24: 3,
    FIELD_TYPE.LONG: 4,
    FIELD_TYPE.LONGLONG: 8,
}


def image_column(column: Any, encoding_of: Callable[[str], str]) -> tuple[int, int, Any]:
    """Column ``column`` as ``images`` reads it: (kind, size, extra), the same value as its ``column_reader``."""
    kind = column.type
    if kind in _INTEGER_SIZES:
        return (images.UINT if column.unsigned else images.INT), _INTEGER_SIZES[kind], None
    if kind in (FIELD_TYPE.VARCHAR, FIELD_TYPE.STRING, FIELD_TYPE.BLOB):
        size = column.length_size if kind == FIELD_TYPE.BLOB else 2 if column.max_length > 255 else 1
        charset = column.character_set_name
        encoding = encoding_of(charset) if charset is not None else "utf-8"
        try:
            "".encode(encoding)
        except LookupError:
            return images.BINARY_TEXT, size, None
        return images.TEXT, size, encoding
    if kind == FIELD_TYPE.NEWDECIMAL:
        return images.DECIMAL, column.precision, column.decimals
    fsp = getattr(column, "fsp", 0)
    if kind == FIELD_TYPE.DATETIME2:
        return images.DATETIME2, (fsp + 1) // 2, fsp
    if kind == FIELD_TYPE.TIMESTAMP2:
        return images.TIMESTAMP2, (fsp + 1) // 2, fsp
    return images.CALL, 0, column_reader(column, encoding_of)


class RowImageReader:
    """Reads the row images of one table map's rows events (every column present: ``binlog_row_image=FULL``).

    Its ``image`` is compiled once per table map: straight-line code over the columns, with no call per value
    for the commonest types (about a third of the cost of a loop over per-column readers)."""

    def __init__(self, names: Sequence[str], columns: Sequence[Any], encoding_of: Callable[[str], str]):
        self.columns = len(names)
        self.null_bytes = (len(names) + 7) // 8
        self.all_present = (1 << len(names)) - 1
        """The columns-present bitmap of a full image, as an int (little-endian)."""
        namespace: dict[str, Any] = {"from_bytes": int.from_bytes}
        body = [f"nulls = from_bytes(data[pos : pos + {self.null_bytes}], 'little')", f"pos += {self.null_bytes}"]
        for index, column in enumerate(columns):
            inline = _inline(index, column, encoding_of)
            if inline is None:
                namespace[f"r{index}"] = column_reader(column, encoding_of)
                lines = [f"c{index}, pos = r{index}(data, pos)"]
            else:
                lines, used = inline
                namespace.update(used)
            body.append(f"if nulls & {1 << index}:")
            body.append(f"    c{index} = None")
            body.append("else:")
            body.extend(f"    {line}" for line in lines)
        body.append("return (" + "".join(f"c{i}, " for i in range(len(names))) + "), pos")
        source = "def image(data, pos):\n" + "".join(f"    {line}\n" for line in body)
        exec(compile(source, f"<binlog row image of {len(names)} columns>", "exec"), namespace)  # noqa: S102
        self.image: Callable[[bytes, int], tuple[tuple[Any, ...], int]] = namespace["image"]
        """One row image at ``pos`` (its null bitmap, then the non-NULL values): its values in column order."""
        described = [image_column(column, encoding_of) for column in columns]
        self.kinds = [kind for kind, _, _ in described]
        self.sizes = [size for _, size, _ in described]
        self.extras = [extra for _, _, extra in described]
        self.compiled = USE_COMPILED
        """Whether ``rows`` reads with ``images`` (compiled by mypyc) rather than ``image``."""

    @classmethod
    def of(cls, columns: Sequence[Any], encoding_of: Callable[[str], str]) -> "RowImageReader | None":
        """A reader for these library columns, or None when one of them is left to the library."""
        readers = [column_reader(column, encoding_of) for column in columns]
        names = [column.name for column in columns]
        if any(reader is None for reader in readers) or not all(names) or len(set(names)) != len(names):
            return None
        return cls([str(name) for name in names], columns, encoding_of)

    def rows(self, data: bytes, pos: int, end: int, pairs: bool) -> list[Any]:
        """Every row of the event body ``data[pos:end]``: (before, after) pairs for updates, else images, each
        image its values in column order (a tuple, or a list from ``images``): no dict per image.  Raises ``ValueError`` unless the images end exactly at ``end``."""
        if self.compiled:
            return _read_rows(data, pos, end, pairs, self.kinds, self.sizes, self.extras)
        image = self.image
        out: list[Any] = []
        append = out.append
        while pos < end:
            if pairs:
                before, pos = image(data, pos)
                after, pos = image(data, pos)
                append((before, after))
            else:
                values, pos = image(data, pos)
                append(values)
        if pos != end:
            raise ValueError(f"rows event read to {pos}, its body ends at {end}")
        return out
