"""Schema derivation (contract + projection → JSON Schema and Avro) and the backward-compatibility rules."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
import sqlalchemy as sa

from liberation_assets.core.contract.compat import changes, incompatibilities
from liberation_assets.core.contract.model import as_contract
from liberation_assets.core.contract.schema import FieldSchema, StreamSchema, derive_schema
from liberation_assets.core.errors import SpecError
from liberation_assets.core.readers.table import ProjectedTable
from liberation_assets.core.spec import ColumnContract


def _table(*columns: sa.Column) -> ProjectedTable:
    table = sa.Table("items", sa.MetaData(), sa.Column("id", sa.BigInteger, primary_key=True), *columns)
    names = {str(c.name): str(c.name) for c in table.c}
    return ProjectedTable(table, names, ["id"], ["id"], None)


BASE_COLUMNS = (
    sa.Column("sku", sa.String(32), nullable=False),
    sa.Column("qty", sa.Integer),
    sa.Column("price", sa.Numeric(10, 2)),
    sa.Column("status", sa.Text),
    sa.Column("placed_at", sa.DateTime(timezone=True)),
)


def _base(**contract: ColumnContract) -> StreamSchema:
    return derive_schema("items", ["id"], _table(*(c.copy() for c in BASE_COLUMNS)), as_contract(contract or None))


def test_fields_come_from_the_table_and_the_contract_overrides_them() -> None:
    schema = _base(
        price=ColumnContract(type="decimal", nullable=False, ge=0),
        status=ColumnContract(type="str", isin=["new", "paid"]),
    )
    assert [f.name for f in schema.fields] == ["id", "sku", "qty", "price", "status", "placed_at"]
    assert schema.field("id") == FieldSchema("id", "int", False, bits=64)
    assert schema.field("sku") == FieldSchema("sku", "str", False, max_length=32)
    assert schema.field("price") == FieldSchema("price", "decimal", False, precision=10, scale=2, ge=0)
    assert schema.field("status").enum == ("new", "paid")
    assert schema.key == ("id",)


def test_json_schema_describes_the_envelope() -> None:
    jsonschema = _base(status=ColumnContract(type="str", isin=["new", "paid"])).json_schema()
    row = jsonschema["$defs"]["row"]
    assert row["properties"]["sku"] == {"type": "string", "maxLength": 32}
    assert row["properties"]["qty"] == {"type": ["integer", "null"]}
    assert row["properties"]["status"]["enum"] == ["new", "paid", None]
    assert row["properties"]["placed_at"] == {"type": ["string", "null"], "format": "date-time"}
    assert jsonschema["required"] == ["before", "after", "op", "source", "ts_ms"]


def test_avro_schema_parses_and_encodes_an_event() -> None:
    fastavro = pytest.importorskip("fastavro")
    from datetime import datetime, timezone
    from decimal import Decimal

    schema = fastavro.parse_schema(_base().avro())
    row = {
        "id": 1,
        "sku": "A",
        "qty": 3,
        "price": Decimal("9.50"),
        "status": "new",
        "placed_at": datetime(2024, 1, 1, tzinfo=timezone.utc),
    }
    event = {"before": None, "after": row, "op": "c", "source": {"connector": "liberation", "ts_ms": 1}, "ts_ms": 2}
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, event)
    buffer.seek(0)
    assert fastavro.schemaless_reader(buffer, schema)["after"]["price"] == Decimal("9.50")


def test_the_fingerprint_changes_only_with_the_schema() -> None:
    assert _base().fingerprint == _base().fingerprint
    assert _base().fingerprint != _base(qty=ColumnContract(type="int", ge=0)).fingerprint


def test_a_contract_column_the_stream_does_not_publish_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="does not publish"):
        _base(secret=ColumnContract(type="str"))


INCOMPATIBLE = {
    "column dropped": (lambda s: replace(s, fields=tuple(f for f in s.fields if f.name != "qty")), "qty: dropped"),
    "column renamed": (
        lambda s: replace(s, fields=tuple(replace(f, name="quantity") if f.name == "qty" else f for f in s.fields)),
        "qty: dropped (renamed to quantity?)",
    ),
    "type changed": (lambda s: _with(s, "qty", kind="str"), "qty: type changed from int to str"),
    "string narrowed": (lambda s: _with(s, "sku", max_length=16), "sku: narrowed: max length"),
    "integer narrowed": (lambda s: _with(s, "id", bits=32), "id: narrowed: integer"),
    "decimal narrowed": (lambda s: _with(s, "price", precision=8), "price: narrowed: decimal"),
    "made required": (lambda s: _with(s, "qty", nullable=False), "qty: narrowed: no longer nullable"),
    "minimum raised": (lambda s: _with(s, "qty", ge=1), "qty: narrowed: minimum raised"),
    "enum shrunk": (lambda s: _with(s, "status", enum=("a",)), "status: narrowed: allowed values"),
    "required field added": (
        lambda s: replace(s, fields=s.fields + (FieldSchema("note", "str", False),)),
        "note: added as required",
    ),
    "key changed": (lambda s: replace(s, key=("sku",)), "key changed"),
}


def _with(schema: StreamSchema, name: str, **changes: object) -> StreamSchema:
    return replace(schema, fields=tuple(replace(f, **changes) if f.name == name else f for f in schema.fields))


@pytest.mark.parametrize("change", sorted(INCOMPATIBLE))
def test_incompatible_changes_are_named(change: str) -> None:
    transform, expected = INCOMPATIBLE[change]
    problems = incompatibilities(_base(), transform(_base()))
    assert any(p.startswith(expected) for p in problems), problems


COMPATIBLE = {
    "optional field added": lambda s: replace(s, fields=s.fields + (FieldSchema("note", "str", True),)),
    "string widened": lambda s: _with(s, "sku", max_length=64),
    "made nullable": lambda s: _with(s, "sku", nullable=True),
    "int promoted to float": lambda s: _with(s, "qty", kind="float", bits=None),
    "enum extended": lambda s: _with(s, "status", enum=("new", "paid", "shipped")),
}


@pytest.mark.parametrize("change", sorted(COMPATIBLE))
def test_compatible_changes_pass(change: str) -> None:
    old = _with(_base(), "status", enum=("new", "paid"))
    new = COMPATIBLE[change](old)
    assert incompatibilities(old, new) == []
    assert changes(old, new)
