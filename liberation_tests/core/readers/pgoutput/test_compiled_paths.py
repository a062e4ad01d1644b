"""The compiled fast paths of CDC (issue 18) give exactly what the column-by-column paths give, and step aside
where those are needed: unconvertible values, arrays, keys outside the projection, binary tuple columns."""

from __future__ import annotations

import struct

import pytest

from liberation_assets.core.errors import UnconvertibleValue
from liberation_assets.core.readers import pg_types
from liberation_assets.core.readers.pgoutput import UNCHANGED, Column, Relation, decoder
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
