"""The ``connect-json`` value format: Kafka Connect's JSON with schemas, and reading it back.

Key and value are each ``{"schema", "payload"}``, the schema derived from the stream's published schema with
Debezium's semantic type names, so Connect sinks (the Debezium JDBC sink first) read the topic with the stock
``JsonConverter``.  Apart from ``formats.py`` because the schemas and the payload conversions both ways are
most of the code of the formats, and only this format needs them.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from datetime import time as time_of_day
from decimal import Context, Decimal, InvalidOperation
from typing import Any

import orjson

from liberation_assets.core.contract.debezium_format import flink_safe
from liberation_assets.core.contract.schema import FieldSchema, StreamSchema
from liberation_assets.core.contract.serialize import SNAPSHOT_FALSE, dumps
from liberation_assets.core.errors import SerializationError
from liberation_assets.core.events import ChangeEvent, Row

_EPOCH_DAY = date(1970, 1, 1).toordinal()
_UTC = timezone.utc

DECIMAL = "org.apache.kafka.connect.data.Decimal"
JSON = "io.debezium.data.Json"
UUID = "io.debezium.data.Uuid"
ZONED_TIMESTAMP = "io.debezium.time.ZonedTimestamp"
MICRO_TIMESTAMP = "io.debezium.time.MicroTimestamp"
ZONED_TIME = "io.debezium.time.ZonedTime"
MICRO_TIME = "io.debezium.time.MicroTime"
DATE = "io.debezium.time.Date"
INTERVAL = "io.debezium.time.Interval"

_SOURCE_FIELDS: tuple[tuple[str, str], ...] = (
    ("version", "string"),
    ("connector", "string"),
    ("name", "string"),
    ("ts_ms", "int64"),
    ("snapshot", "string"),
    ("db", "string"),
    ("schema", "string"),
    ("table", "string"),
    ("lsn", "int64"),
    ("txId", "int64"),
    ("sequence", "string"),
    ("file", "string"),
    ("pos", "int64"),
    ("event", "int64"),
    ("gtid", "string"),
    ("server_id", "int64"),
    ("row", "int32"),
    ("reconciliation", "boolean"),
    ("truncate", "boolean"),
)
_SOURCE_NAMES = frozenset(name for name, _ in _SOURCE_FIELDS)


def connect_field_type(f: FieldSchema) -> dict[str, Any]:
    """The Connect schema of one field (without field name and optionality), with Debezium's semantic names."""
    kind, source_type = f.kind, f.source_type
    if kind == "int":
        bits = f.bits or 64
        return {"type": "int16" if bits <= 16 else "int32" if bits <= 32 else "int64"}
    if kind == "bool":
        return {"type": "boolean"}
    if source_type == "interval":
        return {"type": "string", "name": INTERVAL, "version": 1}
    if kind == "float":
        return {"type": "float32" if source_type == "float32" else "float64"}
    if kind == "decimal":
        if f.scale is None or f.precision is None:
            return {"type": "string"}  # unconstrained numeric: no fixed scale for Connect's Decimal
        return {
            "type": "bytes",
            "name": DECIMAL,
            "version": 1,
            "parameters": {"scale": str(f.scale), "connect.decimal.precision": str(f.precision)},
        }
    if kind == "datetime":
        if source_type == "timestamp":
            return {"type": "int64", "name": MICRO_TIMESTAMP, "version": 1}
        return {"type": "string", "name": ZONED_TIMESTAMP, "version": 1}
    if kind == "date":
        return {"type": "int32", "name": DATE, "version": 1}
    if kind == "time":
        if source_type == "timetz":
            return {"type": "string", "name": ZONED_TIME, "version": 1}
        return {"type": "int64", "name": MICRO_TIME, "version": 1}
    if kind == "uuid":
        return {"type": "string", "name": UUID, "version": 1}
    if kind == "bytes":
        return {"type": "bytes"}
    if kind == "json" and source_type == "json":
        return {"type": "string", "name": JSON, "version": 1}
    return {"type": "string"}


def _struct(name: str, fields: list[dict[str, Any]], *, optional: bool) -> dict[str, Any]:
    return {"type": "struct", "fields": fields, "optional": optional, "name": name}


def _field(f: FieldSchema, *, optional: bool) -> dict[str, Any]:
    return {**connect_field_type(f), "optional": optional, "field": f.name}


def connect_schemas(schema: StreamSchema, topic: str) -> dict[str, Any]:
    """The key and value Connect schemas of a stream, as recorded in the schema history."""
    key_fields = [schema.field(k) or FieldSchema(k, "json", False) for k in schema.key]
    key = _struct(f"{topic}.Key", [_field(f, optional=False) for f in key_fields], optional=False)
    keys = set(schema.key)
    after = _struct(
        f"{topic}.Value", [_field(f, optional=f.nullable and f.name not in keys) for f in schema.fields], optional=True
    )
    before = _struct(f"{topic}.Before", [_field(f, optional=f.name not in keys) for f in schema.fields], optional=True)
    source = _struct(
        "liberation.Source",
        [{"type": t, "optional": n not in ("connector", "name", "ts_ms"), "field": n} for n, t in _SOURCE_FIELDS],
        optional=False,
    )
    value = _struct(
        f"{topic}.Envelope",
        [
            {**before, "field": "before"},
            {**after, "field": "after"},
            {**source, "field": "source"},
            {"type": "string", "optional": False, "field": "op"},
            {"type": "int64", "optional": True, "field": "ts_ms"},
        ],
        optional=False,
    )
    value["version"] = 1
    return {"key": key, "value": value}


def _days(value: Any) -> int:
    return (
        date.fromisoformat(value).toordinal() - _EPOCH_DAY
        if isinstance(value, str)
        else (value.toordinal() - _EPOCH_DAY)
    )


def _micros_of_instant(value: Any) -> int:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=_UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _micros_of_day(value: Any) -> int:
    if isinstance(value, str):
        negative = value.startswith("-")
        hours, minutes, seconds = value.lstrip("-").split(":")
        whole, _, fraction = seconds.partition(".")
        micros = ((int(hours) * 60 + int(minutes)) * 60 + int(whole)) * 1_000_000 + int((fraction + "000000")[:6])
        return -micros if negative else micros
    assert isinstance(value, time_of_day)
    return ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond


def _decimal(value: Any) -> Any:
    text = value if isinstance(value, str) else format(value, "f")
    try:
        if not Decimal(text).is_finite():
            raise InvalidOperation
    except InvalidOperation:
        raise ValueError("not a finite decimal, which Connect's Decimal cannot hold") from None
    return orjson.Fragment(text)  # a JSON number with the exact digits: JsonConverter reads it as the Decimal


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else dumps(value).decode()


def _interval(value: Any) -> Any:
    if isinstance(value, (int, float)):
        return f"PT{value}S"
    return _json_text(value) if not isinstance(value, str) else value


_CONVERTERS: dict[str, Any] = {
    DECIMAL: _decimal,
    MICRO_TIMESTAMP: _micros_of_instant,
    DATE: _days,
    MICRO_TIME: _micros_of_day,
    JSON: _json_text,
    INTERVAL: _interval,
}


class ConnectJsonFormat:
    """Kafka Connect JSON with schemas: what ``JsonConverter`` with ``schemas.enable=true`` reads.

    Payload values are our JSON forms except where Connect needs another: Decimal as a JSON number with the
    exact digits (``JsonConverter`` reads a number or base64 alike), naive timestamps, dates and times as
    Debezium's epoch integers, JSON and other text-like values as strings.
    """

    name = "connect-json"

    def __init__(self, schema: StreamSchema, topic: str, pattern: str = "cdc"):
        self.pattern = pattern
        schemas = connect_schemas(schema, topic)
        self._key_schema = schemas["key"]
        self._value_schema = schemas["value"]
        self._empty_key = {"schema": _struct(f"{topic}.Key", [], optional=False), "payload": {}}
        self._converters = {f.name: conv for f in schema.fields if (conv := self._converter(f)) is not None}
        self._key_names = [k for k in schema.key]

    @staticmethod
    def _converter(f: FieldSchema) -> Any:
        semantic = connect_field_type(f).get("name")
        if semantic in _CONVERTERS:
            return _CONVERTERS[semantic]
        if connect_field_type(f)["type"] == "string" and f.kind in ("json", "decimal"):
            return _json_text  # arrays, unconstrained numerics and other source types: as text
        return None

    def _row(self, row: Row | None) -> Row | None:
        if row is None:
            return None
        converters = self._converters
        if not converters:
            return row
        out = dict(row)
        for name, convert in converters.items():
            value = out.get(name)
            if value is not None:
                try:
                    out[name] = convert(value)
                except (ValueError, TypeError, AttributeError, AssertionError, OverflowError) as exc:
                    raise SerializationError(f"column {name}: {value!r} has no Connect form ({exc})") from None
        return out

    def key(self, key: Row) -> bytes:
        if not key:
            return dumps(self._empty_key)
        return dumps({"schema": self._key_schema, "payload": self._row(key)})

    def value(self, event: ChangeEvent, source_base: dict[str, Any], processed_ms: int) -> bytes:
        event = flink_safe(event, self.pattern)
        source = {**source_base, "ts_ms": event.ts_ms, **event.source}
        source.setdefault("snapshot", SNAPSHOT_FALSE)
        if "sequence" in source and not isinstance(source["sequence"], str):
            source["sequence"] = dumps(source["sequence"]).decode()
        payload = {
            "before": self._row(event.before),
            "after": self._row(event.after),
            "source": {k: v for k, v in source.items() if k in _SOURCE_NAMES},
            "op": event.op,
            "ts_ms": processed_ms,
        }
        return dumps({"schema": self._value_schema, "payload": payload})


# -- reading it back ---------------------------------------------------------------------------------------
def envelope_from_connect(raw: bytes) -> dict[str, Any]:
    """A connect-json record value as the envelope, its images in our JSON forms (``formats.decode_value``)."""
    decoded = json.loads(raw, parse_float=Decimal)  # exact decimals: orjson would read them as floats
    payload, schema = decoded["payload"], decoded["schema"]
    structs = {f["field"]: f for f in schema.get("fields", [])}
    for image in ("before", "after"):
        if payload.get(image) is not None and image in structs:
            payload[image] = row_from_connect(structs[image], payload[image])
    envelope: dict[str, Any] = payload
    return envelope


def row_from_connect(struct: dict[str, Any], row: Row) -> Row:
    """A connect-json key or image, in place, with Connect's forms (Decimal, epoch days and micros) back in ours."""
    for f in struct.get("fields", []):
        name, value = f["field"], row.get(f["field"])
        if value is None:
            continue
        semantic = f.get("name")
        if semantic == DECIMAL:
            scale = int(f.get("parameters", {}).get("scale", 0))
            row[name] = format(
                Decimal(value).quantize(Decimal(1).scaleb(-scale), context=Context(prec=len(str(value)) + scale + 2)),
                "f",
            )  # 28 digits refuse a DECIMAL(65,30)
        elif semantic == MICRO_TIMESTAMP:
            row[name] = _iso_instant(int(value))
        elif semantic == DATE:
            row[name] = date.fromordinal(int(value) + _EPOCH_DAY).isoformat()
        elif semantic == MICRO_TIME:
            row[name] = _iso_time(int(value))
        elif isinstance(value, Decimal):
            row[name] = float(value)
    return row


def _iso_instant(micros: int) -> str:
    moment = datetime(1970, 1, 1, tzinfo=_UTC) + timedelta(microseconds=micros)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{moment.microsecond:06d}" if moment.microsecond else "") + "Z"


def _iso_time(micros: int) -> str:
    sign, micros = ("-", -micros) if micros < 0 else ("", micros)
    seconds, fraction = divmod(micros, 1_000_000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return f"{sign}{hour:02d}:{minute:02d}:{second:02d}" + (f".{fraction:06d}" if fraction else "")
