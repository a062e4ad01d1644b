"""The value formats a stream's topic can carry (spec: ``format`` per stream, default ``kafka.format``).

All formats share the keys' meaning, the Kafka timestamps, the tombstone after a delete and exactly-once
publishing; they differ only in the bytes of the key and the value (docs/consumers.md):

- ``debezium``: the Debezium JSON envelope (``before``, ``after``, ``op``, ``source``, ``ts_ms``), readable by
  Flink's ``debezium-json``: an update always has a ``before`` (see ``DebeziumFormat``).
- ``connect-json``: Kafka Connect's JSON with schemas, key and value each ``{"schema", "payload"}``, the
  schema derived from the stream's published schema with Debezium's semantic type names, so Connect sinks
  (the Debezium JDBC sink first) read the topic with the stock ``JsonConverter``.
- ``flat``: the value is the row itself (the after image); a delete is a tombstone only; a truncate is
  carried by the deletes that follow it.  For upsert consumers (Flink ``upsert-kafka``, ksqlDB tables,
  Kafka Streams KTables).

``decode_key`` and ``decode_value`` read any of them back into the envelope's terms, for the code that reads
our own topics (reconciliation, truncate, verify).  The debezium format is ``debezium_format.py``, connect-json
``connect_json.py``; this module chooses one and reads them all back.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Protocol

import orjson

from liberation_assets.core.contract.connect_json import ConnectJsonFormat as ConnectJsonFormat
from liberation_assets.core.contract.connect_json import envelope_from_connect, row_from_connect
from liberation_assets.core.contract.debezium_format import DebeziumFormat as DebeziumFormat
from liberation_assets.core.contract.schema import StreamSchema
from liberation_assets.core.contract.serialize import dumps
from liberation_assets.core.errors import SerializationError
from liberation_assets.core.events import DELETE, TRUNCATE, ChangeEvent, Row

FORMATS = ("debezium", "connect-json", "flat")


class ValueFormat(Protocol):
    """How one stream's events become Kafka keys and values."""

    name: str

    def key(self, key: Row) -> bytes: ...

    def value(self, event: ChangeEvent, source_base: dict[str, Any], processed_ms: int) -> bytes | None:
        """The value of the event's record, or None when the format publishes no record for it
        (the writer still publishes the tombstone after a delete)."""
        ...


# -- flat --------------------------------------------------------------------------------------------------
class FlatFormat:
    """The row as the value; deletes are tombstones only; a truncate publishes nothing itself."""

    name = "flat"

    def key(self, key: Row) -> bytes:
        return dumps(key)

    def value(self, event: ChangeEvent, source_base: dict[str, Any], processed_ms: int) -> bytes | None:
        if event.op in (DELETE, TRUNCATE) or event.after is None:
            return None
        return dumps(event.after)


def value_format(
    name: str, *, schema: StreamSchema | None = None, topic: str = "", pattern: str = "cdc"
) -> ValueFormat:
    """The format object for a spec's ``format`` name; connect-json needs the stream's published schema."""
    if name == "debezium":
        return DebeziumFormat(pattern)
    if name == "flat":
        return FlatFormat()
    if name == "connect-json":
        if schema is None:
            raise SerializationError("the connect-json format needs the stream's published schema")
        return ConnectJsonFormat(schema, topic, pattern)
    raise SerializationError(f"unknown value format {name!r}; expected one of {', '.join(FORMATS)}")


# -- reading our own topics back ---------------------------------------------------------------------------
def decode_key(raw: bytes | None) -> Row:
    """A record key as the key object in our JSON forms, whatever the format (connect-json wraps it and gives
    dates, decimals and naive timestamps their Connect forms)."""
    if not raw:
        return {}
    if raw.startswith(b'{"schema"'):
        decoded = json.loads(raw, parse_float=Decimal)
        return row_from_connect(decoded["schema"], decoded["payload"]) if decoded["payload"] else {}
    return dict(orjson.loads(raw))


def canonical_key(raw: bytes | None) -> bytes:
    """A record key as the debezium and flat formats write it, so keys of every format compare equal."""
    if raw and raw.startswith(b'{"schema"'):
        return dumps(decode_key(raw))
    return raw or b""


def decode_value(raw: bytes | None) -> dict[str, Any] | None:
    """A record value in the envelope's terms (``op``, ``before``, ``after``, ``source``, ``ts_ms``), with the
    values in our JSON forms; None for a tombstone.  A flat row becomes ``{"op": None, "after": row}``: upsert
    semantics, no operation."""
    if raw is None:
        return None
    if raw.startswith(b'{"schema"'):
        return envelope_from_connect(raw)
    decoded = orjson.loads(raw)
    if isinstance(decoded, dict) and "op" in decoded and "after" in decoded and "source" in decoded:
        return decoded
    return {"op": None, "before": None, "after": decoded, "source": {}, "ts_ms": None}
