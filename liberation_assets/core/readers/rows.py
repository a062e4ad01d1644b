"""Turn result rows into change events: the one place where per-row work happens for polling readers."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timezone
from typing import Any
from zoneinfo import ZoneInfo

from liberation_assets.core.contract.serialize import normalize_row, now_ms, to_epoch_ms
from liberation_assets.core.events import DELETE, ChangeEvent
from liberation_assets.core.readers.table import CURSOR_LABEL, DELETED_LABEL, ProjectedTable


def events_from_rows(
    rows: Iterable[Any],
    table: ProjectedTable,
    zone: ZoneInfo,
    op: str,
    source: dict[str, Any],
    *,
    deleted_when: str = "not_null",
) -> tuple[list[ChangeEvent], list[tuple[Any, ...]]]:
    """Events plus each row's ``(cursor, key...)`` tuple, in the source's own types."""
    events: list[ChangeEvent] = []
    tuples: list[tuple[Any, ...]] = []
    key_public = table.key_public
    has_cursor = table.cursor_column is not None
    soft = table.soft_delete_column is not None
    naive_zone = zone if zone is not None else timezone.utc
    for mapping in rows:
        row = dict(mapping)
        cursor = row.pop(CURSOR_LABEL, None) if has_cursor else None
        deleted = row.pop(DELETED_LABEL, None) if soft else None
        key_values = tuple(row[k] for k in key_public)
        tuples.append((cursor, *key_values))
        normalize_row(row, naive_zone)
        key = {k: row[k] for k in key_public}
        ts = to_epoch_ms(cursor, naive_zone) if cursor is not None else now_ms()
        is_deleted = soft and (deleted is True if deleted_when == "true" else deleted is not None and deleted is not False)
        if is_deleted:
            events.append(ChangeEvent(DELETE, key, row, None, ts, source))
        else:
            events.append(ChangeEvent(op, key, None, row, ts, source))
    return events, tuples
