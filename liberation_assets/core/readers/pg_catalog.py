"""What type a PostgreSQL column has: the built-in type OIDs, and ``pg_type`` lookups that resolve a domain to
its base type and an array to its element, so every path converts a value by what it really is.

Apart from the converters (``pg_types.py``) because it is about naming types, not values: the log and the
catalog give OIDs, and a converter is chosen from the ``PgType`` this module resolves.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

BOOL, BYTEA, CHAR, NAME, INT8, INT2, INT4, TEXT, OID, XID = 16, 17, 18, 19, 20, 21, 23, 25, 26, 28
FLOAT4, FLOAT8, MONEY, BPCHAR, VARCHAR, DATE, TIME = 700, 701, 790, 1042, 1043, 1082, 1083
TIMESTAMP, TIMESTAMPTZ, INTERVAL, TIMETZ, NUMERIC = 1114, 1184, 1186, 1266, 1700

NATIVE = frozenset({BOOL, INT2, INT4, INT8, OID, TEXT, VARCHAR, BPCHAR, NAME})
"""Types psycopg loads (in C) to exactly the converter's value: read without a cast, no Python work per value."""


@dataclass(frozen=True)
class PgType:
    """A column's type with domains resolved: the base type, and for an array its element type."""

    oid: int
    element: "PgType | None" = None
    delimiter: str = ","
    """The element type's array delimiter (``;`` for box)."""
    sql_name: str = ""
    """``format_type`` of the column's declared type (a domain's own name), for casts back to it."""

    @property
    def native(self) -> bool:
        return self.oid in NATIVE and self.element is None


BUILTIN_ARRAYS: dict[int, int] = {
    1000: BOOL,
    1001: BYTEA,
    1002: CHAR,
    1003: NAME,
    1016: INT8,
    1005: INT2,
    1007: INT4,
    1009: TEXT,
    1028: OID,
    1011: XID,
    1021: FLOAT4,
    1022: FLOAT8,
    791: MONEY,
    1014: BPCHAR,
    1015: VARCHAR,
    1182: DATE,
    1183: TIME,
    1115: TIMESTAMP,
    1185: TIMESTAMPTZ,
    1187: INTERVAL,
    1270: TIMETZ,
    1231: NUMERIC,
    199: 114,
    3807: 3802,
    2951: 2950,
}
"""Array type OID → element OID of built-in types, for plans built without the catalog (unit tests)."""


_TYPE_ROWS = sa.text(
    "SELECT t.oid, t.typtype, t.typbasetype, t.typelem, t.typcategory, e.typdelim "
    "FROM pg_type t LEFT JOIN pg_type e ON e.oid = t.typelem WHERE t.oid = ANY(:oids)"
)
_COLUMNS = sa.text(
    "SELECT a.attname, a.atttypid, format_type(a.atttypid, a.atttypmod) "
    "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = COALESCE(:schema, current_schema()) AND c.relname = :table AND a.attnum > 0 "
    "AND NOT a.attisdropped"
)


class TypeCatalog:
    """Resolves type OIDs (domains to their base type, arrays to their element) from ``pg_type``, cached."""

    def __init__(self) -> None:
        self._rows: dict[int, tuple[str, int, int, str, str]] = {}

    def resolve(self, connection: Connection, oids: list[int]) -> dict[int, PgType]:
        self._load(connection, oids)
        return {oid: self._build(oid, "") for oid in oids}

    def known(self, oid: int) -> PgType | None:
        """The type if it was read before (with everything it depends on), without asking the server."""
        return self._build(oid, "") if oid in self._rows else None

    def resolve_one(self, connection: Connection, oid: int, sql_name: str = "") -> PgType:
        self._load(connection, [oid])
        return self._build(oid, sql_name)

    def _load(self, connection: Connection, oids: list[int]) -> None:
        wanted = {o for o in oids if o not in self._rows}
        while wanted:
            rows = connection.execute(_TYPE_ROWS, {"oids": sorted(wanted)}).all()
            found = {int(r[0]): (str(r[1]), int(r[2]), int(r[3]), str(r[4]), str(r[5] or ",")) for r in rows}
            for oid in wanted - set(found):
                found[oid] = ("b", 0, 0, "U", ",")  # gone from the catalog: published as text
            self._rows.update(found)
            wanted = set()
            for typtype, base, element, category, _ in found.values():
                for nested in (base if typtype == "d" else 0, element if category == "A" else 0):
                    if nested and nested not in self._rows:
                        wanted.add(nested)

    def _build(self, oid: int, sql_name: str) -> PgType:
        typtype, base, element, category, delimiter = self._rows[oid]
        if typtype == "d" and base:
            resolved = self._build(base, "")
        elif category == "A" and element:
            resolved = PgType(oid, self._build(element, ""), delimiter)
        else:
            resolved = PgType(oid)
        return PgType(resolved.oid, resolved.element, resolved.delimiter, sql_name) if sql_name else resolved


def column_types(connection: Connection, schema: str | None, table: str) -> dict[str, PgType]:
    """Column name → resolved type of one table, straight from the catalog (names bound, never quoted by hand)."""
    rows = connection.execute(_COLUMNS, {"schema": schema, "table": table}).all()
    catalog = TypeCatalog()
    catalog.resolve(connection, [int(r[1]) for r in rows])
    return {str(name): catalog.resolve_one(connection, int(oid), str(sql_name)) for name, oid, sql_name in rows}
