"""A stream's contract as one pandera schema, declared in the spec or referenced as a DataFrameModel.

Either way the result is the same ``Contract``: a pandera ``DataFrameSchema``
holding the value checks (nullability, ranges, enums, lengths, uniqueness and
any custom check a model declares), plus one ``FieldRule`` per column that
says what consumers are promised.  Types are not left to pandera's dtype
check: rows arrive as Python objects, so each value's type is checked against
its kind (see ``validate``), which reports the offending row instead of
failing the whole column.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import pandera.pandas as pa

from liberation_assets.core.errors import SpecError
from liberation_assets.core.spec import ColumnContract, StreamSpec

KINDS = ("int", "float", "decimal", "str", "bool", "datetime", "date", "json", "uuid", "bytes", "time")
"""The value kinds a contract can name; ``json`` accepts any JSON value."""


@dataclass(frozen=True)
class FieldRule:
    """What the contract promises about one column."""

    kind: str
    nullable: bool = True
    ge: float | None = None
    le: float | None = None
    isin: tuple[Any, ...] | None = None
    max_length: int | None = None


@dataclass(frozen=True)
class Contract:
    """The value checks (a pandera schema without dtypes) and the promised rule per column."""

    schema: pa.DataFrameSchema
    rules: dict[str, FieldRule]
    origin: str
    """``spec`` or the ``package.module:Model`` reference."""


def load_contract(stream: StreamSpec) -> Contract | None:
    return as_contract(stream.contract)


def as_contract(contract: Contract | dict[str, ColumnContract] | str | None) -> Contract | None:
    """Accept what a spec or a caller holds: column contracts, a model reference, or a built contract."""
    if contract is None or isinstance(contract, Contract):
        return contract
    if isinstance(contract, str):
        return from_model(import_model(contract), origin=contract)
    return from_columns(contract) if contract else None


def from_columns(columns: dict[str, ColumnContract]) -> Contract:
    """A contract declared in the spec, column by column."""
    schema_columns = {}
    rules = {}
    for name, rule in columns.items():
        checks = []
        if rule.ge is not None:
            checks.append(pa.Check.ge(rule.ge))
        if rule.le is not None:
            checks.append(pa.Check.le(rule.le))
        if rule.isin is not None:
            checks.append(pa.Check.isin(rule.isin))
        if rule.max_length is not None:
            checks.append(pa.Check.str_length(max_value=rule.max_length))
        schema_columns[name] = pa.Column(None, checks=checks, nullable=rule.nullable, required=True, coerce=False)
        rules[name] = FieldRule(
            rule.type,
            rule.nullable,
            rule.ge,
            rule.le,
            tuple(rule.isin) if rule.isin is not None else None,
            rule.max_length,
        )
    return Contract(pa.DataFrameSchema(schema_columns, report_duplicates="all", strict=False), rules, "spec")


def import_model(reference: str) -> type[pa.DataFrameModel]:
    """Import ``package.module:ModelName``; a bad reference is a spec error, not a traceback."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise SpecError(f"contract {reference!r}: expected 'package.module:ModelName'")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise SpecError(f"contract {reference!r}: cannot import {module_name} ({exc})") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise SpecError(f"contract {reference!r}: {module_name} has no attribute {attribute}")
        target = getattr(target, part)
    if not (isinstance(target, type) and issubclass(target, pa.DataFrameModel)):
        raise SpecError(f"contract {reference!r}: not a pandera DataFrameModel")
    return target


def from_model(model: type[pa.DataFrameModel], origin: str | None = None) -> Contract:
    """A contract from a pandera DataFrameModel: its checks stay, its dtypes become kinds."""
    schema = model.to_schema()
    rules: dict[str, FieldRule] = {}
    updates: dict[str, dict[str, Any]] = {}
    for name, column in schema.columns.items():
        kind = (column.metadata or {}).get("type") or kind_of_dtype(column.dtype)
        if kind not in KINDS:
            raise SpecError(
                f"contract {origin or model.__name__}: column {name}: unknown type {kind!r}; use one of {', '.join(KINDS)}"
            )
        stats: dict[str, Any] = {}
        for check in column.checks:
            stats.update({f"{check.name}.{k}": v for k, v in (check.statistics or {}).items()})
        isin = stats.get("isin.allowed_values")
        rules[str(name)] = FieldRule(
            kind,
            bool(column.nullable),
            _first(stats, "greater_than_or_equal_to.min_value", "in_range.min_value"),
            _first(stats, "less_than_or_equal_to.max_value", "in_range.max_value"),
            tuple(isin) if isin is not None else None,
            stats.get("str_length.max_value"),
        )
        updates[str(name)] = {"dtype": None, "coerce": False}
    stripped = schema.update_columns(updates)
    stripped.coerce = False
    stripped.strict = False
    stripped.report_duplicates = "all"
    return Contract(stripped, rules, origin or f"{model.__module__}:{model.__qualname__}")


def _first(stats: dict[str, Any], *names: str) -> Any:
    return next((stats[n] for n in names if stats.get(n) is not None), None)


def kind_of_dtype(dtype: Any) -> str:
    """The value kind a pandera dtype stands for; no dtype means any JSON value."""
    if dtype is None:
        return "json"
    text = str(dtype).lower()
    for marker, kind in (
        ("bool", "bool"),
        ("int", "int"),
        ("float", "float"),
        ("decimal", "decimal"),
        ("datetime", "datetime"),
        ("timedelta", "float"),
        ("date", "date"),
        ("str", "str"),
        ("uuid", "uuid"),
        ("bytes", "bytes"),
        ("time", "time"),
    ):
        if marker in text:
            return kind
    return "json"
