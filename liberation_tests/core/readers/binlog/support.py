"""Builders of neutral log items for the pure binlog tests."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from pymysqlreplication.constants import FIELD_TYPE

from liberation_assets.core.readers.binlog.log import ColumnMeta, LogTable
from liberation_assets.core.readers.binlog.mapping import Hints, StreamMapper, StreamShape
from liberation_assets.core.readers.mysql_types import SourceType

UTC = ZoneInfo("UTC")

ID = ColumnMeta("id", FIELD_TYPE.LONGLONG)
NAME = ColumnMeta("name", FIELD_TYPE.VARCHAR, charset="utf8mb4", max_length=800)
COST = ColumnMeta("cost", FIELD_TYPE.NEWDECIMAL)
UPDATED = ColumnMeta("updated_at", FIELD_TYPE.DATETIME2)
DELETED = ColumnMeta("deleted_at", FIELD_TYPE.DATETIME2)
WIDGETS = LogTable("shop", "widgets", (ID, NAME, COST, UPDATED))
HINTS = {
    "id": SourceType("bigint"),
    "name": SourceType("varchar"),
    "cost": SourceType("decimal"),
    "updated_at": SourceType("datetime", "datetime(6)", 6),
    "deleted_at": SourceType("datetime", "datetime(6)", 6),
}


def shape(columns: dict[str, str] | None = None, **kw: Any) -> StreamShape:
    base = {
        "name": "widgets",
        "columns": columns if columns is not None else None,
        "key_columns": ("id",),
        "key_public": ("id",),
        "zone": UTC,
    }
    if columns is not None:
        base["key_public"] = tuple(p for p, s in columns.items() if s == "id") or ("id",)
    base.update(kw)
    return StreamShape(**base)


def mapper(
    columns: dict[str, str] | None = None, hints: Hints | None = None, **kw: Any
) -> tuple[StreamMapper, list[int]]:
    """A mapper plus a list that counts how often it reflected the table."""
    reflections: list[int] = []

    def reflect() -> Hints:
        reflections.append(1)
        return hints or HINTS

    return StreamMapper(shape(columns, **kw), "mariadb", reflect), reflections
