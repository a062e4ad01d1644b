"""The pgoutput tuple walk, and the change messages built on it, written for mypyc (issue 18): typed byte
arithmetic on ``bytes``, no ``struct``.

Compiled (``liberation_assets.core.compiled``), it walks a tuple about ten times faster than the interpreted
unrolled walk of ``decoder``, which stays the path when there is no build.  Run from source it gives the same
values, only slower: the tests compare the two.  It imports nothing of the package, so that the compiled
module never holds another module's objects: the decoder hands it the ``UNCHANGED`` marker (``bind``) and the
message classes (``bind_messages``).
"""

from __future__ import annotations

from typing import Any

_unchanged: object = None
"""``messages.UNCHANGED``, set by ``bind`` before the first walk."""


def bind(unchanged: object) -> None:
    global _unchanged
    _unchanged = unchanged


def walk_tuple(data: bytes, offset: int) -> tuple[tuple[object, ...], int]:
    """The values of the tuple at ``offset`` (text ``str``, None, the unchanged marker, binary ``bytes``) and the
    offset after it; as ``decoder._tuple_loop``, which raises the same errors for an unknown kind."""
    count: int = (data[offset] << 8) | data[offset + 1]  # int16, never negative
    offset += 2
    values: list[object] = []
    unchanged = _unchanged
    for _ in range(count):
        kind: int = data[offset]
        if kind == 0x74 or kind == 0x62:  # 't' text, 'b' binary
            length: int = (
                (data[offset + 1] << 24) | (data[offset + 2] << 16) | (data[offset + 3] << 8) | data[offset + 4]
            )
            if length >= 0x80000000:  # int32
                length -= 0x100000000
            start = offset + 5
            offset = start + length
            if kind == 0x74:
                values.append(data[start:offset].decode())
            else:
                values.append(data[start:offset])
        elif kind == 0x6E:  # 'n' null
            offset += 1
            values.append(None)
        elif kind == 0x75:  # 'u' unchanged TOAST
            offset += 1
            values.append(unchanged)
        else:
            raise ValueError(f"pgoutput: unknown tuple column kind {chr(kind)!r}")
    return tuple(values), offset


_insert: Any = None
_update: Any = None
_delete: Any = None
_fallback: Any = None
_new: Any = tuple.__new__


def bind_messages(insert: Any, update: Any, delete: Any, fallback: Any) -> None:
    """``messages.Insert``, ``Update`` and ``Delete``, and the decoder's own ``decode_message`` for the rest."""
    global _insert, _update, _delete, _fallback
    _insert, _update, _delete, _fallback = insert, update, delete, fallback


def decode_message(data: bytes) -> Any:
    """``decoder.decode_message``: Insert, Update and Delete built here (the relation id by byte arithmetic, the
    tuples walked in the same call); any other message, or a change of a shape it does not expect, by the
    decoder's own (``bind_messages``), which also raises its errors."""
    kind: int = data[0]
    if kind == 0x55:  # 'U'
        relid: int = (data[1] << 24) | (data[2] << 16) | (data[3] << 8) | data[4]
        old_kind: int = data[5]
        if old_kind == 0x4F or old_kind == 0x4B:  # 'O' the whole old row, 'K' the old key
            old, offset = walk_tuple(data, 6)
            if data[offset] == 0x4E:
                new, _ = walk_tuple(data, offset + 1)
                return _new(_update, (relid, old, "O" if old_kind == 0x4F else "K", new))
        elif old_kind == 0x4E:  # 'N'
            return _new(_update, (relid, None, None, walk_tuple(data, 6)[0]))
    elif kind == 0x49:  # 'I'
        if data[5] == 0x4E:
            relid = (data[1] << 24) | (data[2] << 16) | (data[3] << 8) | data[4]
            return _new(_insert, (relid, walk_tuple(data, 6)[0]))
    elif kind == 0x44:  # 'D'
        relid = (data[1] << 24) | (data[2] << 16) | (data[3] << 8) | data[4]
        return _new(_delete, (relid, walk_tuple(data, 6)[0], chr(data[5])))
    return _fallback(data)
