"""Decode one pgoutput message (protocol version 1) from its bytes.

The layout follows PostgreSQL's "Logical Replication Message Formats": a type
byte, then big-endian integers and NUL-terminated strings.  Unknown types raise
``ValueError`` rather than being skipped, because skipping a message could
silently drop changes.
"""

from __future__ import annotations

from collections.abc import Callable
from struct import Struct
from typing import Any

from liberation_assets.core import compiled
from liberation_assets.core.readers.pgoutput.messages import (
    UNCHANGED,
    Begin,
    Column,
    Commit,
    Delete,
    Insert,
    LogicalMessage,
    Message,
    Origin,
    Relation,
    Truncate,
    TupleData,
    TupleValue,
    TypeInfo,
    Update,
)

_I16 = Struct(">h")
_I32 = Struct(">i")
_U32 = Struct(">I")
_BEGIN = Struct(">qqI")
_COMMIT = Struct(">bqqq")
_COLUMN_TAIL = Struct(">Ii")
_MESSAGE_HEAD = Struct(">bq")
_new = tuple.__new__
"""A change's NamedTuple built without its Python-level ``__new__`` (the same tuple; ~0.3 µs less per event)."""


def _string(data: bytes, offset: int) -> tuple[str, int]:
    end = data.index(b"\0", offset)
    return data[offset:end].decode("utf-8"), end + 1


def _python_tuple(data: bytes, offset: int) -> tuple[TupleData, int]:
    """The columns of one tuple: the hottest loop of CDC, so one walk unrolled for its column count (issue 18);
    the path when ``tuple_walk`` has no compiled build."""
    count = (data[offset] << 8) | data[offset + 1]  # int16, never negative
    walk = _WALKS.get(count)
    if walk is None and count <= _UNROLLED_UP_TO:
        walk = _WALKS[count] = _unrolled_walk(count)
    if walk is not None:
        walked = walk(data, offset + 2)
        if walked is not None:
            return walked
    return _tuple_loop(data, offset)


_UNROLLED_UP_TO = 256
_WALKS: dict[int, Callable[[bytes, int], tuple[TupleData, int] | None]] = {}


def _unrolled_walk(count: int) -> Callable[[bytes, int], tuple[TupleData, int] | None]:
    """``_tuple_loop`` for ``count`` columns as straight-line code (no loop, no list): text, NULL and unchanged
    TOAST values; None at any other kind, which the loop then reads (binary) or refuses (unknown)."""
    lines = ["def walk(data, o):"]
    for index in range(count):
        lines += [
            "    k = data[o]",
            "    if k == 0x74:",
            "        s = o + 5",
            "        o = s + unpack_len(data, o + 1)[0]",
            f"        v{index} = data[s:o].decode()",
            "    elif k == 0x6E:",
            "        o += 1",
            f"        v{index} = None",
            "    elif k == 0x75:",
            "        o += 1",
            f"        v{index} = UNCHANGED",
            "    else:",
            "        return None",
        ]
    lines.append("    return (" + "".join(f"v{index}, " for index in range(count)) + "), o")
    namespace: dict[str, Any] = {"unpack_len": _I32.unpack_from, "UNCHANGED": UNCHANGED}
    exec("\n".join(lines), namespace)  # noqa: S102 - code built here from the column count only
    walk: Callable[[bytes, int], tuple[TupleData, int] | None] = namespace["walk"]
    return walk


def _tuple_loop(data: bytes, offset: int) -> tuple[TupleData, int]:
    """The columns of one tuple, one by one: byte arithmetic, one ``struct`` call per value."""
    count = (data[offset] << 8) | data[offset + 1]  # int16, never negative
    offset += 2
    values: list[TupleValue] = []
    append = values.append
    unpack_len = _I32.unpack_from
    for _ in range(count):
        kind = data[offset]
        if kind == 0x74:  # 't' text
            start = offset + 5
            offset = start + unpack_len(data, offset + 1)[0]
            append(data[start:offset].decode())
        elif kind == 0x6E:  # 'n' null
            offset += 1
            append(None)
        elif kind == 0x75:  # 'u' unchanged TOAST
            offset += 1
            append(UNCHANGED)
        elif kind == 0x62:  # 'b' binary (only with the binary option)
            start = offset + 5
            offset = start + unpack_len(data, offset + 1)[0]
            append(bytes(data[start:offset]))
        else:
            raise ValueError(f"pgoutput: unknown tuple column kind {chr(kind)!r}")
    return tuple(values), offset


_native_walk = compiled.native("liberation_assets.core.readers.pgoutput.tuple_walk")
if _native_walk is not None:
    _native_walk.bind(UNCHANGED)
_tuple: Callable[[bytes, int], tuple[TupleData, int]] = (
    _python_tuple if _native_walk is None else _native_walk.walk_tuple
)
"""The columns of one tuple and the offset after them: the mypyc build of ``tuple_walk`` (issue 18: about ten
times faster) when there is one that matches its source, else the unrolled walk above."""


def _relation(data: bytes) -> Relation:
    (relid,) = _U32.unpack_from(data, 1)
    namespace, offset = _string(data, 5)
    name, offset = _string(data, offset)
    identity = chr(data[offset])
    (count,) = _I16.unpack_from(data, offset + 1)
    offset += 3
    columns = []
    for _ in range(count):
        flags = data[offset]
        column, offset = _string(data, offset + 1)
        type_oid, typmod = _COLUMN_TAIL.unpack_from(data, offset)
        offset += 8
        columns.append(Column(column, type_oid, typmod, bool(flags & 1)))
    return Relation(relid, namespace or "pg_catalog", name, identity, tuple(columns))


def _update(data: bytes) -> Update:
    (relid,) = _U32.unpack_from(data, 1)
    kind = data[5]
    if kind == 0x4F or kind == 0x4B:  # 'O' the whole old row, 'K' the old key
        old, offset = _tuple(data, 6)
        if data[offset] != 0x4E:
            raise ValueError(f"pgoutput: update without new tuple (got {chr(data[offset])!r})")
        new, _ = _tuple(data, offset + 1)
        return _new(Update, (relid, old, "O" if kind == 0x4F else "K", new))
    if kind != 0x4E:  # 'N'
        raise ValueError(f"pgoutput: update without new tuple (got {chr(kind)!r})")
    return _new(Update, (relid, None, None, _tuple(data, 6)[0]))


def _truncate(data: bytes) -> Truncate:
    (count,) = _I32.unpack_from(data, 1)
    options = data[5]
    relids = Struct(f">{count}I").unpack_from(data, 6) if count else ()
    return Truncate(tuple(relids), bool(options & 1), bool(options & 2))


def _message(data: bytes) -> LogicalMessage:
    flags, lsn = _MESSAGE_HEAD.unpack_from(data, 1)
    prefix, offset = _string(data, 10)
    (length,) = _I32.unpack_from(data, offset)
    offset += 4
    return LogicalMessage(bool(flags & 1), lsn, prefix, bytes(data[offset : offset + length]))


def _python_decode_message(data: bytes) -> Message:
    """One message from one XLogData payload."""
    kind = data[0]
    if kind == 0x49:  # 'I'
        (relid,) = _U32.unpack_from(data, 1)
        if data[5] != 0x4E:
            raise ValueError("pgoutput: insert without new tuple")
        return _new(Insert, (relid, _tuple(data, 6)[0]))
    if kind == 0x55:  # 'U'
        return _update(data)
    if kind == 0x44:  # 'D'
        (relid,) = _U32.unpack_from(data, 1)
        return _new(Delete, (relid, _tuple(data, 6)[0], chr(data[5])))
    if kind == 0x42:  # 'B'
        return Begin(*_BEGIN.unpack_from(data, 1))
    if kind == 0x43:  # 'C'
        return Commit(*_COMMIT.unpack_from(data, 1))
    if kind == 0x52:  # 'R'
        return _relation(data)
    if kind == 0x54:  # 'T'
        return _truncate(data)
    if kind == 0x4D:  # 'M'
        return _message(data)
    if kind == 0x59:  # 'Y'
        (oid,) = _U32.unpack_from(data, 1)
        namespace, offset = _string(data, 5)
        return TypeInfo(oid, namespace, _string(data, offset)[0])
    if kind == 0x4F:  # 'O'
        (lsn,) = Struct(">q").unpack_from(data, 1)
        return Origin(lsn, _string(data, 9)[0])
    raise ValueError(f"pgoutput: unknown message type {chr(kind)!r}")


decode_message: Callable[[bytes], Message] = _python_decode_message
"""One message from one XLogData payload: with the compiled ``tuple_walk``, its ``decode_message`` (Insert, Update
and Delete in one compiled call; every other message, and every error, by the one above)."""
if _native_walk is not None:
    _native_walk.bind_messages(Insert, Update, Delete, _python_decode_message)
    decode_message = _native_walk.decode_message
