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

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy.engine import Engine

from liberation_assets.core.readers.table import ProjectedTable
from liberation_assets.core.verify.server_common import MISSING, digest
from liberation_assets.core.verify.server_my import MyComparer
from liberation_assets.core.verify.server_pg import PgComparer

BATCH_ROWS = 1000
MAX_DETAILS = 200
"""Column differences kept with their values; the keys of every difference are kept."""
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


def server_compare(
    engine: Engine,
    table: ProjectedTable,
    zone: str,
    deleted_when: str,
    replica: ReplicaRows,
    *,
    batch_rows: int = BATCH_ROWS,
    max_details: int = MAX_DETAILS,
) -> tuple[int, int, ServerVerdict, list[bytes]]:
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
        comparer: Any = (PgComparer if postgres else MyComparer)(driver, table, zone, deleted_when)
        for rows in _batches(replica(), batch_rows):
            replica_rows += len(rows)
            _judge(comparer, rows, verdict, max_details, postgres)
        source_rows = 0
        missing: list[bytes] = []
        key_public = [public for public, _c in comparer.key_columns]
        numeric = [comparer.numeric_key(column) for _p, column in comparer.key_columns]
        for texts in comparer.source_keys():
            source_rows += 1
            if digest(texts) not in verdict.matched_keys:  # named as the stream would key it: integers as numbers
                missing.append(
                    orjson.dumps(
                        {p: int(t) if n and t is not None else t for p, t, n in zip(key_public, texts, numeric)}
                    )
                )
        return source_rows, replica_rows, verdict, sorted(missing)
    finally:
        raw.close()


def _judge(
    comparer: Any, rows: list[tuple[bytes, str]], verdict: ServerVerdict, max_details: int, postgres: bool
) -> None:
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

    return isinstance(
        exc,
        (
            psycopg.errors.DataError,
            psycopg.errors.InvalidTextRepresentation,
            psycopg.errors.DatatypeMismatch,
            psycopg.errors.InvalidParameterValue,
            psycopg.errors.SyntaxError,
        ),
    )


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
                verdict.details.append(
                    ColumnDifference(
                        key.decode(),
                        public,
                        text,
                        published.get(public, MISSING),
                        f"the server cannot read it: {str(exc).splitlines()[0]}",
                    )
                )
            continue
        if not result[2 + nkeys]:
            differs = True
            if len(verdict.details) < max_details:
                verdict.details.append(
                    ColumnDifference(key.decode(), public, result[3 + nkeys], published.get(public, MISSING))
                )
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
    found = digest(result[2 : 2 + nkeys])
    if found in verdict.matched_keys:
        verdict.extra.append(key)
        return False
    verdict.matched_rows += 1
    verdict.matched_keys.add(found)
    return True


def _record(
    comparer: Any,
    key: bytes,
    doc: str,
    result: tuple[Any, ...],
    nkeys: int,
    indexes: list[int],
    verdict: ServerVerdict,
    max_details: int,
) -> None:
    if not _matched(key, result, nkeys, verdict):
        return
    checks = result[2 + nkeys :]
    failed = [i for n, i in enumerate(indexes) if not checks[2 * n]]
    if not failed:
        return
    verdict.different.append(key)
    published = orjson.loads(doc)
    for n, i in enumerate(indexes):
        if not checks[2 * n] and len(verdict.details) < max_details:
            public = comparer.columns[i][0]
            verdict.details.append(
                ColumnDifference(key.decode(), public, checks[2 * n + 1], published.get(public, MISSING))
            )


# ---------------------------------------------------------------- re-judging keys against a copy of their rows


class CannotCopy(Exception):
    """The source refused the temporary copy of the keys' rows (``judge_versions``)."""


Versions = dict[bytes, list[str | None]]
"""Key (sorted key JSON) → the after-images the stream published for it, in order (None: deleted)."""


def judge_versions(
    engine: Engine,
    table: ProjectedTable,
    zone: str,
    deleted_when: str,
    keys: list[bytes],
    versions_after_copy: Callable[[], Versions | None],
) -> set[bytes] | None:
    """The keys one of whose published versions the source server recognises as its row at the copy.

    The keys' source rows are copied first (a temporary table); ``versions_after_copy`` is called right after
    and returns each key's candidate versions (or None: no verdict).  A key whose row the copy has is settled by
    a version equal to it in every column; a key the copy lacks (deleted or never there) by a delete.
    """
    raw = engine.raw_connection()
    driver: Any = raw.driver_connection
    raw.detach()  # its temporary table and session settings must not go back to the pool
    try:
        postgres = engine.dialect.name == "postgresql"
        if postgres:
            driver.autocommit = True  # a refused cast must not abort the next query
        comparer: Any = (PgComparer if postgres else MyComparer)(driver, table, zone, deleted_when)
        try:
            comparer.snapshot(keys)
        except Exception as exc:  # no right to create a temporary table, say: no re-check, not a failed verify
            raise CannotCopy(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc
        versions = versions_after_copy()
        if versions is None:
            return None
        in_copy = {
            key
            for batch in _batches(((key, "{}") for key in keys), BATCH_ROWS)
            for (key, _doc), result in zip(batch, comparer.batch(batch, []))
            if result[1]
        }
        settled: set[bytes] = set()
        rows: list[tuple[bytes, str]] = []
        for key in keys:
            candidates = versions.get(canonical_key_json(key), [])
            if key not in in_copy:
                if None in candidates:
                    settled.add(key)
                continue
            rows.extend((key, doc) for doc in candidates if doc is not None)
        for batch in _batches(rows, BATCH_ROWS):
            settled.update(key for key, _doc in _equal_in_every_column(comparer, batch, postgres))
        return settled
    finally:
        raw.close()


def _equal_in_every_column(comparer: Any, rows: list[tuple[bytes, str]], postgres: bool) -> list[tuple[bytes, str]]:
    """The rows the server finds equal to its own in every column; one it cannot read is simply not equal."""
    try:
        results = comparer.batch(rows)
    except Exception as exc:  # a value the server cannot read in its column's type: split until it is found
        if not postgres or not _is_data_error(exc):
            raise
        if len(rows) == 1:
            return []
        middle = len(rows) // 2
        return _equal_in_every_column(comparer, rows[:middle], postgres) + _equal_in_every_column(
            comparer, rows[middle:], postgres
        )
    nkeys = len(comparer.key_columns)
    return [row for row, result in zip(rows, results) if result[1] and all(result[2 + nkeys :][0::2])]


def canonical_key_json(key: bytes) -> bytes:
    """A key JSON with sorted members: the same key gives the same bytes, however it was written."""
    return orjson.dumps(orjson.loads(key), option=orjson.OPT_SORT_KEYS)
