"""Turn pgoutput tuples into a stream's rows: projection, key, and unchanged TOAST values.

A plan is built once per Relation message (so an added column shows up in the
events that follow it) and then applied to every change of that relation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from liberation_assets.core.errors import SchemaIncompatible
from liberation_assets.core.readers.pgoutput.messages import UNCHANGED, Relation, TupleData
from liberation_assets.core.readers.pgoutput.values import Parser, parser_for


@dataclass(frozen=True)
class RowPlan:
    """Which tuple positions a stream publishes, under which names, parsed how."""

    relation: Relation
    columns: tuple[tuple[int, str, Parser], ...]
    """(position in the tuple, public name, parser) of each published column."""
    key: tuple[tuple[int, str, Parser], ...]

    @classmethod
    def build(cls, relation: Relation, projection: dict[str, str] | None, key_columns: list[str],
              key_public: list[str], stream_name: str = "") -> "RowPlan":
        """``projection`` maps public names to source columns; None publishes every column the relation has."""
        position = {column.name: i for i, column in enumerate(relation.columns)}
        parsers = [parser_for(column.type_oid) for column in relation.columns]
        wanted = projection if projection is not None else {c.name: c.name for c in relation.columns}
        missing = [source for source in [*wanted.values(), *key_columns] if source not in position]
        if missing:
            raise SchemaIncompatible(
                f"stream {stream_name}: column(s) {missing} of the projection are no longer in "
                f"{relation.namespace}.{relation.name}; the published schema would break")
        columns = tuple((position[source], public, parsers[position[source]]) for public, source in wanted.items())
        key = tuple((position[source], public, parsers[position[source]]) for source, public in zip(key_columns, key_public))
        return cls(relation, columns, key)

    @property
    def shape(self) -> tuple[tuple[str, int, int], ...]:
        """(public name, type oid, typmod) of each published column: what a consumer's schema depends on."""
        columns = self.relation.columns
        return tuple((name, columns[index].type_oid, columns[index].typmod) for index, name, _ in self.columns)

    def row(self, values: TupleData) -> dict[str, Any]:
        """The published columns; an unchanged TOAST value stays ``UNCHANGED`` for the caller to fill."""
        row: dict[str, Any] = {}
        for index, name, parse in self.columns:
            value = values[index]
            row[name] = parse(value) if value.__class__ is str else value
        return row

    def key_of(self, values: TupleData) -> dict[str, Any]:
        key: dict[str, Any] = {}
        for index, name, parse in self.key:
            value = values[index]
            key[name] = parse(value) if value.__class__ is str else value
        return key


def fill_unchanged(new: TupleData, old: TupleData | None) -> TupleData:
    """Take each unchanged TOAST value from the old row image (sent whole under REPLICA IDENTITY FULL)."""
    if old is None or UNCHANGED not in new:
        return new
    return tuple(o if n is UNCHANGED else n for n, o in zip(new, old))


def unchanged_columns(row: dict[str, Any]) -> list[str]:
    return [name for name, value in row.items() if value is UNCHANGED]
