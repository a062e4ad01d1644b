"""Turn pgoutput tuples into a stream's rows: projection, key, and unchanged TOAST values.

A plan is built once per Relation message (so an added column shows up in the
events that follow it) and then applied to every change of that relation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from liberation_assets.core.errors import SchemaIncompatible, UnconvertibleValue
from liberation_assets.core.readers import pg_types
from liberation_assets.core.readers.pg_catalog import BUILTIN_ARRAYS, PgType
from liberation_assets.core.readers.pgoutput.messages import UNCHANGED, Relation, TupleData

Parser = Callable[[str], Any] | None
"""None: the text is published as it is (``pg_types.value_converter``)."""


@dataclass(frozen=True)
class RowPlan:
    """Which tuple positions a stream publishes, under which names, converted how (``pg_types``, as the SELECTs)."""

    relation: Relation
    columns: tuple[tuple[int, str, Parser], ...]
    """(position in the tuple, public name, parser) of each published column."""
    key: tuple[tuple[int, str, Parser], ...]

    @classmethod
    def build(
        cls,
        relation: Relation,
        projection: dict[str, str] | None,
        key_columns: list[str],
        key_public: list[str],
        stream_name: str = "",
        *,
        types: Callable[[int], PgType] | None = None,
        zone: ZoneInfo | None = None,
    ) -> "RowPlan":
        """``projection`` maps public names to source columns; None publishes every column the relation has.

        ``types`` resolves a type OID (a domain's to its base type); without it only built-in OIDs are known.
        ``zone`` is the source's ``timezone``, for naive timestamps.
        """
        position = {column.name: i for i, column in enumerate(relation.columns)}
        resolve = types if types is not None else builtin_type
        parsers = [pg_types.value_converter(resolve(column.type_oid), zone) for column in relation.columns]
        wanted = projection if projection is not None else {c.name: c.name for c in relation.columns}
        missing = [source for source in [*wanted.values(), *key_columns] if source not in position]
        if missing:
            raise SchemaIncompatible(
                f"stream {stream_name}: column(s) {missing} of the projection are no longer in "
                f"{relation.namespace}.{relation.name}; the published schema would break"
            )
        columns = tuple((position[source], public, parsers[position[source]]) for public, source in wanted.items())
        key = tuple(
            (position[source], public, parsers[position[source]]) for source, public in zip(key_columns, key_public)
        )
        return cls(relation, columns, key)

    @property
    def shape(self) -> tuple[tuple[str, int, int], ...]:
        """(public name, type oid, typmod) of each published column: what a consumer's schema depends on."""
        columns = self.relation.columns
        return tuple((name, columns[index].type_oid, columns[index].typmod) for index, name, _ in self.columns)

    def row(self, values: TupleData, problems: list[str] | None = None) -> dict[str, Any]:
        """The published columns; an unchanged TOAST value stays ``UNCHANGED`` for the caller to fill.

        A value that cannot be converted keeps its source text and is named in ``problems`` (the row is then
        quarantined); without ``problems`` it raises ``UnconvertibleValue``.
        """
        return _convert(self.columns, values, problems)

    def key_of(self, values: TupleData, problems: list[str] | None = None) -> dict[str, Any]:
        return _convert(self.key, values, problems)

    def key_text(self, values: TupleData) -> tuple[Any, ...]:
        """The key's source text, to find the row again with a cast (``pg_sql_types.SqlTypeName``)."""
        return tuple(values[index] for index, _, _ in self.key)


def _convert(
    columns: tuple[tuple[int, str, Parser], ...], values: TupleData, problems: list[str] | None
) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for index, name, parse in columns:
        value = values[index]
        if parse is not None and value.__class__ is str:
            try:
                value = parse(value)
            except UnconvertibleValue as exc:
                if problems is None:
                    raise
                problems.append(f"column {name}: {exc.reason}")
        row[name] = value
    return row


def builtin_type(oid: int) -> PgType:
    """A type OID as it is, for plans built without the catalog (arrays of built-in types are known)."""
    element = BUILTIN_ARRAYS.get(oid)
    return PgType(oid, PgType(element)) if element is not None else PgType(oid)


def fill_unchanged(new: TupleData, old: TupleData | None) -> TupleData:
    """Take each unchanged TOAST value from the old row image (sent whole under REPLICA IDENTITY FULL)."""
    if old is None or UNCHANGED not in new:
        return new
    return tuple(o if n is UNCHANGED else n for n, o in zip(new, old))


def unchanged_columns(row: dict[str, Any]) -> list[str]:
    return [name for name, value in row.items() if value is UNCHANGED]
