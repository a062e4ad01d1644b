"""Encode cursor and key values into JSON positions and back, without losing their type."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any


def _timedelta(micros: int) -> timedelta:
    return timedelta(microseconds=micros)


_TAGS: dict[str, Callable[[Any], Any]] = {
    "datetime": datetime.fromisoformat,
    "date": date.fromisoformat,
    "time": time.fromisoformat,
    "decimal": Decimal,
    "uuid": uuid.UUID,
    "timedelta": _timedelta,
    "bytes": base64.b64decode,
}


def encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return ["datetime", value.isoformat()]
    if isinstance(value, date):
        return ["date", value.isoformat()]
    if isinstance(value, time):
        return ["time", value.isoformat()]
    if isinstance(value, timedelta):  # a MySQL TIME key, as PyMySQL reads it
        return ["timedelta", (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds]
    if isinstance(value, (bytes, bytearray)):  # a BINARY key
        return ["bytes", base64.b64encode(bytes(value)).decode("ascii")]
    if isinstance(value, Decimal):
        return ["decimal", str(value)]
    if isinstance(value, uuid.UUID):
        return ["uuid", str(value)]
    if isinstance(value, list):  # a list would be ambiguous with a tag
        return ["list", [encode(v) for v in value]]
    return value


def decode(value: Any) -> Any:
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
        tag, raw = value
        if tag == "list":
            return [decode(v) for v in raw]
        return _TAGS[tag](raw)
    return value


def encode_all(values: tuple[Any, ...] | list[Any]) -> list[Any]:
    return [encode(v) for v in values]


def decode_all(values: list[Any]) -> tuple[Any, ...]:
    return tuple(decode(v) for v in values)
