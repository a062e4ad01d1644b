"""The value formats' bytes: the Debezium envelope as Flink's debezium-json reads it, Kafka Connect JSON with
schemas as JsonConverter reads it, flat rows; and every format read back in the envelope's terms."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import orjson
import pytest

from liberation_assets.core.contract.connect_json import ConnectJsonFormat, connect_schemas
from liberation_assets.core.contract.debezium_format import DebeziumFormat
from liberation_assets.core.contract.formats import FlatFormat, canonical_key, decode_key, decode_value, value_format
from liberation_assets.core.contract.schema import FieldSchema, StreamSchema
from liberation_assets.core.errors import SerializationError
from liberation_assets.core.events import ChangeEvent

SOURCE = {
    "version": "liberation-0.1",
    "connector": "liberation",
    "name": "mixed",
    "db": "shop",
    "schema": None,
    "table": "mixed",
}
SCHEMA = StreamSchema(
    "mixed",
    (
        FieldSchema("id", "int", False, bits=32),
        FieldSchema("small", "int", True, bits=16),
        FieldSchema("amount", "decimal", True, precision=12, scale=2),
        FieldSchema("label", "str", False),
        FieldSchema("flag", "bool", True),
        FieldSchema("happened", "datetime", True, source_type="timestamptz"),
        FieldSchema("local_ts", "datetime", True, source_type="timestamp"),
        FieldSchema("day", "date", True),
        FieldSchema("at", "time", True),
        FieldSchema("doc", "json", True, source_type="json"),
        FieldSchema("tags", "json", True, source_type="array"),
        FieldSchema("bin", "bytes", True),
        FieldSchema("ratio", "float", True, source_type="float32"),
    ),
    ("id",),
)
ROW = {
    "id": 7,
    "small": -3,
    "amount": "12.50",
    "label": "Piñata",
    "flag": True,
    "happened": datetime(2024, 3, 10, 6, 59, 59, 999999, tzinfo=timezone.utc),
    "local_ts": "2024-03-10T02:30:00Z",
    "day": "2024-03-10",
    "at": "23:59:59.5",
    "doc": '{"a": [1, 2]}',
    "tags": ["x", "y"],
    "bin": "AAH/",
    "ratio": 0.5,
}

# Flink's TIMESTAMP_LTZ ISO-8601 pattern (JsonFormatOptions timestamp-format.standard = ISO-8601):
# ISO_LOCAL_DATE 'T' ISO_LOCAL_TIME 'Z'.
FLINK_ISO_LTZ = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?Z$")


def _event(op: str, before=None, after=None, key=None, **source) -> ChangeEvent:
    return ChangeEvent(
        op, key if key is not None else {"id": 7}, before, after, 1_710_053_999_999, {"snapshot": "false", **source}
    )


def test_the_query_pattern_publishes_an_unseen_previous_image_as_a_create() -> None:
    envelope = orjson.loads(DebeziumFormat("query").value(_event("u", after=ROW), SOURCE, 1) or b"")
    assert envelope["op"] == "c" and envelope["before"] is None and envelope["after"]["id"] == 7


def test_cdc_updates_and_deletes_always_carry_a_before_image() -> None:
    update = orjson.loads(DebeziumFormat("cdc").value(_event("u", after=ROW), SOURCE, 1) or b"")
    assert update["op"] == "u" and update["before"] == {"id": 7}
    full = orjson.loads(DebeziumFormat("cdc").value(_event("u", before=ROW, after=ROW), SOURCE, 1) or b"")
    assert full["before"]["label"] == "Piñata"
    delete = orjson.loads(DebeziumFormat("query").value(_event("d"), SOURCE, 1) or b"")
    assert delete["op"] == "d" and delete["before"] == {"id": 7} and delete["after"] is None


def test_a_truncate_is_no_debezium_or_flat_record_but_a_connect_event_with_an_empty_key() -> None:
    truncate = _event("t", key={})
    assert DebeziumFormat().value(truncate, SOURCE, 1) is None
    assert FlatFormat().value(truncate, SOURCE, 1) is None
    connect = ConnectJsonFormat(SCHEMA, "p.mixed")
    key = orjson.loads(connect.key({}))
    assert key == {"schema": {"type": "struct", "fields": [], "optional": False, "name": "p.mixed.Key"}, "payload": {}}
    value = orjson.loads(connect.value(truncate, SOURCE, 1))
    assert value["payload"]["op"] == "t" and value["payload"]["before"] is None and value["payload"]["after"] is None


def test_flat_is_the_row_and_a_delete_is_only_its_tombstone() -> None:
    assert orjson.loads(FlatFormat().value(_event("c", after=ROW), SOURCE, 1) or b"")["label"] == "Piñata"
    assert FlatFormat().value(_event("d", before=ROW), SOURCE, 1) is None
    assert FlatFormat().key({"id": 7}) == b'{"id":7}'


def test_timestamps_are_utc_with_a_literal_z_as_flink_and_debezium_parse_them() -> None:
    envelope = orjson.loads(DebeziumFormat("cdc").value(_event("c", after=ROW), SOURCE, 1) or b"")
    assert envelope["after"]["happened"] == "2024-03-10T06:59:59.999999Z"
    assert FLINK_ISO_LTZ.match(envelope["after"]["happened"]) and FLINK_ISO_LTZ.match(envelope["after"]["local_ts"])


def test_the_connect_schema_uses_debeziums_semantic_names() -> None:
    schemas = connect_schemas(SCHEMA, "p.mixed")
    value = schemas["value"]
    assert value["name"] == "p.mixed.Envelope" and value["type"] == "struct"
    parts = {f["field"]: f for f in value["fields"]}
    after = {f["field"]: f for f in parts["after"]["fields"]}
    before = {f["field"]: f for f in parts["before"]["fields"]}
    assert after["amount"] == {
        "type": "bytes",
        "name": "org.apache.kafka.connect.data.Decimal",
        "version": 1,
        "parameters": {"scale": "2", "connect.decimal.precision": "12"},
        "optional": True,
        "field": "amount",
    }
    assert (after["doc"]["type"], after["doc"]["name"]) == ("string", "io.debezium.data.Json")
    assert (after["happened"]["type"], after["happened"]["name"]) == ("string", "io.debezium.time.ZonedTimestamp")
    assert (after["local_ts"]["type"], after["local_ts"]["name"]) == ("int64", "io.debezium.time.MicroTimestamp")
    assert (after["day"]["type"], after["day"]["name"]) == ("int32", "io.debezium.time.Date")
    assert (after["at"]["type"], after["at"]["name"]) == ("int64", "io.debezium.time.MicroTime")
    assert after["small"]["type"] == "int16" and after["id"]["type"] == "int32" and after["ratio"]["type"] == "float32"
    assert after["tags"] == {"type": "string", "optional": True, "field": "tags"}
    assert after["label"]["optional"] is False and before["label"]["optional"] is True, (
        "a before image may hold the key only"
    )
    assert after["id"]["optional"] is False and before["id"]["optional"] is False
    assert schemas["key"] == {
        "type": "struct",
        "optional": False,
        "name": "p.mixed.Key",
        "fields": [{"type": "int32", "optional": False, "field": "id"}],
    }


def test_connect_payloads_are_what_json_converter_reads_and_decode_back_to_our_forms() -> None:
    connect = value_format("connect-json", schema=SCHEMA, topic="p.mixed", pattern="cdc")
    raw = connect.value(_event("c", after=ROW), SOURCE, 42)
    assert raw is not None and b'"amount":12.50' in raw, "Decimal as a JSON number with its exact digits"
    payload = orjson.loads(raw)["payload"]
    after = payload["after"]
    assert after["local_ts"] == 1_710_037_800_000_000 and after["day"] == 19792 and after["at"] == 86_399_500_000
    assert after["doc"] == '{"a": [1, 2]}' and after["tags"] == '["x","y"]' and after["bin"] == "AAH/"
    assert payload["source"]["ts_ms"] == 1_710_053_999_999 and payload["ts_ms"] == 42 and payload["op"] == "c"
    decoded = decode_value(raw)
    assert decoded is not None and decoded["after"] == {
        **ROW,
        "happened": "2024-03-10T06:59:59.999999Z",
        "local_ts": "2024-03-10T02:30:00Z",
        "at": "23:59:59.500000",
        "tags": '["x","y"]',
    }
    key = connect.key({"id": 7})
    assert decode_key(key) == {"id": 7} and canonical_key(key) == b'{"id":7}'


def test_every_format_reads_back_as_an_envelope() -> None:
    event = _event("c", after={"id": 7, "label": "x"})
    debezium = decode_value(DebeziumFormat().value(event, SOURCE, 1))
    flat = decode_value(FlatFormat().value(event, SOURCE, 1))
    assert debezium is not None and flat is not None
    assert debezium["after"] == flat["after"] == {"id": 7, "label": "x"}
    assert debezium["op"] == "c" and flat["op"] is None
    assert decode_value(None) is None


def test_a_value_connect_cannot_carry_is_refused_by_name() -> None:
    connect = ConnectJsonFormat(SCHEMA, "p.mixed")
    with pytest.raises(SerializationError, match="amount"):
        connect.value(_event("c", after={**ROW, "amount": "NaN"}), SOURCE, 1)
    with pytest.raises(SerializationError, match="day"):
        connect.value(_event("c", after={**ROW, "day": "infinity"}), SOURCE, 1)


def test_the_spec_chooses_a_format_per_stream_with_a_kafka_default() -> None:
    from liberation_assets.core.errors import SpecError
    from liberation_assets.core.spec import parse_spec

    text = """
kafka: {format: flat}
sources: {db: {url: "sqlite:///x.db"}}
streams:
  a: {source: db, table: a, key: [id]}
  b: {source: db, table: b, key: [id], format: connect-json}
"""
    spec = parse_spec(text)
    assert (spec.format_for("a"), spec.format_for("b")) == ("flat", "connect-json")
    assert parse_spec(text.replace("kafka: {format: flat}\n", "")).format_for("a") == "debezium"
    with pytest.raises(SpecError, match=r"liberation.yaml:6: .*format"):
        parse_spec(text.replace("format: connect-json", "format: avro"))


def test_a_connect_key_reads_back_as_the_debezium_key_bytes() -> None:
    """Reconciliation and truncates compare topic keys with source keys: every format must give the same bytes."""
    schema = StreamSchema(
        "k",
        (
            FieldSchema("day", "date", False),
            FieldSchema("amount", "decimal", False, precision=8, scale=2),
            FieldSchema("at", "datetime", False, source_type="timestamp"),
            FieldSchema("v", "str"),
        ),
        ("day", "amount", "at"),
    )
    key = {"day": "2024-02-29", "amount": "10.10", "at": "2024-01-01T00:00:00.5Z"}
    raw = ConnectJsonFormat(schema, "p.k").key(key)
    assert orjson.loads(raw)["payload"] == {"day": 19782, "amount": 10.1, "at": 1_704_067_200_500_000}
    assert decode_key(raw) == {"day": "2024-02-29", "amount": "10.10", "at": "2024-01-01T00:00:00.500000Z"}
    assert decode_key(DebeziumFormat().key(key)) == key


@pytest.mark.parametrize(
    "base",
    [SOURCE, {}, {**SOURCE, "snapshot": "true"}, {**SOURCE, "ts_ms": 5}],
    ids=["base", "empty-base", "base-with-snapshot", "base-with-ts_ms"],
)
def test_the_spliced_envelope_is_byte_for_byte_envelope_bytes_whatever_the_source_fields(base) -> None:
    from liberation_assets.core.contract.serialize import envelope_bytes

    sources = [
        {},
        {"snapshot": "false", "lsn": 7, "txId": 730, "sequence": [1, 2]},
        {"lsn": 7},
        {"table": "other", "lsn": 7},  # repeats a base name: keeps the base's place
        {"ts_ms": 3, "lsn": 7},
        {"snapshot": "last"},
    ]
    events = [ChangeEvent("u", {"id": 7}, ROW, ROW, 1_710_053_999_999, dict(source)) for source in sources]
    shared = {"snapshot": "true"}
    events += [ChangeEvent("r", {"id": n}, None, ROW, n, shared) for n in range(3)]  # one source, many events
    events += [ChangeEvent("c", {"id": 8}, None, ROW, 1, {"lsn": n}) for n in range(3)]
    events.append(ChangeEvent("d", {"id": 9}, ROW, None, 1.5, {"lsn": 1}))  # type: ignore[arg-type]
    writer = DebeziumFormat("cdc")
    for event in events + events:  # again: each source seen before
        assert writer.value(event, base, 99) == envelope_bytes(event, base, 99), event.source
