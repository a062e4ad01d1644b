"""Row plans, CDC positions and DBLog chunk windows: the pure logic between decoder and engine."""

from __future__ import annotations

import pytest

from liberation_assets.core.errors import SchemaIncompatible
from liberation_assets.core.events import READ, ChangeEvent
from liberation_assets.core.readers.pgoutput import UNCHANGED, Column, Relation
from liberation_assets.core.readers.pgoutput.position import CdcPosition, TableProgress
from liberation_assets.core.readers.pgoutput.rows import RowPlan, fill_unchanged, unchanged_columns
from liberation_assets.core.readers.pgoutput.watermark import HIGH, LOW, ChunkWindow, parse_watermark, watermark_content

RELATION = Relation(
    1,
    "public",
    "t",
    "d",
    (
        Column("id", 20, -1, True),
        Column("secret", 25, -1, False),
        Column("body", 25, -1, False),
        Column("price", 1700, -1, False),
    ),
)


def test_plan_projects_renames_and_parses() -> None:
    plan = RowPlan.build(RELATION, {"id": "id", "text": "body", "price": "price"}, ["id"], ["id"])
    assert plan.row(("7", "hidden", "hello", "1.50")) == {"id": 7, "text": "hello", "price": "1.50"}
    assert plan.key_of(("7", None, None, None)) == {"id": 7}


def test_plan_without_projection_follows_the_relation() -> None:
    wider = RELATION._replace(columns=RELATION.columns + (Column("added", 23, -1, False),))
    plan = RowPlan.build(wider, None, ["id"], ["id"])
    assert list(plan.row(("1", "s", "b", None, "5"))) == ["id", "secret", "body", "price", "added"]


def test_plan_refuses_a_dropped_projected_column() -> None:
    narrower = RELATION._replace(columns=RELATION.columns[:2])
    with pytest.raises(SchemaIncompatible, match="body"):
        RowPlan.build(narrower, {"id": "id", "body": "body"}, ["id"], ["id"], "s")


def test_unchanged_toast_is_filled_from_the_full_old_row() -> None:
    assert fill_unchanged(("1", UNCHANGED), ("1", "big")) == ("1", "big")
    assert fill_unchanged(("1", UNCHANGED), None) == ("1", UNCHANGED)
    assert unchanged_columns({"a": 1, "b": UNCHANGED}) == ["b"]


def test_position_skips_exactly_what_was_published() -> None:
    mid = CdcPosition(lsn=100, index=4, complete=False)
    assert mid.skips(99, 10) and mid.skips(100, 4) and not mid.skips(100, 5) and not mid.skips(101, 0)
    done = CdcPosition(lsn=100, index=9, complete=True)
    assert done.skips(100, 50) and not done.skips(101, 0)
    assert not CdcPosition().skips(1, 0)


def test_position_round_trip() -> None:
    position = CdcPosition(
        lsn=2**33 + 5, index=3, complete=False, slot="s", tables={"a": TableProgress([1, "x"], 20, False)}
    )
    data = position.to_dict()
    assert data["lsn_text"] == "2/5"
    assert CdcPosition.from_dict(data) == position
    assert CdcPosition.from_dict(None) == CdcPosition()


def _event(key: int) -> ChangeEvent:
    return ChangeEvent(READ, {"id": key}, None, {"id": key}, 0)


def test_window_drops_keys_changed_between_watermarks_only() -> None:
    window = ChunkWindow("s", "abc", {b"1": _event(1), b"2": _event(2), b"3": _event(3)}, [3], False)
    window.on_change(b"1")  # before the low watermark: the chunk read is newer, keep it
    assert not window.on_marker("stale", LOW)
    assert not window.on_marker(*parse_watermark(watermark_content("abc", LOW).encode()))
    window.on_change(b"2")
    assert window.on_marker("abc", HIGH)
    assert list(window.rows) == [b"1", b"3"] and window.dropped == 1
    window.on_truncate()
    assert not window.rows
