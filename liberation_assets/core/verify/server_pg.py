"""The PostgreSQL side of ``verify.server``: each published column read back in its type and compared by the server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from liberation_assets.core.readers.table import ProjectedTable
from liberation_assets.core.verify.server_common import MISSING, SNAPSHOT_TABLE, WRONG_KIND, live_condition

# ---------------------------------------------------------------- PostgreSQL


@dataclass(frozen=True)
class _PgColumn:
    name: str
    type_sql: str
    """format_type of the base type (domains resolved), with its modifier."""
    base: str
    """The base type's name (typname), for arrays the element's."""
    is_array: bool
    element_sql: str = ""


_PG_INT = {"int2", "int4", "int8", "oid", "xid", "xid8", "cid"}
_PG_FLOAT = {"float4", "float8"}
_PG_FLOAT_SPECIALS = "('NaN','Infinity','-Infinity')"


def _pg_columns(connection: Any, table: ProjectedTable) -> dict[str, _PgColumn]:
    """Source column → its type, domains resolved to their base type, read from the catalog."""
    sql = """
        WITH RECURSIVE cols AS (
            SELECT a.attname, a.atttypid AS typid, a.atttypmod AS typmod FROM pg_attribute a
            WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped),
        resolved AS (
            SELECT attname, typid, typmod, 0 AS depth FROM cols
            UNION ALL
            SELECT r.attname, t.typbasetype, t.typtypmod, r.depth + 1 FROM resolved r JOIN pg_type t ON t.oid = r.typid
            WHERE t.typtype = 'd')
        SELECT DISTINCT ON (r.attname) r.attname, format_type(r.typid, r.typmod), t.typname, t.typelem <> 0 AND t.typlen = -1,
               CASE WHEN t.typelem <> 0 THEN (SELECT CASE WHEN e.typtype = 'd' THEN format_type(e.typbasetype, NULL)
                                                         ELSE format_type(t.typelem, NULL) END FROM pg_type e WHERE e.oid = t.typelem) END,
               CASE WHEN t.typelem <> 0 THEN (SELECT CASE WHEN e.typtype = 'd' THEN b.typname ELSE e.typname END
                                              FROM pg_type e LEFT JOIN pg_type b ON b.oid = e.typbasetype WHERE e.oid = t.typelem) END
        FROM resolved r JOIN pg_type t ON t.oid = r.typid WHERE t.typtype <> 'd'
        ORDER BY r.attname, r.depth DESC"""
    quote = sa.dialects.postgresql.dialect().identifier_preparer.quote  # type: ignore[attr-defined]
    name = (
        quote(table.table.name)
        if table.table.schema is None
        else f"{quote(table.table.schema)}.{quote(table.table.name)}"
    )
    cursor = connection.cursor()
    cursor.execute(sql, (name,))
    columns = {}
    for attname, type_sql, typname, is_array, element_sql, element_name in cursor.fetchall():
        if is_array:
            columns[attname] = _PgColumn(attname, type_sql, element_name, True, element_sql)
        else:
            columns[attname] = _PgColumn(attname, type_sql, typname, False)
    cursor.close()
    return columns


def _pg_pub(base: str, type_sql: str, p: str, kind: str, zone: str) -> str:
    """SQL text: the published value read back in the column's type and rendered by the server (NULL for JSON null)."""

    def check(kinds: str, expr: str) -> str:
        return (
            f"CASE WHEN {kind} IS NULL THEN '{MISSING}' WHEN {kind} = 'null' THEN NULL "
            f"WHEN {kind} NOT IN ({kinds}) THEN '{WRONG_KIND}' || {kind} ELSE {expr} END"
        )

    if base in _PG_INT:
        return check("'number'", f"format('%%s', CAST({p} AS {type_sql}))")
    if base in _PG_FLOAT:
        return check(
            "'number','string'",
            f"CASE WHEN {kind} = 'string' AND {p} NOT IN {_PG_FLOAT_SPECIALS} THEN '{WRONG_KIND}string' "
            f"ELSE format('%%s', CAST({p} AS {type_sql})) END",
        )
    if base == "bool":
        return check("'boolean'", f"format('%%s', CAST({p} AS boolean))")
    if base == "money":
        return check("'string'", f"format('%%s', CAST(CAST({p} AS numeric) AS money))")
    if base == "bytea":
        return check("'string'", f"format('%%s', decode({p}, 'base64'))")
    if base == "jsonb":
        return check("'string'", f"format('%%s', CAST({p} AS jsonb))")
    if base == "date":
        return check("'string'", f"format('%%s', {_pg_date(p)})")
    if base == "timestamptz":
        return check("'string'", f"format('%%s', {_pg_instant(p)})")
    if base == "timestamp":  # the instant the naive value is in the source's zone, the server's way
        return check("'string'", f"format('%%s', {_pg_instant(p)})")
    if base == "timetz":
        return check(
            "'string'",
            f"CASE WHEN {p} ~ '[+-][0-9]{{2}}(:[0-9]{{2}}){{0,2}}$' THEN format('%%s', CAST({p} AS timetz)) "
            f"ELSE '{WRONG_KIND}timetz without offset' END",
        )
    if base in ("time", "interval"):
        guard = f"{p} LIKE 'P%%' OR {p} LIKE '-P%%'" if base == "interval" else "true"
        return check(
            "'string'",
            f"CASE WHEN {guard} THEN format('%%s', CAST({p} AS {type_sql})) ELSE '{WRONG_KIND}not ISO 8601' END",
        )
    # numeric, json, text types, enums, network, bit strings, geometric, ranges, xml, uuid, …:
    # the published string is the server's own text output, exactly.
    return check("'string'", p)


def _pg_text(x: str) -> str:
    """The type's output function text, NULL kept (``format`` alone renders NULL as '')."""
    return f"CASE WHEN {x} IS NULL THEN NULL ELSE format('%%s', {x}) END"


def _pg_src(base: str, x: str, zone: str) -> str:
    """SQL text: the server's rendering of a source value (a naive timestamp as the instant it is in the zone)."""
    if base == "timestamp":
        return _pg_text(f"({x} AT TIME ZONE {_pg_literal(zone)})")
    return _pg_text(x)


def _pg_literal(text: str) -> str:
    return "'" + text.replace("'", "''").replace("%", "%%") + "'"


def _pg_expanded(p: str) -> str:
    """ISO 8601 expanded/astronomical years to PostgreSQL's BC text; other text unchanged."""
    return (
        f"CASE WHEN {p} ~ '^([+-][0-9]{{4,}}|0000)-' THEN "
        f"(CASE WHEN (substring({p} from '^([+-]?[0-9]+)-'))::int <= 0 "
        f"THEN lpad((1 - (substring({p} from '^([+-]?[0-9]+)-'))::int)::text, 4, '0') || substring({p} from '^[+-]?[0-9]+(-.*)$') || ' BC' "
        f"ELSE ltrim(substring({p} from '^[+-]?([0-9]+-.*)$'), '0') END) ELSE {p} END"
    )


def _pg_date(p: str) -> str:
    return f"CAST({_pg_expanded(p)} AS date)"


def _pg_instant(p: str) -> str:
    return f"CAST(regexp_replace({_pg_expanded(p)}, 'Z( BC)?$', '+00\\1') AS timestamptz)"


SAFE_FUNCTION = """
CREATE OR REPLACE FUNCTION pg_temp.liberation_try(expr text, p text, kind text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE result text;
BEGIN
    EXECUTE expr INTO result USING p, kind;
    RETURN result;
EXCEPTION WHEN data_exception OR syntax_error_or_access_rule_violation THEN
    RETURN E'\\x01unreadable: ' || SQLERRM;
END $$"""
"""A column whose published values the server refused once is read through this for the rest of the run: a
refused value becomes a difference instead of an error, so a topic full of them costs one query per batch."""


def _pg_safe_pub(base: str, type_sql: str, p: str, kind: str, zone: str) -> str:
    """``_pg_pub`` evaluated by ``liberation_try``: the expression runs with $1 = the published text, $2 = its JSON type."""
    expression = "SELECT " + _pg_pub(base, type_sql, "$1", "$2", zone).replace("%%", "%")
    return f"pg_temp.liberation_try({_pg_literal(expression)}, {p}, {kind})"


def _pg_column_exprs(column: _PgColumn, public: str, zone: str, safe: bool = False) -> tuple[str, str, str]:
    """(source rendering, published rendering, source text) SQL for one column; r.d is the after-image (json)."""
    pub = _pg_safe_pub if safe else _pg_pub
    pj = f"(r.d -> {_pg_literal(public)})"
    x = f"s.{_pg_ident(column.name)}"
    if not column.is_array:
        return (
            _pg_src(column.base, x, zone),
            pub(column.base, column.type_sql, f"({pj} #>> '{{}}')", f"json_typeof({pj})", zone),
            _pg_text(x),
        )
    element = column.base
    # Array elements are read through jsonb, whose numbers have no negative zero: inside a float array the sign
    # of a zero is not judged (a scalar float's is).
    src_element = _pg_src(
        element, "(CASE WHEN u.x = 0 THEN abs(u.x) ELSE u.x END)" if element in _PG_FLOAT else "u.x", zone
    )
    pub_element = pub(element, column.element_sql, "(q.e #>> '{}')", "jsonb_typeof(q.e)", zone)
    pjb = f"CAST({pj} AS jsonb)"
    dims = " || ".join(
        f"COALESCE(CASE WHEN jsonb_typeof({pjb} #> '{{{','.join(['0'] * d)}}}') = 'array' AND jsonb_array_length({pjb} #> '{{{','.join(['0'] * d)}}}') > 0 "
        f"THEN '[1:' || jsonb_array_length({pjb} #> '{{{','.join(['0'] * d)}}}') || ']' END, '')"
        for d in range(6)
    )
    source = f"(COALESCE(array_dims({x}), '') || (ARRAY(SELECT {src_element} FROM unnest({x}) WITH ORDINALITY u(x, o) ORDER BY o))::text)"
    published = (
        f"CASE WHEN json_typeof({pj}) IS NULL THEN '{MISSING}' WHEN json_typeof({pj}) = 'null' THEN NULL "
        f"WHEN json_typeof({pj}) <> 'array' THEN '{WRONG_KIND}' || json_typeof({pj}) "
        f"ELSE ({dims}) || (ARRAY(SELECT {pub_element} FROM jsonb_path_query({pjb}, 'strict $.** ? (@.type() != \"array\")') "
        f"WITH ORDINALITY q(e, o) ORDER BY o))::text END"
    )
    return f"CASE WHEN {x} IS NULL THEN NULL ELSE {source} END", published, _pg_text(x)


def _pg_ident(name: str) -> str:
    return '"' + name.replace('"', '""').replace("%", "%%") + '"'


class PgComparer:
    def __init__(self, connection: Any, table: ProjectedTable, zone: str, deleted_when: str):
        self.connection = connection
        self.table = table
        self.zone = zone
        types = _pg_columns(connection, table)
        schema = table.table.schema
        self.relation = (f"{_pg_ident(schema)}." if schema else "") + _pg_ident(table.table.name)
        self.live = live_condition(
            table,
            deleted_when,
            types.get(table.soft_delete_column or "") is not None
            and types[table.soft_delete_column or ""].base == "bool",
            _pg_ident,
        )
        self.types = types
        self.columns = [
            (public, source, *_pg_column_exprs(types[source], public, zone)) for public, source in table.columns.items()
        ]
        self.key_columns = [(public, types[source]) for public, source in zip(table.key_public, table.key_columns)]
        cursor = connection.cursor()
        for setting in (
            "TimeZone = 'UTC'",
            "DateStyle = 'ISO, YMD'",
            "IntervalStyle = 'postgres'",
            "extra_float_digits = 1",
        ):
            cursor.execute(f"SET {setting}")
        try:
            cursor.execute(SAFE_FUNCTION)
            self.can_be_safe = True
        except Exception:  # no TEMP right: refused values are found by splitting batches alone
            self.can_be_safe = False
        cursor.close()

    def make_safe(self, index: int) -> None:
        """Read this column through ``liberation_try`` from now on."""
        if self.can_be_safe:
            public, source = self.columns[index][:2]
            self.columns[index] = (public, source, *_pg_column_exprs(self.types[source], public, self.zone, safe=True))

    def _key_join(self) -> str:
        parts = []
        for public, column in self.key_columns:
            p = f"(r.k ->> {_pg_literal(public)})"
            if column.base == "timestamp":
                value = f"({_pg_instant(p)} AT TIME ZONE {_pg_literal(self.zone)})"
            elif column.base == "timestamptz":
                value = _pg_instant(p)
            elif column.base == "date":
                value = _pg_date(p)
            elif column.base == "bytea":
                value = f"decode({p}, 'base64')"
            else:
                value = f"CAST({p} AS {column.type_sql})"
            parts.append(f"s.{_pg_ident(column.name)} = {value}")
            kinds = (
                "'number'"
                if column.base in _PG_INT
                else "'number','string'"
                if column.base in _PG_FLOAT
                else "'boolean'"
                if column.base == "bool"
                else "'string'"
            )
            parts.append(
                f"json_typeof(r.k -> {_pg_literal(public)}) IN ({kinds})"
            )  # a key in another JSON form is another key
        return " AND ".join(parts)

    @staticmethod
    def numeric_key(column: _PgColumn) -> bool:
        return column.base in _PG_INT and not column.is_array

    def key_texts_sql(self, prefix: str = "s.") -> str:
        return ", ".join(_pg_text(f"{prefix}{_pg_ident(c.name)}") for _p, c in self.key_columns)

    def _keys_sql(self, keys: list[bytes]) -> tuple[str, str]:
        """The published keys as a relation ``r(k, o)`` for ``_key_join``, and its parameter."""
        sql = "(SELECT (e.v -> 'k') AS k, e.o FROM json_array_elements(CAST(%s AS json)) WITH ORDINALITY e(v, o)) r"
        return sql, (b"[" + b",".join(b'{"k":' + key + b"}" for key in keys) + b"]").decode()

    def snapshot(self, keys: list[bytes]) -> None:
        """Copy the source rows of these keys into a temporary table and judge against it from now on: the source
        side then stays as it was at this moment while the stream catches up (``verify.settle``)."""
        keys_sql, payload = self._keys_sql(keys)
        cursor = self.connection.cursor()
        try:
            cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{SNAPSHOT_TABLE}")
            cursor.execute(
                f"CREATE TEMP TABLE {SNAPSHOT_TABLE} AS SELECT s.* FROM {keys_sql} "
                f"JOIN {self.relation} s ON {self._key_join()}",
                (payload,),
            )
        finally:
            cursor.close()
        self.source_relation, self.relation = self.relation, f"pg_temp.{SNAPSHOT_TABLE}"

    def batch(self, rows: list[tuple[bytes, str]], columns: list[int] | None = None) -> list[tuple[Any, ...]]:
        chosen = [self.columns[i] for i in (columns if columns is not None else range(len(self.columns)))]
        checks = (
            ", ".join(
                f"(({src}) IS NOT DISTINCT FROM ({pub})), CASE WHEN ({src}) IS NOT DISTINCT FROM ({pub}) THEN NULL ELSE {text} END"
                for _public, _source, src, pub, text in chosen
            )
            or "true"
        )
        sql = (
            f"SELECT r.o, s.ctid IS NOT NULL, {self.key_texts_sql()}, {checks} "
            f"FROM (SELECT (e.v -> 'k') AS k, (e.v -> 'd') AS d, e.o FROM json_array_elements(CAST(%s AS json)) WITH ORDINALITY e(v, o)) r "
            f"LEFT JOIN {self.relation} s ON {self._key_join()} AND {self.live} ORDER BY r.o"
        )
        payload = b"[" + b",".join(b'{"k":' + key + b',"d":' + doc.encode() + b"}" for key, doc in rows) + b"]"
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, (payload.decode(),))
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def source_keys(self) -> Iterator[tuple[str | None, ...]]:
        cursor = self.connection.cursor()
        sql = f"SELECT {self.key_texts_sql()} FROM {self.relation} s WHERE {self.live}"
        try:
            cursor.execute(sql, ())
            while True:
                chunk = cursor.fetchmany(10_000)
                if not chunk:
                    break
                yield from (tuple(row) for row in chunk)
        finally:
            cursor.close()
