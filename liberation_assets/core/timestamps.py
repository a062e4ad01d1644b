"""Event times and datetimes as every layer needs them: epoch milliseconds, UTC.

Below readers and contract alike (``readers.rows`` and ``contract.serialize`` both use it), so neither
imports the other for a clock.
"""

from __future__ import annotations

import time
from datetime import date, datetime, timezone
from datetime import time as time_of_day
from typing import Any

from liberation_assets.core.errors import SerializationError


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def to_epoch_ms(value: datetime | date | int | float | None, zone: timezone | Any = timezone.utc) -> int:
    """Event time in epoch ms; naive datetimes are read in the given zone."""
    if value is None:
        return now_ms()
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=zone)
        return int(value.timestamp() * 1000)
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=zone).timestamp() * 1000)
    if isinstance(value, (int, float)):
        return int(value)
    raise SerializationError(f"cannot use {value!r} as an event time")


_UTC = timezone.utc


def normalize_row(row: dict[str, Any], zone: Any) -> dict[str, Any]:
    """Give naive datetimes the configured zone and convert aware ones to UTC, in place."""
    for name, value in row.items():
        if isinstance(value, datetime):
            if value.tzinfo is _UTC:
                continue  # already UTC, as drivers return timestamptz on a UTC session: the common case
            if value.tzinfo is None:
                value = value.replace(tzinfo=zone)
            row[name] = value.astimezone(timezone.utc)
        elif isinstance(value, time_of_day) and value.tzinfo is not None:
            row[name] = value.replace(tzinfo=None)
    return row
