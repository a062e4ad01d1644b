"""What both servers' comparisons share: the markers of a value verify could not read, the key digest, the live rows."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

import orjson

from liberation_assets.core.readers.table import ProjectedTable

MISSING = "\x01missing"
WRONG_KIND = "\x01wrong JSON type "
SNAPSHOT_TABLE = "liberation_verify_snapshot"
"""The temporary table a re-check copies the differing keys' source rows into (``verify.settle``)."""
LOCAL_MARK = "\x02"
"""Marks a MariaDB DATETIME value the verify turned from the published UTC instant back into the zone's wall time."""


def digest(texts: Iterable[str | None]) -> bytes:
    return hashlib.blake2b(orjson.dumps(list(texts)), digest_size=16).digest()


def live_condition(table: ProjectedTable, deleted_when: str, is_boolean: bool, ident: Callable[[str], str]) -> str:
    if not table.soft_delete_column:
        return "true"
    column = f"s.{ident(table.soft_delete_column)}"
    if deleted_when == "true":
        return f"NOT COALESCE(CAST({column} AS boolean), false)" if is_boolean else f"COALESCE({column}, 0) = 0"
    return f"({column} IS NULL OR {column} = false)" if is_boolean else f"{column} IS NULL"
