"""The MariaDB / MySQL side of ``verify.server``: each published column read back in its type and compared by the server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from liberation_assets.core.readers.table import ProjectedTable
from liberation_assets.core.verify.server_common import LOCAL_MARK, MISSING, SNAPSHOT_TABLE, WRONG_KIND

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
_MY_BINARY = {
    "binary",
    "varbinary",
    "tinyblob",
    "blob",
    "mediumblob",
    "longblob",
    "geometry",
    "point",
    "linestring",
    "polygon",
    "multipoint",
    "multilinestring",
    "multipolygon",
    "geometrycollection",
}


class MyComparer:
    def __init__(self, connection: Any, table: ProjectedTable, zone: str, deleted_when: str):
        self.connection = connection
        self.table = table
        self.zone = zone
        cursor = connection.cursor()
        cursor.execute("SET time_zone = '+00:00'")
        cursor.execute(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s",
            (table.table.schema, table.table.name),
        )
        types = {
            name: _MyColumn(name, data_type.lower(), column_type.lower())
            for name, data_type, column_type in cursor.fetchall()
        }
        cursor.close()
        self.types = types
        self.relation = (f"{_my_ident(table.table.schema)}." if table.table.schema else "") + _my_ident(
            table.table.name
        )
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
        self.local_columns = {
            public
            for public, source in table.columns.items()
            if types[source].data_type == "datetime" and zone != "UTC"
        }
        self.columns = [
            (public, source, *self._exprs(types[source], public)) for public, source in table.columns.items()
        ]
        self.key_columns = [(public, types[source]) for public, source in zip(table.key_public, table.key_columns)]

    def _exprs(self, column: _MyColumn, public: str) -> tuple[str, str, str]:
        x = f"s.{_my_ident(column.name)}"
        path = _my_literal(_my_path(public))
        pj = f"JSON_EXTRACT(r.d, {path})"
        kind = f"JSON_TYPE({pj})"
        p = f"JSON_UNQUOTE({pj})"
        t = column.data_type

        def check(kinds: str, expr: str) -> str:
            return (
                f"CASE WHEN {pj} IS NULL THEN '{MISSING}' WHEN {kind} = 'NULL' THEN NULL "
                f"WHEN {kind} NOT IN ({kinds}) THEN CONCAT('{WRONG_KIND}', {kind}) ELSE {expr} END"
            )

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
                same_instant = (
                    f"CONVERT_TZ({x}, {zone}, {utc}) IS NOT NULL AND NOT (CONVERT_TZ({x}, {zone}, {utc}) <=> {x}) "
                    f"AND CONVERT_TZ({x}, {zone}, {utc}) <=> CONVERT_TZ({wall}, {zone}, {utc})"
                )
                published = (
                    f"CASE WHEN {p} LIKE '{LOCAL_MARK}%%' AND {same_instant} "
                    f"THEN CAST(CAST({x} AS DATETIME(6)) AS CHAR) ELSE {published} END"
                )
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
            kinds = (
                "'INTEGER','UNSIGNED INTEGER'"
                if column.data_type in _MY_INT or column.data_type == "bit"
                else "'INTEGER','DOUBLE'"
                if column.data_type in ("float", "double")
                else "'STRING'"
            )
            parts.append(f"JSON_TYPE(JSON_EXTRACT(r.k, {_my_literal(_my_path(public))})) IN ({kinds})")
        return " AND ".join(parts)

    @staticmethod
    def numeric_key(column: _MyColumn) -> bool:
        return column.data_type in _MY_INT

    def key_texts_sql(self) -> str:
        return ", ".join(
            f"CAST(s.{_my_ident(c.name)} AS CHAR)" if c.data_type not in _MY_BINARY else f"HEX(s.{_my_ident(c.name)})"
            for _p, c in self.key_columns
        )

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

    def _keys_sql(self, keys: list[bytes]) -> tuple[str, list[Any]]:
        """The published keys as a relation ``r(o, k)`` for ``_key_join``, and its parameters."""
        params: list[Any] = []
        for i, key in enumerate(keys):
            params.extend((i + 1, self._localize(key, "{}")[0].decode()))
        return "(" + " UNION ALL ".join(["SELECT %s AS o, %s AS k"] * len(keys)) + ") r", params

    def snapshot(self, keys: list[bytes]) -> None:
        """Copy the source rows of these keys into a temporary table and judge against it from now on
        (``verify.settle``)."""
        keys_sql, params = self._keys_sql(keys)
        cursor = self.connection.cursor()
        try:
            cursor.execute(f"DROP TEMPORARY TABLE IF EXISTS {SNAPSHOT_TABLE}")
            cursor.execute(
                f"CREATE TEMPORARY TABLE {SNAPSHOT_TABLE} AS SELECT s.* FROM {keys_sql} "
                f"JOIN {self.relation} s ON {self._key_join()}",
                params,
            )
        finally:
            cursor.close()
        self.source_relation, self.relation = self.relation, SNAPSHOT_TABLE

    def batch(self, rows: list[tuple[bytes, str]], columns: list[int] | None = None) -> list[tuple[Any, ...]]:
        chosen = [self.columns[i] for i in (columns if columns is not None else range(len(self.columns)))]
        checks = (
            ", ".join(
                f"(({src}) <=> ({pub})), CASE WHEN ({src}) <=> ({pub}) THEN NULL ELSE {text} END"
                for _public, _source, src, pub, text in chosen
            )
            or "1"
        )
        first = self.key_columns[0][1].name
        values = " UNION ALL ".join(["SELECT %s AS o, %s AS k, %s AS d"] * len(rows))
        sql = (
            f"SELECT r.o, s.{_my_ident(first)} IS NOT NULL, {self.key_texts_sql()}, {checks} "
            f"FROM ({values}) r LEFT JOIN {self.relation} s ON {self._key_join()} AND {self.live} ORDER BY r.o"
        )
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
