"""Pure builders of the polling SQL: unit-tested without a database.

The watermark becomes SQL explicitly: a strict row comparison on
``(cursor, key...)`` so rows that share a timestamp are never skipped, an
upper bound strictly below the late-commit ceiling, and ``ORDER BY`` on the
same tuple.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from liberation_assets.core.readers.mysql_types import raw_column
from liberation_assets.core.readers.table import ProjectedTable


def snapshot_chunk_query(
    table: ProjectedTable,
    *,
    after_key: tuple[Any, ...] | None,
    limit: int,
    key_range: tuple[Any, Any] | None = None,
) -> sa.Select[Any]:
    """One key-ordered chunk: ``WHERE key > :after_key ORDER BY key LIMIT :limit``."""
    query = sa.select(*table.select_list(with_cursor=True))
    keys = table.key_exprs
    if after_key is not None:
        query = query.where(sa.tuple_(*keys) > sa.tuple_(*[sa.literal(v, k.type) for v, k in zip(after_key, keys)]))
    if key_range is not None:
        low, high = key_range
        if low is not None:
            query = query.where(keys[0] >= low)
        if high is not None:
            query = query.where(keys[0] < high)
    return query.order_by(*keys).limit(limit)


def incremental_query(
    table: ProjectedTable,
    *,
    after: tuple[Any, ...] | None,
    since: Any | None,
    ceiling: Any,
    limit: int,
) -> sa.Select[Any]:
    """Rows past the cursor and below the ceiling, in cursor order.

    ``after`` is (cursor value, key values...) of the last row published: rows
    strictly after it are read.  ``since`` is an inclusive lower bound used
    before any row was published (the snapshot's start) and for re-reads.
    """
    cursor = table.cursor_expr
    order = [cursor, *table.key_exprs]
    query = sa.select(*table.select_list(with_cursor=True)).where(cursor < sa.literal(ceiling, cursor.type))
    if after is not None:
        query = query.where(sa.tuple_(*order) > sa.tuple_(*[sa.literal(v, c.type) for v, c in zip(after, order)]))
    if since is not None:
        query = query.where(cursor >= sa.literal(since, cursor.type))
    return query.order_by(*order).limit(limit)


def key_set_query(table: ProjectedTable) -> sa.Select[Any]:
    """All keys of the source, for reconciliation of hard deletes: PostgreSQL's in their published form,
    MariaDB's raw, converted by ``readers.rows.key_converter``."""
    if table.source_types is not None:
        return sa.select(*[raw_column(c).label(p) for c, p in zip(table.key_exprs, table.key_public)]).order_by(
            *table.key_exprs
        )
    published = [table.published_expr(c).label(p) for c, p in zip(table.key_columns, table.key_public)]
    return sa.select(*published).order_by(*table.key_exprs)
