"""Rows of a log event become a stream's events: projection, keys, key changes, soft deletes, new columns."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from pymysqlreplication.constants import FIELD_TYPE

from liberation_assets.core.errors import SchemaIncompatible
from liberation_assets.core.readers.binlog.log import ColumnMeta, LogTable
from liberation_assets.core.readers.mysql_types import SourceType
from liberation_tests.core.readers.binlog.support import COST, DELETED, HINTS, ID, NAME, UPDATED, WIDGETS, mapper

SOURCE = {"file": "mariadb-bin.000001", "pos": 4, "event": 500, "gtid": "0-1-7", "server_id": 1, "snapshot": "false"}
ROW = {"id": 1, "name": "Grüße", "cost": Decimal("9.99"), "updated_at": datetime(2024, 1, 2, 3, 4, 5, 600000)}
PUBLIC = {"id": "id", "label": "name", "updated_at": "updated_at"}


def test_insert_is_projected_with_public_names_and_times_in_utc() -> None:
    m, _ = mapper(PUBLIC, zone=ZoneInfo("Europe/Berlin"))
    [event] = m.events("c", WIDGETS, [dict(ROW)], 1_700_000_000_000, SOURCE)
    assert event.op == "c" and event.key == {"id": 1} and event.before is None
    assert event.after == {
        "id": 1,
        "label": "Grüße",
        "updated_at": datetime(2024, 1, 2, 2, 4, 5, 600000, tzinfo=timezone.utc),
    }
    assert "cost" not in event.after  # internal columns never leave
    assert event.source == {**SOURCE, "row": 0} and event.ts_ms == 1_700_000_000_000


def test_update_delete_and_a_key_change() -> None:
    m, _ = mapper(PUBLIC)
    changed = dict(ROW, name="new")
    moved = dict(ROW, id=2)
    events = m.events("u", WIDGETS, [(dict(ROW), changed), (dict(ROW), moved)], 0, SOURCE)
    assert [(e.op, e.key) for e in events] == [("u", {"id": 1}), ("d", {"id": 1}), ("c", {"id": 2})]
    assert events[0].before["label"] == "Grüße" and events[0].after["label"] == "new"
    assert [e.source["row"] for e in events] == [0, 1, 1]
    [deleted] = m.events("d", WIDGETS, [dict(ROW)], 0, SOURCE)
    assert deleted.op == "d" and deleted.before["label"] == "Grüße" and deleted.after is None


def test_soft_deletes_become_deletes() -> None:
    layout = LogTable("shop", "widgets", (ID, NAME, UPDATED, DELETED))
    m, _ = mapper({"id": "id", "label": "name"}, soft_delete_column="deleted_at")
    live = {"id": 1, "name": "a", "updated_at": datetime(2024, 1, 1), "deleted_at": None}
    gone = dict(live, deleted_at=datetime(2024, 1, 2))
    events = m.events("u", layout, [(live, gone), (gone, live)], 0, SOURCE)
    assert [(e.op, e.before, e.after) for e in events] == [
        ("d", {"id": 1, "label": "a"}, None),
        ("c", None, {"id": 1, "label": "a"}),
    ]
    assert m.events("c", layout, [gone], 0, SOURCE) == []


def test_without_a_projection_an_added_column_appears_after_ddl() -> None:
    m, reflections = mapper(None)
    [before] = m.events("c", WIDGETS, [dict(ROW)], 0, SOURCE)
    wider = LogTable("shop", "widgets", (*WIDGETS.columns, ColumnMeta("color", FIELD_TYPE.VARCHAR, charset="utf8mb4")))
    m.forget_layouts()
    [after] = m.events("c", wider, [dict(ROW, color="red")], 0, SOURCE)
    assert "color" not in before.after and after.after["color"] == "red"
    assert len(reflections) == 2  # the table was reflected again for the new layout


def test_an_explicit_projection_ignores_new_columns_and_names_dropped_ones() -> None:
    m, _ = mapper(PUBLIC)
    wider = LogTable("shop", "widgets", (*WIDGETS.columns, ColumnMeta("color", FIELD_TYPE.VARCHAR)))
    [event] = m.events("c", wider, [dict(ROW, color="red")], 0, SOURCE)
    assert set(event.after) == {"id", "label", "updated_at"}
    narrower = LogTable("shop", "widgets", (ID, UPDATED))
    with pytest.raises(SchemaIncompatible, match="name"):
        m.events("c", narrower, [{"id": 1, "updated_at": None}], 0, SOURCE)


def test_plans_are_cached_per_layout() -> None:
    m, reflections = mapper(PUBLIC)
    for _ in range(3):
        m.events("c", WIDGETS, [dict(ROW)], 0, SOURCE)
    assert len(reflections) == 1


def test_a_value_that_cannot_be_carried_marks_its_row_and_spares_the_others() -> None:
    m, _ = mapper(PUBLIC, zone=ZoneInfo("America/New_York"))
    late = dict(ROW, id=2, updated_at=datetime(9999, 12, 31, 23, 0))  # past year 9999 once in UTC
    good, bad = m.events("c", WIDGETS, [dict(ROW), late], 0, SOURCE)
    assert good.problems is None and good.after["updated_at"] == datetime(
        2024, 1, 2, 8, 4, 5, 600000, tzinfo=timezone.utc
    )
    assert bad.key == {"id": 2} and bad.after["updated_at"] == "9999-12-31T23:00:00"
    assert bad.problems == [
        "column updated_at: DATETIME 9999-12-31 23:00:00 in America/New_York is outside years 1..9999 in UTC"
    ]


def _positional(image: dict[str, object]) -> tuple[object, ...]:
    return tuple(image[column.name] for column in WIDGETS.columns)


def test_positional_images_give_the_same_events_as_images_by_name() -> None:
    """The binlog reader's images are sequences in the layout's column order (``Rows.positional``)."""
    zone = ZoneInfo("America/New_York")
    late = dict(ROW, id=3, updated_at=datetime(9999, 12, 31, 23, 0))  # unconvertible: its row takes the slow path
    moved = dict(ROW, id=2, name="moved")
    cases = [("c", [dict(ROW), late]), ("u", [(dict(ROW), dict(ROW, name="x")), (dict(ROW), moved)]), ("d", [late])]
    for op, rows in cases:
        by_name, _ = mapper(PUBLIC, zone=zone)
        positional, _ = mapper(PUBLIC, zone=zone)
        images = [
            (_positional(row[0]), _positional(row[1])) if op == "u" else _positional(row)  # type: ignore[arg-type]
            for row in rows
        ]
        expected = by_name.events(op, WIDGETS, rows, 0, SOURCE)
        assert positional.events(op, WIDGETS, images, 0, SOURCE, positional=True) == expected
        assert len(expected) == (3 if op == "u" else len(rows))


def test_positional_images_skip_converters_that_return_the_readers_values_as_they_are() -> None:
    """TIMESTAMP2 and DECIMAL as the binlog reader gives them (an aware UTC datetime or the zero TIMESTAMP's
    text, the exact decimal text) publish the same with their converters skipped."""
    placed = ColumnMeta("placed_at", FIELD_TYPE.TIMESTAMP2)
    layout = LogTable("shop", "widgets", (ID, COST, placed))
    hints = {**HINTS, "placed_at": SourceType("timestamp", "timestamp(6)", 6)}
    rows = [
        {"id": 1, "cost": "12.50", "placed_at": datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc)},
        {"id": 2, "cost": "-0.01", "placed_at": "0000-00-00 00:00:00.000000"},
        {"id": 3, "cost": None, "placed_at": None},
    ]
    by_name, _ = mapper(None, hints)
    positional, _ = mapper(None, hints)
    images = [tuple(row[column.name] for column in layout.columns) for row in rows]
    expected = by_name.events("c", layout, rows, 0, SOURCE)
    assert positional.events("c", layout, images, 0, SOURCE, positional=True) == expected
    assert [e.after["cost"] for e in expected] == ["12.50", "-0.01", None]
