"""Turn pgoutput tuples into a stream's rows: projection, key, and unchanged TOAST values.

A plan is built once per Relation message (so an added column shows up in the
events that follow it) and then applied to every change of that relation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from liberation_assets.core.errors import SchemaIncompatible, UnconvertibleValue
from liberation_assets.core.readers import pg_types
from liberation_assets.core.readers.pg_catalog import BUILTIN_ARRAYS, PgType
from liberation_assets.core.readers.pgoutput.messages import UNCHANGED, Relation, TupleData

Parser = Callable[[str], Any] | None
"""None: the text is published as it is (``pg_types.value_converter``)."""
RowOf = Callable[[TupleData], dict[str, Any]]
UpdateOf = Callable[[TupleData, TupleData], tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]]


@dataclass(frozen=True)
class RowPlan:
    """Which tuple positions a stream publishes, under which names, converted how (``pg_types``, as the SELECTs)."""

    relation: Relation
    columns: tuple[tuple[int, str, Parser], ...]
    """(position in the tuple, public name, parser) of each published column."""
    key: tuple[tuple[int, str, Parser], ...]
    shared: frozenset[int] = frozenset()
    """Tuple positions whose converted value the before- and after-image may share when their texts are equal
    (immutable values: not arrays)."""
    _row_of: RowOf = field(init=False, repr=False, compare=False)
    _update_of: UpdateOf | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        row_of, update_of = _compile(self.columns, self.key, self.shared)
        object.__setattr__(self, "_row_of", row_of)
        object.__setattr__(self, "_update_of", update_of)

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
        column_types = [resolve(column.type_oid) for column in relation.columns]
        parsers = [pg_types.value_converter(pg_type, zone) for pg_type in column_types]
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
        shared = frozenset(i for i, pg_type in enumerate(column_types) if pg_type.element is None)
        return cls(relation, columns, key, shared)

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
        try:
            return self._row_of(values)
        except UnconvertibleValue:
            if problems is None:
                raise
            return _convert(self.columns, values, problems)

    def update_rows(
        self, new: TupleData, old: TupleData
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]] | None:
        """(after, before, key of after, key of before) of an update with its whole old row, each value converted
        once where both images hold the same text; None when a value cannot be converted (the caller then builds
        the rows one by one, with the problems named) or the key is not among the published columns."""
        if self._update_of is None:
            return None
        try:
            return self._update_of(new, old)
        except UnconvertibleValue:
            return None

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


def _compile(
    columns: tuple[tuple[int, str, Parser], ...], key: tuple[tuple[int, str, Parser], ...], shared: frozenset[int]
) -> tuple[RowOf, UpdateOf | None]:
    """Straight-line functions for one plan, compiled once per Relation message (issue 18): the same values as
    ``_convert``, without its per-column loop; a failing converter raises and the caller takes ``_convert``.

    A parsed value is converted only when it is text (not NULL, not an unchanged TOAST value)."""
    namespace: dict[str, Any] = {}
    parsed = {index: parse for index, _, parse in [*columns, *key] if parse is not None}
    for index, parse in parsed.items():
        namespace[f"p{index}"] = parse
    positions = sorted({index for index, _, _ in [*columns, *key]})

    def converted(image: str, index: int) -> list[str]:
        if index not in parsed:
            return [f"    {image}{index} = {image[0]}[{index}]"]
        return [
            f"    {image}{index} = {image[0]}[{index}]",
            f"    if {image}{index}.__class__ is str:",
            f"        {image}{index} = p{index}({image}{index})",
        ]

    def display(image: str, items: tuple[tuple[int, str, Parser], ...]) -> str:
        return "{" + ", ".join(f"{public!r}: {image}{index}" for index, public, _ in items) + "}"

    row_lines = ["def row_of(n):"]
    for index in sorted({index for index, _, _ in columns}):
        row_lines += converted("n", index)
    row_lines.append(f"    return {display('n', columns)}")
    exec("\n".join(row_lines), namespace)  # noqa: S102 - code built here from positions and repr() of names
    row_of: RowOf = namespace["row_of"]

    public_index = {public: index for index, public, _ in columns}
    if any(public_index.get(public) != index for index, public, _ in key):
        return row_of, None  # the event's key is taken from the after-image by name: leave it to the slow path
    update_lines = ["def update_of(n, o):"]
    for index in positions:
        update_lines += converted("n", index)
        if index in parsed and index in shared:
            update_lines += [
                f"    if o[{index}] == n[{index}]:",
                f"        o{index} = n{index}",
                "    else:",
                *("    " + line for line in converted("o", index)),
            ]
        else:
            update_lines += converted("o", index)
    update_lines.append(
        f"    return {display('n', columns)}, {display('o', columns)}, {display('n', key)}, {display('o', key)}"
    )
    exec("\n".join(update_lines), namespace)  # noqa: S102
    return row_of, namespace["update_of"]


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
