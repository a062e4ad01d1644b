"""Serialize change events into Debezium-compatible JSON envelopes.

JSON representation of values (documented in docs/architecture.md): the
readers hand over most values already in their JSON form (PostgreSQL values go
through ``readers.pg_types``); for Python values, integers and floats are
numbers, Decimal is a string that keeps its exact digits, timestamps are
ISO 8601 in UTC, UUIDs are strings and bytes are base64.  orjson does the work,
so serialization costs microseconds.
"""

from __future__ import annotations

import base64
from datetime import date, datetime, timedelta
from datetime import time as time_of_day
from decimal import Decimal
from typing import Any

import orjson

from liberation_assets.core.errors import SerializationError
from liberation_assets.core.events import ChangeEvent
from liberation_assets.core.timestamps import normalize_row, now_ms, to_epoch_ms

__all__ = [
    "CONNECTOR",
    "SNAPSHOT_FALSE",
    "dumps",
    "envelope_bytes",
    "key_bytes",
    "normalize_row",
    "now_ms",
    "revive",
    "revive_column",
    "to_epoch_ms",
]

CONNECTOR = "liberation"
SNAPSHOT_FALSE = "false"


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise SerializationError(f"non-finite decimal {value!r} has no JSON form")
        return format(value, "f")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise SerializationError(f"cannot serialize {type(value).__name__} value {value!r}")


_OPTIONS = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z
"""Readers give datetimes a zone (naive is a safety net); UTC is written with a literal ``Z``, as Debezium's
ZonedTimestamp and Flink's ISO-8601 TIMESTAMP_LTZ parser expect."""


def dumps(value: Any) -> bytes:
    """orjson with liberation's value rules."""
    try:
        return orjson.dumps(value, default=_default, option=_OPTIONS)
    except orjson.JSONEncodeError as exc:
        raise SerializationError(str(exc)) from None


def key_bytes(key: dict[str, Any]) -> bytes:
    return dumps(key)


def envelope_bytes(event: ChangeEvent, source_base: dict[str, Any], processed_ms: int) -> bytes:
    """The Debezium envelope: before, after, op, source (with ts_ms), ts_ms."""
    source = (
        {**source_base, "ts_ms": event.ts_ms, **event.source} if event.source else {**source_base, "ts_ms": event.ts_ms}
    )
    if "snapshot" not in source:
        source["snapshot"] = SNAPSHOT_FALSE
    return dumps(
        {"before": event.before, "after": event.after, "op": event.op, "source": source, "ts_ms": processed_ms}
    )


def _revive_float(text: str) -> float | Decimal:
    """A float's NaN/Infinity, or a DECIMAL/numeric column's exact text under a ``float`` contract (a Decimal is a float there)."""
    if text in ("NaN", "Infinity", "-Infinity"):
        return float(text)
    return Decimal(text)


_REVIVERS: dict[str, Any] = {
    "decimal": Decimal,
    "float": _revive_float,
    "datetime": datetime.fromisoformat,
    "date": date.fromisoformat,
    "time": time_of_day.fromisoformat,
    "bytes": base64.b64decode,
}


def revive(value: Any, kind: str) -> Any:
    """The Python value a JSON value stood for, by the column's kind (for re-validating quarantined rows).

    Values that do not parse stay as they are, so they fail their type check again.
    """
    reviver = _REVIVERS.get(kind)
    if reviver is None or not isinstance(value, str):
        return value
    try:
        return reviver(value)
    except (ValueError, ArithmeticError):
        return value


def revive_column(values: list[Any], kind: str) -> list[Any]:
    """``revive`` over one column's values: the reviver looked up once, one comprehension when every text
    parses, value by value (``revive``'s rule: a text that does not parse stays as it is) when one does not."""
    reviver = _REVIVERS.get(kind)
    if reviver is None:
        return values
    try:
        return [reviver(v) if v.__class__ is str else v for v in values]
    except (ValueError, ArithmeticError):
        return [revive(v, kind) if v.__class__ is str else v for v in values]
