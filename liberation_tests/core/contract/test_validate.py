"""Batch validation: each kind of violation fails only its own rows, with a reason that names the check."""

from __future__ import annotations

from decimal import Decimal

import pytest

from liberation_assets.core.contract.model import as_contract, from_model
from liberation_assets.core.contract.validate import ContractValidator, check_of
from liberation_assets.core.errors import SpecError
from liberation_assets.core.events import DELETE, READ, ChangeEvent
from liberation_assets.core.spec import ColumnContract
from liberation_tests.core.contract.models import Item

SPEC_CONTRACT = {
    "sku": ColumnContract(type="str", nullable=False),
    "qty": ColumnContract(type="int"),
    "price": ColumnContract(type="decimal", nullable=False, ge=0),
    "status": ColumnContract(type="str", isin=["new", "paid", "shipped"]),
}
GOOD = {"sku": "A", "qty": 1, "price": Decimal("9.50"), "status": "new"}
VIOLATIONS = {
    "type": ({"qty": "five"}, "qty: type:int"),
    "null": ({"price": None}, "price: not_nullable"),
    "range": ({"price": Decimal("-1")}, "price: greater_than_or_equal_to(0"),
    "enum": ({"status": "lost"}, "status: isin("),
}


def _events(rows: list[dict]) -> list[ChangeEvent]:
    return [ChangeEvent(READ, {"sku": r["sku"]}, None, r, 0) for r in rows]


@pytest.fixture(params=["spec", "model"])
def validator(request: pytest.FixtureRequest) -> ContractValidator:
    contract = SPEC_CONTRACT if request.param == "spec" else "liberation_tests.core.contract.models:Item"
    return ContractValidator(contract, ["sku"])


@pytest.mark.parametrize("kind", sorted(VIOLATIONS))
def test_each_violation_rejects_only_its_row_with_a_reason(validator: ContractValidator, kind: str) -> None:
    change, reason = VIOLATIONS[kind]
    rows = [{**GOOD, "sku": "A"}, {**GOOD, "sku": "B", **change}, {**GOOD, "sku": "C"}]
    verdict = validator.validate(_events(rows))
    assert [e.key["sku"] for e in verdict.valid] == ["A", "C"]
    [(event, reasons)] = verdict.rejected
    assert event.key == {"sku": "B"}
    assert any(r.startswith(reason) for r in reasons), reasons


def test_duplicate_keys_are_rejected_when_the_batch_must_be_unique(validator: ContractValidator) -> None:
    rows = [{**GOOD, "sku": "A"}, {**GOOD, "sku": "B"}, {**GOOD, "sku": "B", "qty": 2}]
    assert len(validator.validate(_events(rows)).valid) == 3
    verdict = validator.validate(_events(rows), unique_key=True)
    assert [e.key for e in verdict.valid] == [{"sku": "A"}]
    assert [check_of(r[0]) for _e, r in verdict.rejected] == ["sku: unique_key", "sku: unique_key"]


def test_a_composite_key_is_unique_as_a_whole() -> None:
    validator = ContractValidator({"a": ColumnContract(type="int"), "b": ColumnContract(type="str")}, ["a", "b"])
    rows = [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 1, "b": "x"}]
    verdict = validator.validate([ChangeEvent(READ, r, None, r, 0) for r in rows], unique_key=True)
    assert [e.after for e in verdict.valid] == [{"a": 1, "b": "y"}]
    assert len(verdict.rejected) == 2


def test_a_wrong_type_never_fails_the_whole_batch_through_a_range_check(validator: ContractValidator) -> None:
    """A str in a numeric column would make pandera's >= raise for the column; only that row may fail."""
    rows = [{**GOOD, "sku": "A"}, {**GOOD, "sku": "B", "price": "cheap"}, {**GOOD, "sku": "C", "price": Decimal(-2)}]
    verdict = validator.validate(_events(rows))
    assert [e.key["sku"] for e in verdict.valid] == ["A"]
    reasons = {e.key["sku"]: r for e, r in verdict.rejected}
    assert reasons["B"] == ["price: type:decimal (value 'cheap')"]
    assert check_of(reasons["C"][0]).startswith("price: greater_than_or_equal_to(0")


def test_a_float_contract_takes_a_decimal_column_published_as_its_exact_text() -> None:
    """numeric (PostgreSQL) and DECIMAL (MariaDB) arrive as their digits' text; a ``float`` contract checks the number."""
    validator = ContractValidator({"price": ColumnContract(type="float", ge=0)}, ["id"])
    rows = [
        {"id": 1, "price": "12.50"},
        {"id": 2, "price": "-0.01"},
        {"id": 3, "price": "cheap"},
        {"id": 4, "price": 2.5},
    ]
    verdict = validator.validate([ChangeEvent(READ, {"id": r["id"]}, None, r, 0) for r in rows])
    assert [e.key["id"] for e in verdict.valid] == [1, 4]
    reasons = {e.key["id"]: r for e, r in verdict.rejected}
    assert check_of(reasons[2][0]).startswith("price: greater_than_or_equal_to(0")
    assert reasons[3] == ["price: type:float (value 'cheap')"]
    assert [e.after["price"] for e in verdict.valid] == ["12.50", 2.5]  # published as they came


def test_bools_are_not_ints_and_datetimes_are_not_dates() -> None:
    validator = ContractValidator({"n": ColumnContract(type="int"), "d": ColumnContract(type="date")}, ["n"])
    from datetime import date, datetime

    rows = [{"n": 1, "d": date(2024, 1, 1)}, {"n": True, "d": date(2024, 1, 1)}, {"n": 2, "d": datetime(2024, 1, 1)}]
    verdict = validator.validate([ChangeEvent(READ, {"n": r["n"]}, None, r, 0) for r in rows])
    assert [e.after["n"] for e in verdict.valid] == [1]


def test_deletes_always_pass(validator: ContractValidator) -> None:
    bad = {**GOOD, "price": None}
    verdict = validator.validate([ChangeEvent(DELETE, {"sku": "A"}, bad, None, 0)])
    assert len(verdict.valid) == 1 and not verdict.rejected


def test_a_model_keeps_its_rules_and_checks() -> None:
    contract = from_model(Item)
    assert contract.rules["price"].kind == "decimal" and contract.rules["price"].ge == 0
    assert contract.rules["status"].isin == ("new", "paid", "shipped")
    assert contract.rules["qty"].kind == "int" and contract.rules["qty"].nullable
    assert contract.origin.endswith(":Item")


@pytest.mark.parametrize(
    "reference",
    [
        "nodots",
        "liberation_tests.nowhere:X",
        "liberation_tests.core.contract.models:Nope",
        "liberation_tests.core.contract.test_validate:GOOD",
    ],
)
def test_a_bad_model_reference_is_a_spec_error(reference: str) -> None:
    with pytest.raises(SpecError, match="contract"):
        as_contract(reference)
