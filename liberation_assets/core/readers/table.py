"""A stream's view of its source table: reflected columns, the projection, the key and the cursor."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from liberation_assets.core.errors import SpecError
from liberation_assets.core.readers import pg_types
from liberation_assets.core.readers.mysql_types import SourceType, raw_column, source_types
from liberation_assets.core.readers.pg_catalog import PgType, column_types
from liberation_assets.core.readers.pg_sql_types import PublishedText
from liberation_assets.core.readers.pg_types import Converter
from liberation_assets.core.spec import StreamSpec

CURSOR_LABEL = "__liberation_cursor"
DELETED_LABEL = "__liberation_deleted"
KEY_LABEL = "__liberation_key_"
"""Prefix of a key column selected a second time in its source type, for the watermark (PostgreSQL)."""


@dataclass(frozen=True)
class ProjectedTable:
    """The reflected table with the public projection; identifiers are SQLAlchemy objects, never strings in SQL."""

    table: sa.Table
    columns: dict[str, str]
    """Public name → source column."""
    key_columns: list[str]
    """Source columns of the primary key, in order."""
    key_public: list[str]
    cursor_column: str | None
    soft_delete_column: str | None = None
    pg_types: dict[str, PgType] | None = None
    """PostgreSQL only: source column → its resolved type; those not read natively are selected as text and
    converted by ``pg_types`` (the same converters as the log reader)."""
    converters: dict[str, Converter | None] = field(default_factory=dict)
    """Source column → converter of its text, for the columns selected as text; None where the text is already
    the published value (numeric, json, uuid, ...: no Python call per value)."""
    source_types: dict[str, SourceType] | None = None
    """MariaDB/MySQL only: source column → its server type; the published columns are then read raw and converted
    by ``mysql_types`` (the same converters the binlog reader uses)."""

    @property
    def key_exprs(self) -> list[sa.ColumnElement[Any]]:
        return [self.table.c[name] for name in self.key_columns]

    @property
    def cursor_expr(self) -> sa.ColumnElement[Any]:
        assert self.cursor_column is not None
        return self.table.c[self.cursor_column]

    def published_expr(self, column: str) -> sa.ColumnElement[Any]:
        """The column as published: as is when psycopg reads it exactly, else its text through its converter."""
        if column not in self.converters:
            return self.table.c[column]
        convert = self.converters[column]
        if convert is None:
            return sa.type_coerce(output_text(self.table.c[column]), sa.types.NullType())
        return sa.type_coerce(output_text(self.table.c[column]), PublishedText(convert))

    @property
    def converted_public(self) -> list[str]:
        """Public names whose values went through a converter (and may come back ``Unconvertible``)."""
        return [public for public, col in self.columns.items() if self.converters.get(col) is not None]

    @property
    def tuple_labels(self) -> list[str]:
        """Result labels holding the key values in their source types (``select_list(with_cursor=True)``)."""
        return [
            f"{KEY_LABEL}{i}" if col in self.converters else public
            for i, (col, public) in enumerate(zip(self.key_columns, self.key_public))
        ]

    def select_list(self, *, with_cursor: bool) -> list[sa.ColumnElement[Any]]:
        """The published columns; ``with_cursor`` adds the cursor and the key in source types, for watermarks."""
        items: list[sa.ColumnElement[Any]]
        if self.source_types is not None:
            items = [raw_column(self.table.c[col]).label(public) for public, col in self.columns.items()]
        else:
            items = [self.published_expr(col).label(public) for public, col in self.columns.items()]
        if with_cursor and self.cursor_column:
            items.append(self.table.c[self.cursor_column].label(CURSOR_LABEL))
        if with_cursor:
            items.extend(
                self.table.c[col].label(f"{KEY_LABEL}{i}")
                for i, col in enumerate(self.key_columns)
                if col in self.converters
            )
        if self.soft_delete_column:
            items.append(self.table.c[self.soft_delete_column].label(DELETED_LABEL))
        return items

    @property
    def cursor_is_naive(self) -> bool:
        if self.source_types is not None and self.cursor_column in self.source_types:
            return self.source_types[self.cursor_column].data_type == "datetime"  # a TIMESTAMP is an instant
        column_type = self.cursor_expr.type
        return isinstance(column_type, sa.DateTime) and not getattr(column_type, "timezone", False)


def output_text(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """The column as its type's output function prints it: what pgoutput sends.

    Not ``CAST(col AS TEXT)``: some types have their own cast to text that prints differently (inet and
    cidr add the mask, xml keeps its declaration).  ``format('%s', …)`` calls the output function; NULL stays NULL.
    """
    return sa.case((column.is_(None), sa.null()), else_=sa.func.format("%s", column))


def reflect_stream_table(
    engine: Engine, stream: StreamSpec, stream_name: str = "", zone: ZoneInfo | str | None = None
) -> ProjectedTable:
    """Reflect the table and resolve the projection; unknown columns are spec errors.

    ``zone`` is the source's ``timezone``, in which naive PostgreSQL timestamps are read (default: the stream's, or UTC).
    """
    try:
        table = reflect_table(engine, stream.table, stream.db_schema)
    except sa.exc.NoSuchTableError:
        raise SpecError(
            f"stream {stream_name}: table {stream.db_schema + '.' if stream.db_schema else ''}{stream.table} does not exist"
        ) from None
    available = {str(name) for name in table.c.keys()}  # plain str: orjson refuses str subclasses as keys
    columns = stream.columns() or {str(name): str(name) for name in table.c.keys()}
    soft_delete = stream.soft_delete.column if stream.soft_delete else None
    for column in [
        *columns.values(),
        *stream.key,
        *([stream.cursor] if stream.cursor else []),
        *([soft_delete] if soft_delete else []),
    ]:
        if column not in available:
            raise SpecError(
                f"stream {stream_name}: column {column!r} is not in table {stream.table} (columns: {sorted(available)})"
            )
    by_source = {col: public for public, col in columns.items()}
    for key in stream.key:
        if key not in by_source:
            columns = {key: key, **columns}  # the key is always published
            by_source[key] = key
    mysql_types: dict[str, SourceType] | None = None
    if is_mysql(engine):
        with engine.connect() as connection:
            mysql_types = source_types(connection, stream.db_schema, stream.table)
    types: dict[str, PgType] | None = None
    converters: dict[str, Converter | None] = {}
    if engine.dialect.name == "postgresql":
        if not isinstance(zone, ZoneInfo):
            zone = ZoneInfo(zone or stream.timezone or "UTC")
        with engine.connect() as connection:
            types = column_types(connection, stream.db_schema, stream.table)
        # The log reader's choice per column (pg_types.value_converter): None where the text is the value.
        converters = {col: pg_types.value_converter(t, zone) for col, t in types.items() if not t.native}
    return ProjectedTable(
        table=table,
        columns=columns,
        key_columns=list(stream.key),
        key_public=[by_source[k] for k in stream.key],
        cursor_column=stream.cursor,
        soft_delete_column=soft_delete,
        pg_types=types,
        converters=converters,
        source_types=mysql_types,
    )


def is_mysql(engine: Engine) -> bool:
    return engine.dialect.name in ("mysql", "mariadb")


def _unescape_mysql_name(inspector: Any, table: sa.Table, column_info: dict[str, Any]) -> None:
    """SQLAlchemy's MySQL reflection keeps a backtick in a column name doubled, as SHOW CREATE TABLE quotes it."""
    column_info["name"] = column_info["name"].replace("``", "`")


def reflect_table(engine: Engine, name: str, schema: str | None) -> sa.Table:
    """The reflected table, with MySQL column names as the server spells them.

    Types SQLAlchemy does not know (PostgreSQL xid, pg_lsn, extension types; MariaDB INET6, UUID, GEOMETRY) are
    read from the catalog by ``pg_catalog`` and ``mysql_types``: its warning about them is noise.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Did not recognize type", sa.exc.SAWarning)
        if not is_mysql(engine):
            return sa.Table(name, sa.MetaData(), schema=schema, autoload_with=engine)
        return sa.Table(
            name,
            sa.MetaData(),
            schema=schema,
            autoload_with=engine,
            listeners=[("column_reflect", _unescape_mysql_name)],
        )
