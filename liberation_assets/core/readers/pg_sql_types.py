"""SQLAlchemy types for the SELECTs that read PostgreSQL values: a column read as its output text and converted
as the result arrives, a text literal cast back to a column's exact type.

Apart from the converters (``pg_types.py``), which know nothing of SQLAlchemy: these plug them into a query.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from liberation_assets.core.errors import UnconvertibleValue


class PublishedText(sa.types.UserDefinedType[Any]):
    """The type of a select item holding a column's output text: its result processor is the column's converter.

    A value the converter refuses comes back as ``Unconvertible`` for the row builder to quarantine.
    """

    cache_ok = True

    def __init__(self, convert: Callable[[str], Any]):
        self.convert = convert

    def get_col_spec(self, **kw: Any) -> str:
        return "TEXT"

    def result_processor(self, dialect: Any, coltype: Any) -> Callable[[Any], Any]:
        convert = self.convert

        def process(value: Any) -> Any:
            if value is None:
                return None
            try:
                return convert(value)
            except UnconvertibleValue as exc:
                return Unconvertible(value, exc.reason)

        return process


class SqlTypeName(sa.types.UserDefinedType[Any]):
    """A type rendered by its catalog name, to cast a text literal back to a column's exact type."""

    cache_ok = True

    def __init__(self, name: str):
        self.name = name

    def get_col_spec(self, **kw: Any) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Unconvertible:
    """A value the type mapping refused, with the source text it had and why."""

    text: str
    reason: str
