"""A stream's published schema, derived from its contract and its projection of the source table.

The schema is what consumers may rely on: the published fields in order, each
with its kind, nullability and limits.  Each field comes from the source
column (SQLAlchemy type, length, precision, NOT NULL) and the contract
overrides what it names, since the contract is the public promise.  From it
we render a JSON Schema of the change event (the default JSON envelope) and
an Avro schema (for the registry wire format).  Its fingerprint decides when
a new version is due: any change to the derived fields changes it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, replace
from dataclasses import fields as dataclass_fields
from typing import Any

import orjson
import sqlalchemy as sa

from liberation_assets.core.contract.model import Contract, FieldRule
from liberation_assets.core.errors import SpecError
from liberation_assets.core.readers.table import ProjectedTable

OPS = ["c", "u", "d", "r", "t", "m"]
_DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"


@dataclass(frozen=True)
class FieldSchema:
    """One published field."""

    name: str
    kind: str
    nullable: bool = True
    bits: int | None = None
    """Integer width in the source (8, 16, 24, 32, 64); None when unknown."""
    precision: int | None = None
    scale: int | None = None
    max_length: int | None = None
    ge: float | None = None
    le: float | None = None
    enum: tuple[Any, ...] | None = None
    source_type: str | None = None
    """What the kind alone does not say and Kafka Connect schemas need: ``timestamptz`` (an instant) or
    ``timestamp`` (naive), ``timetz``, ``float32``/``float64``, ``json``, ``interval``, ``array``; None otherwise."""

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if v is not None}
        if self.enum is not None:
            data["enum"] = list(self.enum)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FieldSchema":
        known = {f.name for f in dataclass_fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if values.get("enum") is not None:
            values["enum"] = tuple(values["enum"])
        return cls(**values)


@dataclass(frozen=True)
class StreamSchema:
    """The published fields of one stream and its key."""

    stream: str
    fields: tuple[FieldSchema, ...]
    key: tuple[str, ...]

    def field(self, name: str) -> FieldSchema | None:
        return next((f for f in self.fields if f.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {"stream": self.stream, "key": list(self.key), "fields": [f.to_dict() for f in self.fields]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StreamSchema":
        return cls(data["stream"], tuple(FieldSchema.from_dict(f) for f in data["fields"]), tuple(data["key"]))

    @property
    def fingerprint(self) -> str:
        canonical = orjson.dumps(
            {"key": list(self.key), "fields": [f.to_dict() for f in self.fields]}, option=orjson.OPT_SORT_KEYS
        )
        return hashlib.sha256(canonical).hexdigest()[:24]

    def json_schema(self) -> dict[str, Any]:
        """JSON Schema (2020-12) of the change-event value: the Debezium envelope around the row."""
        properties = {f.name: _json_field(f) for f in self.fields}
        names = [f.name for f in self.fields]
        row = {"type": "object", "properties": properties, "required": names}
        before = {"type": "object", "properties": properties, "required": list(self.key)}
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": f"{self.stream} change event",
            "type": "object",
            "$defs": {"row": row, "before": before},
            "properties": {
                "before": {"oneOf": [{"type": "null"}, {"$ref": "#/$defs/before"}]},
                "after": {"oneOf": [{"type": "null"}, {"$ref": "#/$defs/row"}]},
                "op": {"enum": OPS},
                "source": {"type": "object", "required": ["connector", "name", "ts_ms", "snapshot"]},
                "ts_ms": {"type": "integer"},
            },
            "required": ["before", "after", "op", "source", "ts_ms"],
        }

    def key_json_schema(self) -> dict[str, Any]:
        properties = {k: _json_field(self.field(k) or FieldSchema(k, "json")) for k in self.key}
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": properties,
            "required": list(self.key),
        }

    def avro(self, namespace: str = "liberation") -> dict[str, Any]:
        """Avro schema of the change-event value; rows are one named record used for before and after."""
        name = _avro_name(self.stream)
        row = {
            "type": "record",
            "name": f"{name}Row",
            "fields": [_avro_field(f) for f in self.fields],
        }
        return {
            "type": "record",
            "name": f"{name}Envelope",
            "namespace": namespace,
            "fields": [
                {"name": "before", "type": ["null", row], "default": None},
                {"name": "after", "type": ["null", f"{namespace}.{name}Row"], "default": None},
                {"name": "op", "type": "string"},
                {"name": "source", "type": {"type": "map", "values": ["null", "boolean", "long", "double", "string"]}},
                {"name": "ts_ms", "type": "long"},
            ],
        }


def derive_schema(stream: str, key: list[str], table: ProjectedTable | None, contract: Contract | None) -> StreamSchema:
    """The published schema: the projection's columns as the source types them, overridden by the contract."""
    rules = contract.rules if contract is not None else {}
    published: dict[str, FieldSchema] = {}
    if table is not None:
        for public, column in table.columns.items():
            published[public] = field_from_column(public, table.table.c[column])
        key_public = table.key_public
        unpublished = sorted(set(rules) - set(published))
        if unpublished:
            raise SpecError(
                f"stream {stream}: the contract names {', '.join(unpublished)}, which the stream does not "
                f"publish (published: {', '.join(published)})"
            )
    else:
        key_public = key
    for name, rule in rules.items():
        published[name] = apply_rule(published.get(name, FieldSchema(name, rule.kind)), rule)
    for name in key_public:
        if name in published:
            published[name] = replace(published[name], nullable=False)
    return StreamSchema(stream, tuple(published.values()), tuple(key_public))


def apply_rule(base: FieldSchema, rule: FieldRule) -> FieldSchema:
    """The contract wins where it speaks; the source's limits stay where it is silent."""
    kind_kept = rule.kind == base.kind
    return FieldSchema(
        name=base.name,
        kind=rule.kind,
        nullable=rule.nullable,
        bits=base.bits if kind_kept else None,
        precision=base.precision if kind_kept else None,
        scale=base.scale if kind_kept else None,
        max_length=_tightest(rule.max_length, base.max_length if kind_kept else None),
        ge=rule.ge,
        le=rule.le,
        enum=rule.isin if rule.isin is not None else (base.enum if kind_kept else None),
        source_type=base.source_type if kind_kept else None,
    )


def _tightest(a: int | None, b: int | None) -> int | None:
    return min(a, b) if a is not None and b is not None else (a if a is not None else b)


def field_from_column(name: str, column: sa.Column[Any]) -> FieldSchema:
    """A field from a reflected column: kind, nullability, the limits its type carries and its source type."""
    column_type = column.type
    nullable = bool(column.nullable) and not column.primary_key
    type_name = type(column_type).__name__.upper()
    is_mysql = "mysql" in type(column_type).__module__
    if isinstance(column_type, sa.Boolean):
        return FieldSchema(name, "bool", nullable)
    if isinstance(column_type, sa.Integer):
        bits = (
            64
            if isinstance(column_type, sa.BigInteger)
            else 16
            if isinstance(column_type, sa.SmallInteger)
            else {"TINYINT": 8, "MEDIUMINT": 24}.get(type_name, 32)
        )
        if getattr(column_type, "unsigned", False):
            bits = min(64, bits * 2)
        return FieldSchema(name, "int", nullable, bits=bits)
    if isinstance(column_type, sa.Float):
        single = type_name == "REAL" or (is_mysql and type_name == "FLOAT")
        return FieldSchema(name, "float", nullable, source_type="float32" if single else "float64")
    if isinstance(column_type, sa.Numeric):
        return FieldSchema(name, "decimal", nullable, precision=column_type.precision, scale=column_type.scale)
    if isinstance(column_type, sa.Enum):
        return FieldSchema(name, "str", nullable, enum=tuple(column_type.enums))
    if isinstance(column_type, sa.String):
        return FieldSchema(name, "str", nullable, max_length=column_type.length)
    if isinstance(column_type, sa.DateTime):
        instant = bool(getattr(column_type, "timezone", False)) or (is_mysql and type_name == "TIMESTAMP")
        return FieldSchema(name, "datetime", nullable, source_type="timestamptz" if instant else "timestamp")
    if isinstance(column_type, sa.Date):
        return FieldSchema(name, "date", nullable)
    if isinstance(column_type, sa.Time):
        return FieldSchema(
            name, "time", nullable, source_type="timetz" if getattr(column_type, "timezone", False) else None
        )
    if isinstance(column_type, sa.Interval):
        return FieldSchema(name, "str", nullable, source_type="interval")  # ISO 8601 duration (pg_types)
    if isinstance(column_type, sa.Uuid):
        return FieldSchema(name, "uuid", nullable)
    if isinstance(column_type, sa.LargeBinary) or type_name in ("BINARY", "VARBINARY", "BYTEA", "BLOB"):
        return FieldSchema(name, "bytes", nullable)
    if isinstance(column_type, sa.JSON):
        return FieldSchema(name, "json", nullable, source_type="json")
    if isinstance(column_type, sa.ARRAY):
        return FieldSchema(name, "json", nullable, source_type="array")
    return FieldSchema(name, "json", nullable)


_JSON_TYPES: dict[str, dict[str, Any]] = {
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "decimal": {"type": "string", "pattern": _DECIMAL_PATTERN},
    "str": {"type": "string"},
    "bool": {"type": "boolean"},
    "datetime": {"type": "string", "format": "date-time"},
    "date": {"type": "string", "format": "date"},
    "time": {"type": "string", "format": "time"},
    "uuid": {"type": "string", "format": "uuid"},
    "bytes": {"type": "string", "contentEncoding": "base64"},
    "json": {},
}


def _json_field(f: FieldSchema) -> dict[str, Any]:
    schema: dict[str, Any] = dict(_JSON_TYPES[f.kind])
    if f.kind in ("int", "float"):
        if f.ge is not None:
            schema["minimum"] = f.ge
        if f.le is not None:
            schema["maximum"] = f.le
    if f.max_length is not None and f.kind == "str":
        schema["maxLength"] = f.max_length
    if f.enum is not None:
        schema["enum"] = [*f.enum, *([None] if f.nullable else [])]
    if f.nullable and "type" in schema:
        schema["type"] = [schema["type"], "null"]
    return schema


def _avro_type(f: FieldSchema) -> Any:
    kind = f.kind
    if kind == "int":
        return "int" if f.bits is not None and f.bits <= 32 else "long"
    if kind == "decimal":
        if f.precision is None:
            return "string"
        return {"type": "bytes", "logicalType": "decimal", "precision": f.precision, "scale": f.scale or 0}
    return {
        "float": "double",
        "str": "string",
        "bool": "boolean",
        "datetime": {"type": "long", "logicalType": "timestamp-micros"},
        "date": {"type": "int", "logicalType": "date"},
        "time": {"type": "long", "logicalType": "time-micros"},
        "uuid": {"type": "string", "logicalType": "uuid"},
        "bytes": "bytes",
        "json": "string",
    }[kind]


def _avro_field(f: FieldSchema) -> dict[str, Any]:
    avro_type = _avro_type(f)
    if f.nullable:
        return {"name": f.name, "type": ["null", avro_type], "default": None}
    return {"name": f.name, "type": avro_type}


def _avro_name(stream: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", stream)
    return cleaned if re.match(r"^[A-Za-z_]", cleaned) else f"_{cleaned}"
