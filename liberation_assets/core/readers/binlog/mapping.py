"""Rows of one table's log events → one stream's change events, through its projection.

A plan is built once per table layout: which log column feeds which public
name, and which converter (the column type's, shared with the SELECT readers)
its values take.  Applying it is straight-line code compiled per layout (over
names for dict images, over positions for the binlog reader's sequences); a
value that cannot be carried is named in the event's ``problems``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from pymysqlreplication.constants import FIELD_TYPE

from liberation_assets.core.errors import SchemaIncompatible, UnconvertibleValue
from liberation_assets.core.events import CREATE, DELETE, UPDATE, ChangeEvent
from liberation_assets.core.readers import mysql_types
from liberation_assets.core.readers.binlog.log import LogTable
from liberation_assets.core.readers.binlog.values import Converter, log_converter
from liberation_assets.core.readers.mysql_types import SourceType, source_text
from liberation_assets.core.readers.table import ProjectedTable
from liberation_assets.core.spec import StreamSpec

Hints = Mapping[str, SourceType]
"""Source column → its server type: picks the column's shared converter (``readers.mysql_types``)."""
Plan = list[tuple[str, str, Converter | None]]


@dataclass(frozen=True)
class StreamShape:
    """What one stream publishes from its table."""

    name: str
    columns: dict[str, str] | None
    """Public name → source column; None publishes every column the log carries, new ones included."""
    key_columns: tuple[str, ...]
    key_public: tuple[str, ...]
    zone: ZoneInfo
    soft_delete_column: str | None = None
    deleted_when: str = "not_null"

    @classmethod
    def of(cls, name: str, stream: StreamSpec, table: ProjectedTable, zone: ZoneInfo) -> "StreamShape":
        return cls(
            name=name,
            columns=None if stream.projection is None else dict(table.columns),
            key_columns=tuple(table.key_columns),
            key_public=tuple(table.key_public),
            zone=zone,
            soft_delete_column=table.soft_delete_column,
            deleted_when=stream.soft_delete.deleted_when if stream.soft_delete else "not_null",
        )


def build_plan(shape: StreamShape, layout: LogTable, hints: Hints, flavor: str) -> Plan:
    """(public name, source column, converter) for every published column of this layout."""
    by_name = {column.name: column for column in layout.columns}
    if shape.columns is None:
        wanted = {name: name for name in layout.names}
    else:
        wanted = dict(shape.columns)
        for key in shape.key_columns:
            if key not in wanted.values():
                wanted = {key: key, **wanted}
    if shape.soft_delete_column:
        wanted.setdefault(f"\0{shape.soft_delete_column}", shape.soft_delete_column)
    missing = sorted(source for source in wanted.values() if source not in by_name)
    if missing:
        raise SchemaIncompatible(
            f"stream {shape.name}: column(s) {', '.join(missing)} of {layout.schema}.{layout.table} are gone from the "
            f"binlog's table map (dropped or renamed?); columns now: {', '.join(layout.names)}. "
            "Change the stream's projection, then re-snapshot."
        )
    return [
        (public, source, log_converter(by_name[source], hints.get(source), flavor, shape.zone))
        for public, source in wanted.items()
    ]


def compile_plan(plan: Plan) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The plan as straight-line code: the published row of one image, raising ``UnconvertibleValue`` as a
    converter does (about half the cost of a comprehension over the plan).  Names are values, never source text."""
    namespace: dict[str, Any] = {}
    body = []
    for index, (public, source, convert) in enumerate(plan):
        namespace[f"s{index}"], namespace[f"p{index}"] = source, public
        body.append(f"c{index} = values[s{index}]")
        if convert is not None:
            namespace[f"f{index}"] = convert
            body.append(f"if c{index} is not None:")
            body.append(f"    c{index} = f{index}(c{index})")
    body.append("return {" + ", ".join(f"p{i}: c{i}" for i in range(len(plan))) + "}")
    source_text = "def image(values):\n" + "".join(f"    {line}\n" for line in body)
    exec(compile(source_text, f"<binlog stream row of {len(plan)} columns>", "exec"), namespace)  # noqa: S102
    image: Callable[[dict[str, Any]], dict[str, Any]] = namespace["image"]
    return image


_READ_AS_PUBLISHED: dict[int, Converter] = {
    FIELD_TYPE.TIMESTAMP2: mysql_types._timestamp,
    FIELD_TYPE.NEWDECIMAL: mysql_types._decimal,
}
"""Column type → the converter that returns the binlog reader's value as it is (``rows``/``images``: TIMESTAMP2 as
an aware UTC datetime or the zero TIMESTAMP's text, DECIMAL as its exact text), so positional images skip it."""

Positional = Callable[[Sequence[Any]], tuple[dict[str, Any], dict[str, Any]]]
"""A positional image (values in the layout's column order) → (published row, key)."""


def compile_positional(plan: Plan, layout: LogTable, key_public: Sequence[str]) -> Positional | None:
    """The plan over positional images as straight-line code giving the published row and its key in one call
    (no dict per image before the row, no lookup by name); raises ``UnconvertibleValue`` as a converter does.
    None when a key column is not among the published ones."""
    position = {column.name: index for index, column in enumerate(layout.columns)}
    kinds = {column.name: column.type for column in layout.columns}
    published = [public for public, _, _ in plan]
    if any(key not in published for key in key_public):
        return None
    namespace: dict[str, Any] = {}
    body = []
    for index, (public, source, convert) in enumerate(plan):
        namespace[f"p{index}"] = public
        body.append(f"c{index} = values[{position[source]}]")  # an int: the only data in the source text
        if convert is not None and _READ_AS_PUBLISHED.get(kinds[source]) is not convert:
            namespace[f"f{index}"] = convert
            body.append(f"if c{index} is not None:")
            body.append(f"    c{index} = f{index}(c{index})")
    row = "{" + ", ".join(f"p{i}: c{i}" for i in range(len(plan))) + "}"
    key = "{" + ", ".join(f"p{published.index(k)}: c{published.index(k)}" for k in key_public) + "}"
    body.append(f"return {row}, {key}")
    source_text = "def image(values):\n" + "".join(f"    {line}\n" for line in body)
    exec(compile(source_text, f"<binlog positional row of {len(plan)} columns>", "exec"), namespace)  # noqa: S102
    image: Positional = namespace["image"]
    return image


class StreamMapper:
    """Turns one table's rows into one stream's events; plans are cached per layout."""

    def __init__(self, shape: StreamShape, flavor: str, reflect: Callable[[], Hints]):
        self.shape = shape
        self.flavor = flavor
        self._reflect = reflect
        self._hints: Hints | None = None
        self._plans: dict[int, tuple[LogTable, Plan, Callable[[dict[str, Any]], dict[str, Any]]]] = {}
        self._positional: dict[int, tuple[LogTable, Positional | None]] = {}
        self._deleted_label = f"\0{shape.soft_delete_column}" if shape.soft_delete_column else None

    def forget_layouts(self) -> None:
        """After DDL: reflect the table again when the next rows arrive."""
        self._plans.clear()
        self._positional.clear()
        self._hints = None

    def plan(self, layout: LogTable) -> Plan:
        return self._planned(layout)[0]

    def _planned(self, layout: LogTable) -> tuple[Plan, Callable[[dict[str, Any]], dict[str, Any]]]:
        """The layout's plan and its compiled form (``compile_plan``), built once per layout."""
        cached = self._plans.get(id(layout))
        if cached is not None and cached[0] is layout:
            return cached[1], cached[2]
        if self._hints is None:
            self._hints = self._reflect()
        plan = build_plan(self.shape, layout, self._hints, self.flavor)
        compiled = compile_plan(plan)
        self._plans[id(layout)] = (layout, plan, compiled)
        return plan, compiled

    def image(
        self,
        plan: Plan,
        values: dict[str, Any],
        problems: list[str],
        compiled: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """The published row; a value that cannot be converted keeps its source text and is named in ``problems``.
        ``compiled`` is the plan's ``compile_plan``, when the caller has it."""
        try:
            if compiled is not None:
                return compiled(values)
            return {
                public: (value if (value := values[source]) is None or convert is None else convert(value))
                for public, source, convert in plan
            }
        except UnconvertibleValue:
            pass
        row: dict[str, Any] = {}
        for public, source, convert in plan:
            value = values[source]
            try:
                row[public] = value if value is None or convert is None else convert(value)
            except UnconvertibleValue as exc:
                row[public] = source_text(value)
                problems.append(f"column {public}: {exc.reason}")
        return row

    def _is_deleted(self, row: dict[str, Any]) -> bool:
        if self._deleted_label is None:
            return False
        flag = row.pop(self._deleted_label, None)
        if self.shape.deleted_when == "true":
            return flag is True
        return flag is not None and flag is not False

    def _positional_plan(self, layout: LogTable, plan: Plan) -> Positional | None:
        """The layout's ``compile_positional``, built once per layout; None with a soft-delete column."""
        cached = self._positional.get(id(layout))
        if cached is not None and cached[0] is layout:
            return cached[1]
        fast = None if self._deleted_label is not None else compile_positional(plan, layout, self.shape.key_public)
        self._positional[id(layout)] = (layout, fast)
        return fast

    def events(
        self,
        op: str,
        layout: LogTable,
        rows: list[Any],
        ts_ms: int,
        source: dict[str, Any],
        positional: bool = False,
    ) -> list[ChangeEvent]:
        """Events for one rows event; ``source`` gets the row's index in the event as ``row``.  ``positional``
        images hold their values in the layout's column order (``log.Rows``), the others are dicts by name."""
        plan, compiled = self._planned(layout)
        out: list[ChangeEvent] = []
        append = out.append
        if not positional:
            for index, values in enumerate(rows):
                self._row_events(op, plan, compiled, values, ts_ms, {**source, "row": index}, append)
            return out
        names = layout.names
        fast = self._positional_plan(layout, plan)
        for index, values in enumerate(rows):
            where = {**source, "row": index}
            if fast is not None:
                try:
                    if op == UPDATE:
                        before, old_key = fast(values[0])
                        after, new_key = fast(values[1])
                        if old_key != new_key:
                            # Debezium's convention: a key change is a delete of the old key and a create of the new.
                            append(ChangeEvent(DELETE, old_key, before, None, ts_ms, where, None))
                            append(ChangeEvent(CREATE, new_key, None, after, ts_ms, where, None))
                        else:
                            append(ChangeEvent(UPDATE, new_key, before, after, ts_ms, where, None))
                    elif op == DELETE:
                        row, key = fast(values)
                        append(ChangeEvent(DELETE, key, row, None, ts_ms, where, None))
                    else:
                        row, key = fast(values)
                        append(ChangeEvent(CREATE, key, None, row, ts_ms, where, None))
                    continue
                except UnconvertibleValue:
                    pass  # this row takes the column-by-column path, which names the value in its problems
            if op == UPDATE:
                by_name: Any = (dict(zip(names, values[0])), dict(zip(names, values[1])))
            else:
                by_name = dict(zip(names, values))
            self._row_events(op, plan, compiled, by_name, ts_ms, where, append)
        return out

    def _row_events(
        self,
        op: str,
        plan: Plan,
        compiled: Callable[[dict[str, Any]], dict[str, Any]] | None,
        values: Any,
        ts_ms: int,
        where: dict[str, Any],
        append: Callable[[ChangeEvent], None],
    ) -> None:
        """The events of one row given as dicts by name (an image, or a (before, after) pair of them)."""
        key_public = self.shape.key_public
        if op == UPDATE:
            old_problems: list[str] = []
            new_problems: list[str] = []
            before = self.image(plan, values[0], old_problems, compiled)
            after = self.image(plan, values[1], new_problems, compiled)
            was_deleted, is_deleted = self._is_deleted(before), self._is_deleted(after)
            old_key = {k: before[k] for k in key_public}
            new_key = {k: after[k] for k in key_public}
            if is_deleted:
                if not was_deleted:
                    append(ChangeEvent(DELETE, old_key, before, None, ts_ms, where, old_problems or None))
            elif was_deleted:
                append(ChangeEvent(CREATE, new_key, None, after, ts_ms, where, new_problems or None))
            elif old_key != new_key:
                # Debezium's convention: a key change is a delete of the old key and a create of the new one.
                append(ChangeEvent(DELETE, old_key, before, None, ts_ms, where, old_problems or None))
                append(ChangeEvent(CREATE, new_key, None, after, ts_ms, where, new_problems or None))
            else:
                append(ChangeEvent(UPDATE, new_key, before, after, ts_ms, where, new_problems or None))
            return
        problems: list[str] = []
        row = self.image(plan, values, problems, compiled)
        deleted = self._is_deleted(row)
        key = {k: row[k] for k in key_public}
        if op == DELETE:
            if not deleted:
                append(ChangeEvent(DELETE, key, row, None, ts_ms, where, problems or None))
        elif deleted:
            return  # inserted already soft-deleted: consumers never saw it
        else:
            append(ChangeEvent(CREATE, key, None, row, ts_ms, where, problems or None))
