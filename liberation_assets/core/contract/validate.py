"""Validate whole batches against a stream's contract.

Validation runs once per batch over a DataFrame, never row by row through
pandera.  It has two passes:

1. types: each column's values are checked against the column's kind by their
   exact Python type (a set lookup per value), so a bad value fails only its
   own row;
2. the pandera schema (nullability, ranges, enums, lengths, uniqueness, custom
   checks) over the rows whose types are right, so a stray string can never
   make a range check raise and fail the whole batch.

The result splits the batch into rows that pass and rows that fail, each
failure with its reasons, formatted ``<column>: <check> (value <v>)``.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import pandas as pd
import pandera.pandas as pa

from liberation_assets.core.contract.model import Contract, as_contract
from liberation_assets.core.contract.serialize import revive_column
from liberation_assets.core.events import ChangeEvent
from liberation_assets.core.spec import ColumnContract

_NONE = type(None)
_EXACT: dict[str, frozenset[type]] = {
    "int": frozenset({int, _NONE}),
    "float": frozenset({float, int, Decimal, _NONE}),
    "decimal": frozenset({Decimal, int, _NONE}),
    "str": frozenset({str, _NONE}),
    "bool": frozenset({bool, _NONE}),
    "datetime": frozenset({datetime, pd.Timestamp, _NONE}),
    "date": frozenset({date, _NONE}),
    "time": frozenset({time, _NONE}),
    "json": frozenset({dict, list, str, int, float, bool, _NONE}),
    "uuid": frozenset({uuid.UUID, str, _NONE}),
    "bytes": frozenset({bytes, bytearray, memoryview, _NONE}),
}
_NUMERIC = ("int", "float", "decimal")
_PUBLISHED_AS_TEXT = frozenset({"decimal", "datetime", "date", "time", "bytes", "float"})
UNIQUE_KEY_CHECK = "unique_key"
KEY_COLUMN_PREFIX = "key."
_CHECK_NAMES = {"multiple_fields_uniqueness": UNIQUE_KEY_CHECK, "field_uniqueness": "unique"}


def _subclass_ok(value: Any, kind: str) -> bool:
    """The slow path, for values whose exact type is not listed (subclasses such as IntEnum)."""
    if kind in _NUMERIC and isinstance(value, bool):
        return False
    if kind == "date" and isinstance(value, datetime):
        return False
    return isinstance(value, tuple(_EXACT[kind]))


def type_failures(values: list[Any], kind: str) -> list[int]:
    """Positions of values whose type does not fit the kind (None always fits; nullability is a check)."""
    exact = _EXACT[kind]
    if exact.issuperset(map(type, values)):  # the usual batch: every type listed, one C-level pass
        return []
    return [i for i, v in enumerate(values) if type(v) not in exact and not _subclass_ok(v, kind)]


@dataclass
class Verdict:
    """The outcome of validating one batch."""

    valid: list[ChangeEvent]
    rejected: list[tuple[ChangeEvent, list[str]]] = field(default_factory=list)


class ContractValidator:
    """Applies one stream's contract to batches of events."""

    def __init__(self, contract: Contract | dict[str, ColumnContract] | str | None, key: list[str]):
        self.contract = as_contract(contract)
        self.key = key
        self._unique_schemas: dict[tuple[str, ...], pa.DataFrameSchema] = {}
        if self.contract is not None:
            self._names = list(self.contract.rules)
            self._kinds = [self.contract.rules[n].kind for n in self._names]
            self._schemas = {False: self.contract.schema}

    def _unique_schema(self, key_names: tuple[str, ...]) -> pa.DataFrameSchema:
        assert self.contract is not None
        if key_names not in self._unique_schemas:
            schema = copy.deepcopy(self.contract.schema)
            schema.unique = [f"{KEY_COLUMN_PREFIX}{name}" for name in key_names]
            self._unique_schemas[key_names] = schema
        return self._unique_schemas[key_names]

    def validate(self, events: list[ChangeEvent], *, unique_key: bool = False) -> Verdict:
        """Split events into valid and rejected.  Deletes and truncates always pass: they carry no new data."""
        if self.contract is None:
            return Verdict(valid=events)
        checked = [i for i, e in enumerate(events) if e.after is not None]
        if not checked:
            return Verdict(valid=events)
        names = self._names
        afters = [events[i].after for i in checked]
        columns = {n: [a.get(n) for a in afters] for n in names}  # type: ignore[union-attr]
        reasons: dict[int, list[str]] = {}
        for name, kind in zip(names, self._kinds):
            values = columns[name]
            if kind in _PUBLISHED_AS_TEXT:
                # Readers give such values in their JSON form (a string); the checks see the value it stands for.
                values = columns[name] = revive_column(values, kind)
            for position in type_failures(values, kind):
                reasons.setdefault(position, []).append(f"{name}: type:{kind} (value {_show(values[position])})")
        if unique_key:
            # The whole key, in public names, whether or not the contract names its columns.
            key_names = list(events[checked[0]].key)
            for j, key_name in enumerate(key_names):
                columns[f"{KEY_COLUMN_PREFIX}{key_name}"] = [events[i].key.get(key_name) for i in checked]
            schema = self._unique_schema(tuple(key_names))
        else:
            schema = self._schemas[False]
        frame = pd.DataFrame(columns, dtype=object)
        if reasons:
            frame = frame.drop(index=list(reasons))
        if len(frame):
            for position, why in _failures(schema, frame).items():
                reasons.setdefault(position, []).extend(why)
        if not reasons:
            return Verdict(valid=events)
        bad_events = {checked[i]: why for i, why in reasons.items()}
        valid = [e for i, e in enumerate(events) if i not in bad_events]
        rejected = [(events[i], why) for i, why in sorted(bad_events.items())]
        return Verdict(valid=valid, rejected=rejected)


def _failures(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> dict[int, list[str]]:
    """Row label → human-readable failed checks."""
    try:
        schema.validate(frame, lazy=True)
        return {}
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    reasons: dict[int, list[str]] = {}
    whole_frame: list[str] = []
    for column, check, case, index in zip(cases["column"], cases["check"], cases["failure_case"], cases["index"]):
        check = _CHECK_NAMES.get(str(check), str(check))
        if isinstance(column, str) and column.startswith(KEY_COLUMN_PREFIX):
            column = column[len(KEY_COLUMN_PREFIX) :]
        text = f"{column}: {check} (value {_show(case)})" if column is not None else check
        if index is None or (isinstance(index, float) and pd.isna(index)):
            whole_frame.append(text)
            continue
        row = reasons.setdefault(int(index), [])
        if text not in row:
            row.append(text)
    if whole_frame:
        # A failure not tied to a row (a check that raised) fails every row it was run on.
        for label in frame.index:
            reasons.setdefault(int(label), []).extend(whole_frame)
    return reasons


def _show(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "None"
    return repr(value)[:200]


def check_of(reason: str) -> str:
    """``column: check`` of a reason, without the value: what failure counts are grouped by."""
    return reason.split(" (value ", 1)[0]
