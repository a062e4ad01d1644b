"""The pgoutput decoder on hand-built messages, byte for byte as PostgreSQL's protocol docs lay them out."""

from __future__ import annotations

import struct

import pytest

from liberation_assets.core.readers.pgoutput import (
    UNCHANGED,
    Begin,
    Column,
    Commit,
    Delete,
    Insert,
    LogicalMessage,
    Origin,
    Relation,
    Truncate,
    TypeInfo,
    Update,
    decode_message,
)


def _s(text: str) -> bytes:
    return text.encode() + b"\0"


def _tuple(*values: object) -> bytes:
    out = struct.pack(">h", len(values))
    for value in values:
        if value is None:
            out += b"n"
        elif value is UNCHANGED:
            out += b"u"
        else:
            data = str(value).encode()
            out += b"t" + struct.pack(">i", len(data)) + data
    return out


def test_begin_and_commit() -> None:
    assert decode_message(b"B" + struct.pack(">qqI", 0x16B3748, 789_000_000, 731)) == Begin(0x16B3748, 789_000_000, 731)
    assert decode_message(b"C" + struct.pack(">bqqq", 0, 10, 20, 30)) == Commit(0, 10, 20, 30)


def test_relation_with_key_flags_and_pg_catalog_namespace() -> None:
    body = (
        struct.pack(">I", 16384)
        + _s("shop")
        + _s("orders")
        + b"f"
        + struct.pack(">h", 2)
        + b"\x01"
        + _s("id")
        + struct.pack(">Ii", 2950, -1)
        + b"\x00"
        + _s("total")
        + struct.pack(">Ii", 1700, 786438)
    )
    assert decode_message(b"R" + body) == Relation(
        16384, "shop", "orders", "f", (Column("id", 2950, -1, True), Column("total", 1700, 786438, False))
    )
    catalog = b"R" + struct.pack(">I", 1) + _s("") + _s("t") + b"d" + struct.pack(">h", 0)
    assert decode_message(catalog).namespace == "pg_catalog"


def test_insert_with_null_and_utf8_text() -> None:
    message = b"I" + struct.pack(">I", 7) + b"N" + _tuple(1, None, "Шуруповёрт 🎁")
    assert decode_message(message) == Insert(7, ("1", None, "Шуруповёрт 🎁"))


def test_update_forms() -> None:
    plain = b"U" + struct.pack(">I", 7) + b"N" + _tuple(1, UNCHANGED)
    assert decode_message(plain) == Update(7, None, None, ("1", UNCHANGED))
    key_change = b"U" + struct.pack(">I", 7) + b"K" + _tuple(1, None) + b"N" + _tuple(2, "x")
    assert decode_message(key_change) == Update(7, ("1", None), "K", ("2", "x"))
    full = b"U" + struct.pack(">I", 7) + b"O" + _tuple(1, "big") + b"N" + _tuple(1, UNCHANGED)
    assert decode_message(full) == Update(7, ("1", "big"), "O", ("1", UNCHANGED))


def test_delete_truncate_message_type_origin() -> None:
    assert decode_message(b"D" + struct.pack(">I", 7) + b"K" + _tuple(5, None)) == Delete(7, ("5", None), "K")
    truncate = b"T" + struct.pack(">ib", 2, 3) + struct.pack(">II", 7, 8)
    assert decode_message(truncate) == Truncate((7, 8), True, True)
    message = b"M" + struct.pack(">bq", 0, 99) + _s("liberation.heartbeat") + struct.pack(">i", 3) + b"abc"
    assert decode_message(message) == LogicalMessage(False, 99, "liberation.heartbeat", b"abc")
    assert decode_message(b"Y" + struct.pack(">I", 70000) + _s("public") + _s("mood")) == TypeInfo(
        70000, "public", "mood"
    )
    assert decode_message(b"O" + struct.pack(">q", 5) + _s("upstream")) == Origin(5, "upstream")


def test_binary_column_kind() -> None:
    message = b"I" + struct.pack(">I", 1) + b"N" + struct.pack(">h", 1) + b"b" + struct.pack(">i", 2) + b"\x00\x01"
    assert decode_message(message).new == (b"\x00\x01",)


def test_unknown_kinds_fail_loudly() -> None:
    with pytest.raises(ValueError, match="unknown message type"):
        decode_message(b"Z")
    with pytest.raises(ValueError, match="unknown tuple column kind"):
        decode_message(b"I" + struct.pack(">I", 1) + b"N" + struct.pack(">h", 1) + b"x")
