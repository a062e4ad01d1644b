"""Turn result rows into change events: the one place where per-row work happens for polling readers."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from liberation_assets.core.events import DELETE, ChangeEvent
from liberation_assets.core.readers.mysql_types import RowConverter
from liberation_assets.core.readers.pg_sql_types import Unconvertible
from liberation_assets.core.readers.table import CURSOR_LABEL, DELETED_LABEL, KEY_LABEL, ProjectedTable
from liberation_assets.core.timestamps import normalize_row, now_ms, to_epoch_ms


class RowFinisher(Protocol):
    """Brings one result row into its published form, in place; returns its problems (``column <name>: <reason>``)."""

    def apply(self, row: dict[str, Any]) -> list[str] | None: ...


class PublishedRow:
    """PostgreSQL: values arrive published (``pg_types`` converters in the SELECT); drops the key columns selected
    a second time for watermarks and takes the source text of values a converter refused."""

    __slots__ = ("hidden", "checked")

    def __init__(self, table: ProjectedTable):
        self.hidden = [label for label in table.tuple_labels if label.startswith(KEY_LABEL)]
        self.checked = table.converted_public

    def apply(self, row: dict[str, Any]) -> list[str] | None:
        problems = None
        for label in self.hidden:
            del row[label]
        for name in self.checked:
            value = row[name]
            if value.__class__ is Unconvertible:
                row[name] = value.text
                problems = (problems or []) + [f"column {name}: {value.reason}"]
        return problems


class NormalizedRow:
    """Any other dialect: the driver's Python values, normalized (naive datetimes read in the source's zone)."""

    __slots__ = ("zone",)

    def __init__(self, zone: Any):
        self.zone = zone

    def apply(self, row: dict[str, Any]) -> list[str] | None:
        normalize_row(row, self.zone)
        return None


def row_finisher(table: ProjectedTable, zone: Any, columns: dict[str, str] | None = None) -> RowFinisher:
    """The one row converter of the table's dialect; ``columns`` (public → source) narrows it, for key rows."""
    if table.pg_types is not None and columns is None:
        return PublishedRow(table)
    if table.source_types is not None:
        return RowConverter.for_columns(table.columns if columns is None else columns, table.source_types, zone)
    return NormalizedRow(zone)


def events_from_rows(
    rows: Iterable[Any],
    table: ProjectedTable,
    zone: ZoneInfo,
    op: str,
    source: dict[str, Any],
    *,
    deleted_when: str = "not_null",
    keys: Sequence[str] | None = None,
) -> tuple[list[ChangeEvent], list[tuple[Any, ...]]]:
    """Events plus each row's ``(cursor, key...)`` tuple, in the source's own types.

    ``rows`` are mappings, or, cheaper, plain tuples (SQLAlchemy ``Row``) with their column ``keys``.
    """
    naive_zone = zone if zone is not None else timezone.utc
    finisher = row_finisher(table, naive_zone)
    public = list(table.columns)
    if keys is not None and list(keys[: len(public)]) == public:
        return _events_from_tuples(rows, table, naive_zone, op, source, deleted_when, list(keys), finisher)
    events: list[ChangeEvent] = []
    tuples: list[tuple[Any, ...]] = []
    key_public = table.key_public
    has_cursor = table.cursor_column is not None
    soft = table.soft_delete_column is not None
    single = key_public[0] if len(key_public) == 1 else None
    labels = table.tuple_labels
    single_label = labels[0] if len(labels) == 1 else None
    cursor_zone = _cursor_zone(table, naive_zone)
    finish = finisher.apply
    for values in rows:
        row = dict(zip(keys, values)) if keys is not None else dict(values)
        cursor = row.pop(CURSOR_LABEL, None) if has_cursor else None
        deleted = row.pop(DELETED_LABEL, None) if soft else None
        key_values = (row[single_label],) if single_label is not None else tuple([row[k] for k in labels])
        tuples.append((cursor, *key_values))
        problems = finish(row)
        key = {single: row[single]} if single is not None else {k: row[k] for k in key_public}
        ts = to_epoch_ms(cursor, cursor_zone) if cursor is not None else now_ms()
        is_deleted = soft and (
            bool(deleted) if deleted_when == "true" else deleted is not None and deleted is not False
        )
        if is_deleted:
            events.append(ChangeEvent(DELETE, key, row, None, ts, source, problems))
        else:
            events.append(ChangeEvent(op, key, None, row, ts, source, problems))
    return events, tuples


def _cursor_zone(table: ProjectedTable, naive_zone: Any) -> Any:
    cursor_type = table.source_types.get(table.cursor_column or "") if table.source_types is not None else None
    return timezone.utc if cursor_type is not None and cursor_type.data_type == "timestamp" else naive_zone


def _events_from_tuples(
    rows: Iterable[Any],
    table: ProjectedTable,
    naive_zone: Any,
    op: str,
    source: dict[str, Any],
    deleted_when: str,
    keys: list[str],
    finisher: RowFinisher,
) -> tuple[list[ChangeEvent], list[tuple[Any, ...]]]:
    """``events_from_rows`` for tuples whose first columns are the published ones (``select_list`` puts them
    first): each row dict is zipped from those alone, the cursor, deletion flag and key values are taken by
    position, and PostgreSQL's values are only looked at for ``Unconvertible`` where a converter ran."""
    events: list[ChangeEvent] = []
    tuples: list[tuple[Any, ...]] = []
    append_event, append_tuple = events.append, tuples.append
    public = list(table.columns)
    position = {name: i for i, name in enumerate(keys)}
    key_public = table.key_public
    single = key_public[0] if len(key_public) == 1 else None
    label_at = [position[label] for label in table.tuple_labels]
    single_at = label_at[0] if len(label_at) == 1 else None
    cursor_at = position.get(CURSOR_LABEL) if table.cursor_column is not None else None
    deleted_at = position.get(DELETED_LABEL) if table.soft_delete_column is not None else None
    cursor_zone = _cursor_zone(table, naive_zone)
    checked = [(position[name], name) for name in finisher.checked] if isinstance(finisher, PublishedRow) else None
    if checked is not None:
        build = _compiled_builder(
            tuple(public), tuple(key_public), tuple(label_at), cursor_at, deleted_at, tuple(checked), deleted_when
        )
        build(rows, op, source, cursor_zone, append_event, append_tuple)
        return events, tuples
    finish = finisher.apply
    for values in rows:
        row = dict(zip(public, values))  # stops at the last published column
        cursor = values[cursor_at] if cursor_at is not None else None
        if single_at is not None:
            append_tuple((cursor, values[single_at]))
        else:
            append_tuple((cursor, *[values[i] for i in label_at]))
        problems = finish(row)
        key = {single: row[single]} if single is not None else {k: row[k] for k in key_public}
        if cursor is None:
            ts = now_ms()
        elif cursor.__class__ is datetime and cursor.tzinfo is not None:
            ts = int(cursor.timestamp() * 1000)
        else:
            ts = to_epoch_ms(cursor, cursor_zone)
        if deleted_at is not None:
            deleted = values[deleted_at]
            if bool(deleted) if deleted_when == "true" else deleted is not None and deleted is not False:
                append_event(ChangeEvent(DELETE, key, row, None, ts, source, problems))
                continue
        append_event(ChangeEvent(op, key, None, row, ts, source, problems))
    return events, tuples


def _source_texts(row: dict[str, Any], values: Sequence[Any], checked: Sequence[tuple[int, str]]) -> list[str] | None:
    """The values a converter refused, replaced in ``row`` by their source text; their problems, in column order."""
    problems = None
    for at, name in checked:
        value = values[at]
        if value.__class__ is Unconvertible:
            row[name] = value.text
            problems = (problems or []) + [f"column {name}: {value.reason}"]
    return problems


@functools.lru_cache(maxsize=256)
def _compiled_builder(
    public: tuple[str, ...],
    key_public: tuple[str, ...],
    label_at: tuple[int, ...],
    cursor_at: int | None,
    deleted_at: int | None,
    checked: tuple[tuple[int, str], ...],
    deleted_when: str,
) -> Callable[..., None]:
    """``_events_from_tuples``' loop for PostgreSQL rows as straight-line code for this column layout (issue 18):
    the row dict is a display with the column names as constants (``BUILD_CONST_KEY_MAP``, a third cheaper than
    ``dict(zip(...))``), positions are literals, one ``or`` of class checks instead of a loop over the converted
    columns (the column-by-column path only when one matched).  Kept per layout (~0.1 ms to compile: once per
    chunk would be nothing for a snapshot, but a lot for small polls).  Column names enter the code as ``repr`` literals
    of plain ``str``s (what ``reflect_stream_table`` makes them), so any identifier is safe."""
    names: dict[str, Any] = {
        "CHECKED": checked,
        "UNCONVERTIBLE": Unconvertible,
        "SOURCE_TEXTS": _source_texts,
        "EVENT": ChangeEvent,
        "DELETE_OP": DELETE,
        "DATETIME": datetime,
        "now_ms": now_ms,
        "to_epoch_ms": to_epoch_ms,
    }
    row_items = ", ".join(f"{str(name)!r}: values[{i}]" for i, name in enumerate(public))
    lines = [
        "def build(rows, op, source, cursor_zone, append_event, append_tuple):",
        "    for values in rows:",
        "        row = {" + row_items + "}",
        f"        cursor = values[{cursor_at}]" if cursor_at is not None else "        cursor = None",
        "        append_tuple((cursor, " + "".join(f"values[{i}], " for i in label_at) + "))",
    ]
    if checked:
        test = " or ".join(f"values[{at}].__class__ is UNCONVERTIBLE" for at, _name in checked)
        lines += [f"        problems = SOURCE_TEXTS(row, values, CHECKED) if {test} else None"]
    else:
        lines += ["        problems = None"]
    lines += ["        key = {" + ", ".join(f"{str(k)!r}: row[{str(k)!r}]" for k in key_public) + "}"]
    if cursor_at is None:
        lines += ["        ts = now_ms()"]
    else:
        lines += [
            "        if cursor is None:",
            "            ts = now_ms()",
            "        elif cursor.__class__ is DATETIME and cursor.tzinfo is not None:",
            "            ts = int(cursor.timestamp() * 1000)",
            "        else:",
            "            ts = to_epoch_ms(cursor, cursor_zone)",
        ]
    if deleted_at is not None:
        lines += [f"        deleted = values[{deleted_at}]"]
        if deleted_when == "true":
            lines += ["        if bool(deleted):"]
        else:
            lines += ["        if deleted is not None and deleted is not False:"]
        lines += [
            "            append_event(EVENT(DELETE_OP, key, row, None, ts, source, problems))",
            "            continue",
        ]
    lines += ["        append_event(EVENT(op, key, None, row, ts, source, problems))"]
    exec(compile("\n".join(lines), "<liberation rows builder>", "exec"), names)  # noqa: S102 - our own text
    build: Callable[..., None] = names["build"]
    return build


def key_converter(table: ProjectedTable, zone: ZoneInfo) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Turns a row of ``key_set_query`` into the key the stream publishes for it, in place."""
    converter = row_finisher(table, zone, dict(zip(table.key_public, table.key_columns)))

    def convert(row: dict[str, Any]) -> dict[str, Any]:
        converter.apply(row)
        return row

    return convert
