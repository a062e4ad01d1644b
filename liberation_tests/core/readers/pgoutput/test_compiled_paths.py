"""The compiled fast paths of CDC (issue 18) give exactly what the column-by-column paths give, and step aside
where those are needed: unconvertible values, arrays, keys outside the projection, binary tuple columns.

The mypyc build of ``tuple_walk`` (``core.compiled``) is compared with its own source, the unrolled walk and the
loop, on hand-built tuples and on the real pgoutput messages of a table of many types (text and binary)."""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa

from liberation_assets.core import compiled
from liberation_assets.core.errors import UnconvertibleValue
from liberation_assets.core.readers import pg_types
from liberation_assets.core.readers.pgoutput import (
    UNCHANGED,
    Column,
    Delete,
    Insert,
    Relation,
    Update,
    decode_message,
    decoder,
)
from liberation_assets.core.readers.pgoutput.rows import RowPlan, _convert

RELATION = Relation(
    1,
    "public",
    "t",
    "f",
    (
        Column("id", 20, -1, True),
        Column("note", 25, -1, False),
        Column("at", 1184, -1, False),
        Column("tags", 1007, -1, False),  # int4[]
        Column('odd "name"', 701, -1, False),
    ),
)
NEW = ("7", "hello", "2024-06-01 12:00:00.123456+00", "{1,2}", "1.5")
OLD = ("7", "bye", "2024-06-01 12:00:00.123456+00", "{1,2}", None)


def test_update_rows_equal_the_one_by_one_rows_and_share_only_immutable_values() -> None:
    plan = RowPlan.build(RELATION, None, ["id"], ["id"])
    images = plan.update_rows(NEW, OLD)
    assert images is not None
    after, before, key, old_key = images
    assert after == _convert(plan.columns, NEW, []) == plan.row(NEW)
    assert before == _convert(plan.columns, OLD, [])
    assert key == old_key == {"id": 7}
    assert list(after) == ["id", "note", "at", "tags", 'odd "name"']
    assert after["at"] is before["at"]  # same text: converted once
    assert after["tags"] == before["tags"] and after["tags"] is not before["tags"]  # lists stay apart


def test_unconvertible_values_take_the_one_by_one_path() -> None:
    plan = RowPlan.build(RELATION, None, ["id"], ["id"])
    bad = ("7", "x", "2024-06-01 12:00:00+05", "{1}", "2")
    assert plan.update_rows(bad, OLD) is None
    problems: list[str] = []
    assert plan.row(bad, problems)["at"] == "2024-06-01 12:00:00+05"
    assert problems and problems[0].startswith("column at:")
    with pytest.raises(UnconvertibleValue):
        plan.row(bad)


def test_a_key_outside_the_projection_is_left_to_the_one_by_one_path() -> None:
    plan = RowPlan.build(RELATION, {"note": "note"}, ["id"], ["id"])
    assert plan.update_rows(NEW, OLD) is None
    assert plan.row(NEW) == {"note": "hello"}


def test_null_and_unchanged_values_are_not_converted() -> None:
    plan = RowPlan.build(RELATION, None, ["id"], ["id"])
    assert plan.row(("1", None, None, UNCHANGED, UNCHANGED)) == {
        "id": 1,
        "note": None,
        "at": None,
        "tags": UNCHANGED,
        'odd "name"': UNCHANGED,
    }


def _tuple_bytes(*values: object) -> bytes:
    out = struct.pack(">h", len(values))
    for value in values:
        if value is None:
            out += b"n"
        elif value is UNCHANGED:
            out += b"u"
        elif isinstance(value, bytes):
            out += b"b" + struct.pack(">i", len(value)) + value
        else:
            text = str(value).encode()
            out += b"t" + struct.pack(">i", len(text)) + text
    return out


@pytest.mark.parametrize(
    "values", [(), ("",), ("a", None, UNCHANGED, "ünï €"), ("x", b"\x00\x01", None), tuple(str(i) for i in 300 * [1])]
)
def test_unrolled_walk_equals_the_loop(values: tuple[object, ...]) -> None:
    data = b"\xff" + _tuple_bytes(*values) + b"N"
    assert decoder._tuple(data, 1) == decoder._tuple_loop(data, 1) == (values, len(data) - 1)
    for walk in _walks():
        assert walk(data, 1) == (values, len(data) - 1)


WALK = "liberation_assets.core.readers.pgoutput.tuple_walk"


def _walk_source() -> ModuleType:
    source = compiled.source(WALK)
    source.bind(UNCHANGED)
    source.bind_messages(Insert, Update, Delete, decoder._python_decode_message)
    return source


def _walks() -> list[Callable[[bytes, int], tuple[Any, int]]]:
    """Every walk: the decoder's two, ``tuple_walk`` run from source, and its compiled build when there is one."""
    walks = [decoder._python_tuple, decoder._tuple_loop, _walk_source().walk_tuple]
    native = compiled.native(WALK)
    if native is not None:
        walks.append(native.walk_tuple)
    return walks


def test_the_decoder_uses_the_compiled_walk_when_its_build_is_current() -> None:
    native = compiled.native(WALK)
    if compiled.pure_python_forced() or native is None:
        assert decoder._tuple is decoder._python_tuple
        assert decoder.decode_message is decoder._python_decode_message
    else:
        assert decoder._tuple is native.walk_tuple
        assert decoder.decode_message is native.decode_message


@pytest.mark.parametrize(
    "data",
    [
        b"U\x00\x00\x00\x01X" + _tuple_bytes("1"),  # no new tuple
        b"U\x00\x00\x00\x01O" + _tuple_bytes("1") + b"X",  # old row, then no new tuple
        b"I\x00\x00\x00\x01X" + _tuple_bytes("1"),  # insert without new tuple
        b"D\x00\x00\x00\x01K" + struct.pack(">h", 1) + b"x",  # unknown column kind
        b"Z",  # unknown message
    ],
)
def test_decoders_refuse_malformed_changes_alike(data: bytes) -> None:
    decoders = [decoder.decode_message, decoder._python_decode_message, _walk_source().decode_message]
    errors = []
    for decode in decoders:
        with pytest.raises(ValueError) as raised:
            decode(data)
        errors.append(str(raised.value))
    assert len(set(errors)) == 1, errors


def test_walks_refuse_an_unknown_kind_alike() -> None:
    data = struct.pack(">h", 2) + b"n" + b"x"
    for walk in _walks():
        with pytest.raises(ValueError, match="unknown tuple column kind 'x'"):
            walk(data, 0)


_CORPUS_DDL = """
CREATE TABLE corpus (id bigint PRIMARY KEY, t text, v varchar(20), c char(5), n numeric(12,3), f float8,
  b boolean, ts timestamptz, d date, j jsonb, u uuid, raw bytea, tags text[], big text);
CREATE TABLE corpus_full (id int PRIMARY KEY, note text, big text);
ALTER TABLE corpus_full REPLICA IDENTITY FULL;
ALTER TABLE corpus ALTER COLUMN big SET STORAGE EXTERNAL;
INSERT INTO corpus SELECT g, 'text ' || g || ' ünï €😀', 'v' || g, 'c', g * 1.5, g / 3.0, mod(g, 2) = 0,
  '2024-06-01 12:00:00+00'::timestamptz + g * interval '1 second', '2024-06-01'::date + g, jsonb_build_object('k', g),
  md5(g::text)::uuid, decode(md5(g::text), 'hex'), ARRAY['a', NULL, 'c "q"'], repeat('toast ' || g, 2000)
  FROM generate_series(1, 40) g;
INSERT INTO corpus (id) VALUES (0);
INSERT INTO corpus_full SELECT g, 'note ' || g, repeat('full ' || g, 2000) FROM generate_series(1, 20) g;
UPDATE corpus SET t = t || ' v2', f = NULL WHERE mod(id, 3) = 0;
UPDATE corpus SET id = id + 1000 WHERE mod(id, 10) = 1;
UPDATE corpus_full SET note = NULL WHERE mod(id, 2) = 0;
DELETE FROM corpus WHERE mod(id, 7) = 0;
DELETE FROM corpus_full WHERE mod(id, 5) = 0;
"""


@pytest.mark.integration
def test_compiled_and_pure_walks_agree_on_real_pgoutput_messages(pg_engine: sa.Engine) -> None:
    """Inserts, updates (unchanged TOAST values, key changes, REPLICA IDENTITY FULL), deletes, in text and binary."""
    name = f"corpus_{uuid.uuid4().hex[:6]}"
    with pg_engine.begin() as db:
        db.exec_driver_sql(_CORPUS_DDL.split("INSERT")[0])
        db.exec_driver_sql(f"CREATE PUBLICATION {name} FOR TABLE corpus, corpus_full")
    with pg_engine.begin() as db:
        db.exec_driver_sql(f"SELECT pg_create_logical_replication_slot('{name}', 'pgoutput')")
    with pg_engine.begin() as db:
        db.exec_driver_sql("INSERT" + "INSERT".join(_CORPUS_DDL.split("INSERT")[1:]))
    messages: list[bytes] = []
    with pg_engine.begin() as db:
        for binary in ("false", "true"):
            messages += [
                bytes(row[0])
                for row in db.exec_driver_sql(
                    f"SELECT data FROM pg_logical_slot_peek_binary_changes('{name}', NULL, NULL, 'proto_version', "
                    f"'1', 'publication_names', '{name}', 'binary', '{binary}')"
                )
            ]
        db.exec_driver_sql(f"SELECT pg_drop_replication_slot('{name}')")
    walks = _walks()
    native = compiled.native(WALK)
    tuples = 0
    for data in messages:
        for offset in _tuple_offsets(data):
            results = [walk(data, offset) for walk in walks]
            assert all(result == results[0] for result in results[1:]), data
            tuples += 1
    decoded = [decode_message(data) for data in messages]
    values = [value for message in decoded if isinstance(message, Update) for value in message.new]
    assert tuples > 200 and UNCHANGED in values and any(isinstance(value, bytes) for value in values)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(decoder, "_tuple", decoder._python_tuple)
        assert [decoder._python_decode_message(data) for data in messages] == decoded  # no compiled code at all
    if native is not None:
        assert [_walk_source().decode_message(data) for data in messages] == decoded


def _tuple_offsets(data: bytes) -> list[int]:
    """Where the tuples of an Insert, Update or Delete start (their int16 column count)."""
    if data[0] == 0x49 or data[0] == 0x44:  # 'I', 'D': relid, kind byte, tuple
        return [6]
    if data[0] != 0x55:
        return []
    if data[5] == 0x4E:  # 'N': the new tuple only
        return [6]
    _, after_old = decoder._tuple_loop(data, 6)
    return [6, after_old + 1]


def test_timestamptz_fast_shapes_equal_the_guarded_converter() -> None:
    slow = pg_types._guard(pg_types._timestamptz)
    fast = pg_types.value_converter(pg_types.PgType(pg_types.TIMESTAMPTZ), None)
    assert fast is not None
    for text in (
        "2024-06-01 12:34:56.123456+00",
        "2024-06-01 12:34:56+00",
        "2024-06-01 12:34:56.5+00",
        "10000-01-01 00:00:00+00",
        "12345-06-01 12:34:56.123456+00",
        "0001-01-01 00:00:00+00 BC",
        "infinity",
    ):
        assert fast(text) == slow(text)
    for text in ("2024-06-01 12:34:56.123456+01", "garbage-text-of-len-29-xxxxxx", "2024-06-01T12:34:56+00"):
        with pytest.raises(UnconvertibleValue):
            fast(text)
