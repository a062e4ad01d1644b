"""``revive_column`` is ``revive`` over a column: the same values, whether or not every text parses."""

from __future__ import annotations

from decimal import Decimal

import pytest

from liberation_assets.core.contract.serialize import revive, revive_column
from liberation_assets.core.contract.validate import type_failures

COLUMNS = {
    "decimal": ["1.31", None, Decimal("2"), "NaN", "12.50"],
    "datetime": ["2024-03-10T06:59:59.999999Z", None, "2024-03-10T02:30:00+01:00"],
    "float": ["0.10", "Infinity", 0.5, None],
    "date": ["2024-03-10", None],
    "bytes": ["AAH/", None],
    "str": ["a", None, 3],
}


@pytest.mark.parametrize("kind", sorted(COLUMNS))
@pytest.mark.parametrize("poison", [None, "not a value"], ids=["all-parse", "one-does-not"])
def test_a_column_revives_as_its_values_one_by_one(kind, poison) -> None:
    values = COLUMNS[kind] + ([poison] if poison else [])
    expected = [revive(v, kind) if v.__class__ is str else v for v in values]
    revived = revive_column(values, kind)
    assert [repr(v) for v in revived] == [repr(v) for v in expected]  # repr: NaN is not equal to itself
    assert type_failures(revived, kind) == type_failures(expected, kind)
