"""A stream's view of its source table: reflected columns, the projection, the key and the cursor."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from liberation_assets.core.errors import SpecError
from liberation_assets.core.readers.mysql_types import SourceType, raw_column, source_types
from liberation_assets.core.spec import StreamSpec

CURSOR_LABEL = "__liberation_cursor"
DELETED_LABEL = "__liberation_deleted"


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
    source_types: dict[str, SourceType] | None = None
    """MariaDB/MySQL: source column → its server type; the published columns are then read raw and converted by
    ``mysql_types`` (the same converters the binlog reader uses)."""

    @property
    def key_exprs(self) -> list[sa.ColumnElement[Any]]:
        return [self.table.c[name] for name in self.key_columns]

    @property
    def cursor_expr(self) -> sa.ColumnElement[Any]:
        assert self.cursor_column is not None
        return self.table.c[self.cursor_column]

    def select_list(self, *, with_cursor: bool) -> list[sa.ColumnElement[Any]]:
        items: list[sa.ColumnElement[Any]]
        if self.source_types is not None:
            items = [raw_column(self.table.c[col]).label(public) for public, col in self.columns.items()]
        else:
            items = [self.table.c[col].label(public) for public, col in self.columns.items()]
        if with_cursor and self.cursor_column:
            items.append(self.table.c[self.cursor_column].label(CURSOR_LABEL))
        if self.soft_delete_column:
            items.append(self.table.c[self.soft_delete_column].label(DELETED_LABEL))
        return items

    @property
    def cursor_is_naive(self) -> bool:
        if self.source_types is not None and self.cursor_column in self.source_types:
            return self.source_types[self.cursor_column].data_type == "datetime"  # a TIMESTAMP is an instant
        column_type = self.cursor_expr.type
        return isinstance(column_type, sa.DateTime) and not getattr(column_type, "timezone", False)


def reflect_stream_table(engine: Engine, stream: StreamSpec, stream_name: str = "") -> ProjectedTable:
    """Reflect the table and resolve the projection; unknown columns are spec errors."""
    try:
        table = reflect_table(engine, stream.table, stream.db_schema)
    except sa.exc.NoSuchTableError:
        raise SpecError(f"stream {stream_name}: table {stream.db_schema + '.' if stream.db_schema else ''}{stream.table} does not exist") from None
    types = None
    if is_mysql(engine):
        with engine.connect() as connection:
            types = source_types(connection, stream.db_schema, stream.table)
    available = {str(name) for name in table.c.keys()}  # plain str: orjson refuses str subclasses as keys
    columns = stream.columns() or {str(name): str(name) for name in table.c.keys()}
    soft_delete = stream.soft_delete.column if stream.soft_delete else None
    for column in [*columns.values(), *stream.key, *([stream.cursor] if stream.cursor else []), *([soft_delete] if soft_delete else [])]:
        if column not in available:
            raise SpecError(f"stream {stream_name}: column {column!r} is not in table {stream.table} (columns: {sorted(available)})")
    by_source = {col: public for public, col in columns.items()}
    for key in stream.key:
        if key not in by_source:
            columns = {key: key, **columns}  # the key is always published
            by_source[key] = key
    return ProjectedTable(
        table=table,
        columns=columns,
        key_columns=list(stream.key),
        key_public=[by_source[k] for k in stream.key],
        cursor_column=stream.cursor,
        soft_delete_column=soft_delete,
        source_types=types,
    )


def is_mysql(engine: Engine) -> bool:
    return engine.dialect.name in ("mysql", "mariadb")


def _unescape_mysql_name(inspector: Any, table: sa.Table, column_info: dict[str, Any]) -> None:
    """SQLAlchemy's MySQL reflection keeps a backtick in a column name doubled, as SHOW CREATE TABLE quotes it."""
    column_info["name"] = column_info["name"].replace("``", "`")


def reflect_table(engine: Engine, name: str, schema: str | None) -> sa.Table:
    """The reflected table, with MySQL column names as the server spells them."""
    if not is_mysql(engine):
        return sa.Table(name, sa.MetaData(), schema=schema, autoload_with=engine)
    with warnings.catch_warnings():
        # INET6, UUID, GEOMETRY...: SQLAlchemy does not know them, the converters do (``mysql_types``).
        warnings.filterwarnings("ignore", "Did not recognize type", sa.exc.SAWarning)
        return sa.Table(name, sa.MetaData(), schema=schema, autoload_with=engine,
                        listeners=[("column_reflect", _unescape_mysql_name)])
