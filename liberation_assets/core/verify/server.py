"""The source server decides whether the replica holds its values: a comparison liberation's converters cannot fool.

Replica rows (the published after-images) are shipped to the source database
in batches.  For each row the server finds the source row by casting the
published key back into the key columns' types, and for each column it reads
the published JSON value back in the column's type and compares it with its
own rendering of the source value, e.g. on PostgreSQL
``format('%s', src.col) IS NOT DISTINCT FROM format('%s', CAST(<published> AS <type>))``.
Small adapters turn the JSON forms of the type mapping back into values the
server reads (base64 → bytes, a UTC instant → the naive column's zone, an
expanded ISO year → a BC date, a JSON array → the elements and dimensions of
an array); each column also checks the JSON type of the published value
(a number where a number belongs, a string for ``json``/``jsonb``), so a value
published in the wrong form is a difference even when it reads back equal.
None of liberation's readers or serializer is used.

A value the server cannot read back in the column's type (PostgreSQL raises)
splits the batch until the row and the column are found; it is reported as a
difference with the server's message, and that column is read through a
temporary safe-cast function (``pg_temp.liberation_try``) for the rest of the
run, so a topic full of such values still costs one query per batch.  Source rows that no replica row matched
are found by a second pass over the source keys, rendered by the server.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from liberation_assets.core.readers.table import ProjectedTable

BATCH_ROWS = 1000
MAX_DETAILS = 200
"""Column differences kept with their values; the keys of every difference are kept."""
MISSING = "\x01missing"
WRONG_KIND = "\x01wrong JSON type "
LOCAL_MARK = "\x02"
"""Marks a MariaDB DATETIME value the verify turned from the published UTC instant back into the zone's wall time."""

ReplicaRows = Callable[[], Iterable[tuple[bytes, str]]]
"""Calling it streams (key JSON, after-image JSON) of every replica row."""


@dataclass(frozen=True)
class ColumnDifference:
    """One value the source server does not recognise as its own."""

    key: str
    column: str
    source: str | None
    """The source server's text of the value (None for SQL NULL)."""
    published: Any
    """The published JSON value, decoded (``MISSING`` when the column is absent from the after-image)."""
    note: str = ""

    def describe(self) -> str:
        published = orjson.dumps(self.published).decode() if self.published is not MISSING else "(absent)"
        source = "NULL" if self.source is None else repr(self.source)
        return f"key {self.key} column {self.column}: source {source}, published {published}{' (' + self.note + ')' if self.note else ''}"


@dataclass
class ServerVerdict:
    matched_rows: int = 0
    extra: list[bytes] = field(default_factory=list)
    different: list[bytes] = field(default_factory=list)
    details: list[ColumnDifference] = field(default_factory=list)
    matched_keys: set[bytes] = field(default_factory=set)
    """Digests of the source keys (server text) some replica row matched."""


def _digest(texts: Iterable[str | None]) -> bytes:
    return hashlib.blake2b(orjson.dumps(list(texts)), digest_size=16).digest()


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
    name = quote(table.table.name) if table.table.schema is None else f"{quote(table.table.schema)}.{quote(table.table.name)}"
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
        return (f"CASE WHEN {kind} IS NULL THEN '{MISSING}' WHEN {kind} = 'null' THEN NULL "
                f"WHEN {kind} NOT IN ({kinds}) THEN '{WRONG_KIND}' || {kind} ELSE {expr} END")

    if base in _PG_INT:
        return check("'number'", f"format('%%s', CAST({p} AS {type_sql}))")
    if base in _PG_FLOAT:
        return check("'number','string'",
                     f"CASE WHEN {kind} = 'string' AND {p} NOT IN {_PG_FLOAT_SPECIALS} THEN '{WRONG_KIND}string' "
                     f"ELSE format('%%s', CAST({p} AS {type_sql})) END")
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
        return check("'string'", f"CASE WHEN {p} ~ '[+-][0-9]{{2}}(:[0-9]{{2}}){{0,2}}$' THEN format('%%s', CAST({p} AS timetz)) "
                                 f"ELSE '{WRONG_KIND}timetz without offset' END")
    if base in ("time", "interval"):
        guard = f"{p} LIKE 'P%%' OR {p} LIKE '-P%%'" if base == "interval" else "true"
        return check("'string'", f"CASE WHEN {guard} THEN format('%%s', CAST({p} AS {type_sql})) ELSE '{WRONG_KIND}not ISO 8601' END")
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
    return (f"CASE WHEN {p} ~ '^([+-][0-9]{{4,}}|0000)-' THEN "
            f"(CASE WHEN (substring({p} from '^([+-]?[0-9]+)-'))::int <= 0 "
            f"THEN lpad((1 - (substring({p} from '^([+-]?[0-9]+)-'))::int)::text, 4, '0') || substring({p} from '^[+-]?[0-9]+(-.*)$') || ' BC' "
            f"ELSE ltrim(substring({p} from '^[+-]?([0-9]+-.*)$'), '0') END) ELSE {p} END")


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
        return (_pg_src(column.base, x, zone),
                pub(column.base, column.type_sql, f"({pj} #>> '{{}}')", f"json_typeof({pj})", zone), _pg_text(x))
    element = column.base
    # Array elements are read through jsonb, whose numbers have no negative zero: inside a float array the sign
    # of a zero is not judged (a scalar float's is).
    src_element = _pg_src(element, "(CASE WHEN u.x = 0 THEN abs(u.x) ELSE u.x END)" if element in _PG_FLOAT else "u.x", zone)
    pub_element = pub(element, column.element_sql, "(q.e #>> '{}')", "jsonb_typeof(q.e)", zone)
    pjb = f"CAST({pj} AS jsonb)"
    dims = " || ".join(
        f"COALESCE(CASE WHEN jsonb_typeof({pjb} #> '{{{','.join(['0'] * d)}}}') = 'array' AND jsonb_array_length({pjb} #> '{{{','.join(['0'] * d)}}}') > 0 "
        f"THEN '[1:' || jsonb_array_length({pjb} #> '{{{','.join(['0'] * d)}}}') || ']' END, '')" for d in range(6))
    source = (f"(COALESCE(array_dims({x}), '') || (ARRAY(SELECT {src_element} FROM unnest({x}) WITH ORDINALITY u(x, o) ORDER BY o))::text)")
    published = (f"CASE WHEN json_typeof({pj}) IS NULL THEN '{MISSING}' WHEN json_typeof({pj}) = 'null' THEN NULL "
                 f"WHEN json_typeof({pj}) <> 'array' THEN '{WRONG_KIND}' || json_typeof({pj}) "
                 f"ELSE ({dims}) || (ARRAY(SELECT {pub_element} FROM jsonb_path_query({pjb}, 'strict $.** ? (@.type() != \"array\")') "
                 f"WITH ORDINALITY q(e, o) ORDER BY o))::text END")
    return f"CASE WHEN {x} IS NULL THEN NULL ELSE {source} END", published, _pg_text(x)


def _pg_ident(name: str) -> str:
    return '"' + name.replace('"', '""').replace("%", "%%") + '"'


class _PgComparer:
    def __init__(self, connection: Any, table: ProjectedTable, zone: str, deleted_when: str):
        self.connection = connection
        self.table = table
        self.zone = zone
        types = _pg_columns(connection, table)
        schema = table.table.schema
        self.relation = (f"{_pg_ident(schema)}." if schema else "") + _pg_ident(table.table.name)
        self.live = _live_condition(table, deleted_when, types.get(table.soft_delete_column or "") is not None
                                    and types[table.soft_delete_column or ""].base == "bool", _pg_ident)
        self.types = types
        self.columns = [(public, source, *_pg_column_exprs(types[source], public, zone)) for public, source in table.columns.items()]
        self.key_columns = [(public, types[source]) for public, source in zip(table.key_public, table.key_columns)]
        cursor = connection.cursor()
        for setting in ("TimeZone = 'UTC'", "DateStyle = 'ISO, YMD'", "IntervalStyle = 'postgres'", "extra_float_digits = 1"):
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
            kinds = "'number'" if column.base in _PG_INT else "'number','string'" if column.base in _PG_FLOAT \
                else "'boolean'" if column.base == "bool" else "'string'"
            parts.append(f"json_typeof(r.k -> {_pg_literal(public)}) IN ({kinds})")  # a key in another JSON form is another key
        return " AND ".join(parts)

    @staticmethod
    def numeric_key(column: _PgColumn) -> bool:
        return column.base in _PG_INT and not column.is_array

    def key_texts_sql(self, prefix: str = "s.") -> str:
        return ", ".join(_pg_text(f"{prefix}{_pg_ident(c.name)}") for _p, c in self.key_columns)

    def batch(self, rows: list[tuple[bytes, str]], columns: list[int] | None = None) -> list[tuple[Any, ...]]:
        chosen = [self.columns[i] for i in (columns if columns is not None else range(len(self.columns)))]
        checks = ", ".join(f"(({src}) IS NOT DISTINCT FROM ({pub})), CASE WHEN ({src}) IS NOT DISTINCT FROM ({pub}) THEN NULL ELSE {text} END"
                           for _public, _source, src, pub, text in chosen) or "true"
        sql = (f"SELECT r.o, s.ctid IS NOT NULL, {self.key_texts_sql()}, {checks} "
               f"FROM (SELECT (e.v -> 'k') AS k, (e.v -> 'd') AS d, e.o FROM json_array_elements(CAST(%s AS json)) WITH ORDINALITY e(v, o)) r "
               f"LEFT JOIN {self.relation} s ON {self._key_join()} AND {self.live} ORDER BY r.o")
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


def _live_condition(table: ProjectedTable, deleted_when: str, is_boolean: bool, ident: Callable[[str], str]) -> str:
    if not table.soft_delete_column:
        return "true"
    column = f"s.{ident(table.soft_delete_column)}"
    if deleted_when == "true":
        return f"NOT COALESCE(CAST({column} AS boolean), false)" if is_boolean else f"COALESCE({column}, 0) = 0"
    return f"({column} IS NULL OR {column} = false)" if is_boolean else f"{column} IS NULL"


# ---------------------------------------------------------------- MariaDB / MySQL


def _my_ident(name: str) -> str:
    return "`" + name.replace("`", "``").replace("%", "%%") + "`"


def _my_path(public: str) -> str:
    return "$." + '"' + public.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class _MyColumn:
    name: str
    data_type: str
    column_type: str


_MY_INT = {"tinyint", "smallint", "mediumint", "int", "integer", "bigint", "year"}
_MY_BINARY = {"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob", "geometry", "point", "linestring",
              "polygon", "multipoint", "multilinestring", "multipolygon", "geometrycollection"}


class _MyComparer:
    def __init__(self, connection: Any, table: ProjectedTable, zone: str, deleted_when: str):
        self.connection = connection
        self.table = table
        self.zone = zone
        cursor = connection.cursor()
        cursor.execute("SET time_zone = '+00:00'")
        cursor.execute("SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE FROM information_schema.COLUMNS "
                       "WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s", (table.table.schema, table.table.name))
        types = {name: _MyColumn(name, data_type.lower(), column_type.lower()) for name, data_type, column_type in cursor.fetchall()}
        cursor.close()
        self.types = types
        self.relation = (f"{_my_ident(table.table.schema)}." if table.table.schema else "") + _my_ident(table.table.name)
        soft = types.get(table.soft_delete_column or "")
        self.live = "1"
        if soft is not None:
            column = f"s.{_my_ident(soft.name)}"
            if deleted_when == "true":
                self.live = f"NOT COALESCE({column}, 0)"
            elif soft.column_type.startswith("tinyint(1)"):
                self.live = f"({column} IS NULL OR {column} = 0)"
            else:
                self.live = f"{column} IS NULL"
        self.local_columns = {public for public, source in table.columns.items()
                              if types[source].data_type == "datetime" and zone != "UTC"}
        self.columns = [(public, source, *self._exprs(types[source], public)) for public, source in table.columns.items()]
        self.key_columns = [(public, types[source]) for public, source in zip(table.key_public, table.key_columns)]

    def _exprs(self, column: _MyColumn, public: str) -> tuple[str, str, str]:
        x = f"s.{_my_ident(column.name)}"
        path = _my_literal(_my_path(public))
        pj = f"JSON_EXTRACT(r.d, {path})"
        kind = f"JSON_TYPE({pj})"
        p = f"JSON_UNQUOTE({pj})"
        t = column.data_type

        def check(kinds: str, expr: str) -> str:
            return (f"CASE WHEN {pj} IS NULL THEN '{MISSING}' WHEN {kind} = 'NULL' THEN NULL "
                    f"WHEN {kind} NOT IN ({kinds}) THEN CONCAT('{WRONG_KIND}', {kind}) ELSE {expr} END")

        text = f"CAST({x} AS CHAR)"
        if t in _MY_INT or t == "bit":
            src = f"CAST({x} + 0 AS CHAR)" if t in ("bit", "year") else text  # YEAR prints '0000' for the number 0
            return src, check("'INTEGER','UNSIGNED INTEGER'", p), src
        if t in ("double", "float"):
            return text, check("'INTEGER','DOUBLE'", f"CAST(CAST({p} AS {t.upper()}) AS CHAR)"), text
        if t in _MY_BINARY:
            return f"HEX({x})", check("'STRING'", f"HEX(FROM_BASE64({p}))"), f"HEX({x})"
        if t == "time":
            return f"CAST(CAST({x} AS TIME(6)) AS CHAR)", check("'STRING'", f"CAST(CAST({p} AS TIME(6)) AS CHAR)"), text
        if t in ("datetime", "timestamp"):
            if public in self.local_columns:  # published as UTC: ``_localize`` turned it back into the zone's wall time
                wall = f"CAST(SUBSTRING({p}, 2) AS DATETIME(6))"
                published = f"CASE WHEN {p} LIKE '{LOCAL_MARK}%%' THEN CAST({wall} AS CHAR) ELSE {p} END"
                # A wall time in a DST gap has no instant of its own: it was published as the instant the gap ends.
                # With zone tables loaded (the stack loads them), the server judges that both wall times are one
                # instant; CONVERT_TZ leaves values outside the TIMESTAMP range unconverted, so those stay exact.
                zone, utc = _my_literal(self.zone), "'+00:00'"
                same_instant = (f"CONVERT_TZ({x}, {zone}, {utc}) IS NOT NULL AND NOT (CONVERT_TZ({x}, {zone}, {utc}) <=> {x}) "
                                f"AND CONVERT_TZ({x}, {zone}, {utc}) <=> CONVERT_TZ({wall}, {zone}, {utc})")
                published = (f"CASE WHEN {p} LIKE '{LOCAL_MARK}%%' AND {same_instant} "
                             f"THEN CAST(CAST({x} AS DATETIME(6)) AS CHAR) ELSE {published} END")
            else:
                instant = f"CAST(REPLACE(REPLACE(REPLACE({p}, 'T', ' '), 'Z', ''), '+00:00', '') AS DATETIME(6))"
                published = f"CASE WHEN {p} LIKE '%%Z' OR {p} LIKE '%%+00:00' THEN CAST({instant} AS CHAR) ELSE {p} END"
            source = f"CASE WHEN {text} LIKE '0000-00-00%%' OR {text} LIKE '%%-00-%%' OR {text} LIKE '%%-00 %%' THEN {text} ELSE CAST(CAST({x} AS DATETIME(6)) AS CHAR) END"
            return source, check("'STRING'", published), text
        if t in ("char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set", "json"):
            return f"HEX(CAST({x} AS BINARY))", check("'STRING'", f"HEX(CAST({p} AS BINARY))"), text
        if t in ("decimal", "numeric", "date"):
            return text, check("'STRING'", p), text
        return text, check("'STRING'", p), text  # inet4/inet6/uuid and the rest: the server's text

    def _key_join(self) -> str:
        parts = []
        for public, column in self.key_columns:
            p = f"JSON_UNQUOTE(JSON_EXTRACT(r.k, {_my_literal(_my_path(public))}))"
            x = f"s.{_my_ident(column.name)}"
            if column.data_type in _MY_BINARY:
                parts.append(f"{x} = FROM_BASE64({p})")
            elif column.data_type in ("datetime", "timestamp") and public in self.local_columns:
                parts.append(f"{x} = CAST(SUBSTRING({p}, 2) AS DATETIME(6))")
            elif column.data_type in ("datetime", "timestamp"):
                parts.append(f"{x} = CAST(REPLACE(REPLACE({p}, 'T', ' '), 'Z', '') AS DATETIME(6))")
            elif column.data_type in ("char", "varchar", "text", "enum"):
                parts.append(f"CAST({x} AS BINARY) = CAST({p} AS BINARY)")
            else:
                parts.append(f"{x} = {p}")
            kinds = "'INTEGER','UNSIGNED INTEGER'" if column.data_type in _MY_INT or column.data_type == "bit" \
                else "'INTEGER','DOUBLE'" if column.data_type in ("float", "double") else "'STRING'"
            parts.append(f"JSON_TYPE(JSON_EXTRACT(r.k, {_my_literal(_my_path(public))})) IN ({kinds})")
        return " AND ".join(parts)

    @staticmethod
    def numeric_key(column: _MyColumn) -> bool:
        return column.data_type in _MY_INT

    def key_texts_sql(self) -> str:
        return ", ".join(f"CAST(s.{_my_ident(c.name)} AS CHAR)" if c.data_type not in _MY_BINARY else f"HEX(s.{_my_ident(c.name)})"
                         for _p, c in self.key_columns)

    def _localize(self, key: bytes, doc: str) -> tuple[bytes, str]:
        """Naive DATETIME published as UTC: back to the zone's wall time (the server has no zone tables to do it)."""
        if not self.local_columns:
            return key, doc
        zone = ZoneInfo(self.zone)

        def local(image: dict[str, Any]) -> dict[str, Any]:
            for public in self.local_columns & image.keys():
                value = image[public]
                if isinstance(value, str) and value.endswith("Z"):
                    try:
                        instant = datetime.fromisoformat(value[:-1]).replace(tzinfo=timezone.utc)
                    except ValueError:
                        continue
                    image[public] = LOCAL_MARK + instant.astimezone(zone).replace(tzinfo=None).isoformat(sep=" ")
            return image

        return orjson.dumps(local(orjson.loads(key))), orjson.dumps(local(orjson.loads(doc))).decode()

    def batch(self, rows: list[tuple[bytes, str]], columns: list[int] | None = None) -> list[tuple[Any, ...]]:
        chosen = [self.columns[i] for i in (columns if columns is not None else range(len(self.columns)))]
        checks = ", ".join(f"(({src}) <=> ({pub})), CASE WHEN ({src}) <=> ({pub}) THEN NULL ELSE {text} END"
                           for _public, _source, src, pub, text in chosen) or "1"
        first = self.key_columns[0][1].name
        values = " UNION ALL ".join(["SELECT %s AS o, %s AS k, %s AS d"] * len(rows))
        sql = (f"SELECT r.o, s.{_my_ident(first)} IS NOT NULL, {self.key_texts_sql()}, {checks} "
               f"FROM ({values}) r LEFT JOIN {self.relation} s ON {self._key_join()} AND {self.live} ORDER BY r.o")
        params: list[Any] = []
        for i, (key, doc) in enumerate(rows):
            key, doc = self._localize(key, doc)
            params.extend((i + 1, key.decode(), doc))
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, params)
            return [(row[0], bool(row[1]), *row[2:]) for row in cursor.fetchall()]
        finally:
            cursor.close()

    def source_keys(self) -> Iterator[tuple[str | None, ...]]:
        import pymysql.cursors

        cursor = self.connection.cursor(pymysql.cursors.SSCursor)
        try:
            cursor.execute(f"SELECT {self.key_texts_sql()} FROM {self.relation} s WHERE {self.live}", ())
            while True:
                chunk = cursor.fetchmany(10_000)
                if not chunk:
                    break
                yield from (tuple(row) for row in chunk)
        finally:
            cursor.close()


def _my_literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''").replace("%", "%%") + "'"


# ---------------------------------------------------------------- the comparison


def _batches(rows: Iterable[tuple[bytes, str]], size: int) -> Iterator[list[tuple[bytes, str]]]:
    batch: list[tuple[bytes, str]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def server_compare(engine: Engine, table: ProjectedTable, zone: str, deleted_when: str, replica: ReplicaRows,
                   *, batch_rows: int = BATCH_ROWS, max_details: int = MAX_DETAILS) -> tuple[int, int, ServerVerdict, list[bytes]]:
    """(source rows, replica rows, verdict, missing keys): every replica row judged by the source server."""
    verdict = ServerVerdict()
    replica_rows = 0
    raw = engine.raw_connection()
    driver: Any = raw.driver_connection
    raw.detach()  # its session settings and autocommit must not go back to the pool
    try:
        postgres = engine.dialect.name == "postgresql"
        if postgres:
            driver.autocommit = True  # a refused cast must not abort the next query
        comparer: Any = (_PgComparer if postgres else _MyComparer)(driver, table, zone, deleted_when)
        for rows in _batches(replica(), batch_rows):
            replica_rows += len(rows)
            _judge(comparer, rows, verdict, max_details, postgres)
        source_rows = 0
        missing: list[bytes] = []
        key_public = [public for public, _c in comparer.key_columns]
        numeric = [comparer.numeric_key(column) for _p, column in comparer.key_columns]
        for texts in comparer.source_keys():
            source_rows += 1
            if _digest(texts) not in verdict.matched_keys:  # named as the stream would key it: integers as numbers
                missing.append(orjson.dumps({p: int(t) if n and t is not None else t for p, t, n in zip(key_public, texts, numeric)}))
        return source_rows, replica_rows, verdict, sorted(missing)
    finally:
        raw.close()


def _judge(comparer: Any, rows: list[tuple[bytes, str]], verdict: ServerVerdict, max_details: int, postgres: bool) -> None:
    try:
        results = comparer.batch(rows)
    except Exception as exc:  # a published value the server cannot read in the column's type
        if not postgres or not _is_data_error(exc):
            raise
        if len(rows) > 1:
            middle = len(rows) // 2
            _judge(comparer, rows[:middle], verdict, max_details, postgres)
            _judge(comparer, rows[middle:], verdict, max_details, postgres)
            return
        _judge_columns(comparer, rows[0], verdict, max_details)
        return
    nkeys = len(comparer.key_columns)
    for (key, doc), result in zip(rows, results):
        _record(comparer, key, doc, result, nkeys, list(range(len(comparer.columns))), verdict, max_details)


def _is_data_error(exc: Exception) -> bool:
    import psycopg

    return isinstance(exc, (psycopg.errors.DataError, psycopg.errors.InvalidTextRepresentation, psycopg.errors.DatatypeMismatch,
                            psycopg.errors.InvalidParameterValue, psycopg.errors.SyntaxError))


def _judge_columns(comparer: Any, row: tuple[bytes, str], verdict: ServerVerdict, max_details: int) -> None:
    """One row the server cannot read: find the columns at fault, one query each."""
    key, doc = row
    try:
        base = comparer.batch([row], [])
    except Exception as exc:
        if not _is_data_error(exc):
            raise
        verdict.extra.append(key)  # its key cannot even be read in the key columns' types
        return
    nkeys = len(comparer.key_columns)
    if not _matched(key, base[0], nkeys, verdict):
        return
    published = orjson.loads(doc)
    differs = False
    for index, (public, _source, *_exprs) in enumerate(comparer.columns):
        try:
            result = comparer.batch([row], [index])[0]
        except Exception as exc:
            if not _is_data_error(exc):
                raise
            differs = True
            if hasattr(comparer, "make_safe"):
                comparer.make_safe(index)
            if len(verdict.details) < max_details:
                text = _source_text(comparer, row, index)
                verdict.details.append(ColumnDifference(key.decode(), public, text, published.get(public, MISSING),
                                                        f"the server cannot read it: {str(exc).splitlines()[0]}"))
            continue
        if not result[2 + nkeys]:
            differs = True
            if len(verdict.details) < max_details:
                verdict.details.append(ColumnDifference(key.decode(), public, result[3 + nkeys], published.get(public, MISSING)))
    if differs:
        verdict.different.append(key)


def _source_text(comparer: Any, row: tuple[bytes, str], index: int) -> str | None:
    """The source's text of a column whose published value does not read back: a query that does not read it."""
    public, source = comparer.columns[index][0], comparer.columns[index][1]
    saved = comparer.columns
    try:
        comparer.columns = [(public, source, "NULL", "'\x01'", saved[index][4])]
        text: str | None = comparer.batch([row], [0])[0][3 + len(comparer.key_columns)]
        return text
    finally:
        comparer.columns = saved


def _matched(key: bytes, result: tuple[Any, ...], nkeys: int, verdict: ServerVerdict) -> bool:
    """The replica row has a source row, and no other replica row had it (a key published in two forms is extra)."""
    if not result[1]:
        verdict.extra.append(key)
        return False
    digest = _digest(result[2:2 + nkeys])
    if digest in verdict.matched_keys:
        verdict.extra.append(key)
        return False
    verdict.matched_rows += 1
    verdict.matched_keys.add(digest)
    return True


def _record(comparer: Any, key: bytes, doc: str, result: tuple[Any, ...], nkeys: int, indexes: list[int],
            verdict: ServerVerdict, max_details: int) -> None:
    if not _matched(key, result, nkeys, verdict):
        return
    checks = result[2 + nkeys:]
    failed = [i for n, i in enumerate(indexes) if not checks[2 * n]]
    if not failed:
        return
    verdict.different.append(key)
    published = orjson.loads(doc)
    for n, i in enumerate(indexes):
        if not checks[2 * n] and len(verdict.details) < max_details:
            public = comparer.columns[i][0]
            verdict.details.append(ColumnDifference(key.decode(), public, checks[2 * n + 1], published.get(public, MISSING)))
