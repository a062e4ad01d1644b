"""Compare a stream's topic with its source projection, row by row and value by value.

Both sides go through the same serializer, so the comparison is of exactly the
bytes a consumer would see: a difference is real, never a formatting artefact.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from liberation_assets.core.contract.serialize import dumps, normalize_row
from liberation_assets.core.publish.positions import read_latest
from liberation_assets.core.readers.table import DELETED_LABEL, ProjectedTable


def topic_state(bootstrap_servers: str, topic: str) -> dict[bytes, dict[str, Any]]:
    """Key → after-image of every live key, from the topic's compacted view (read_committed)."""
    state: dict[bytes, dict[str, Any]] = {}
    for key, value in read_latest(bootstrap_servers, topic).items():
        envelope = orjson.loads(value)
        if envelope.get("after") is not None:
            state[key] = envelope["after"]
    return state


def source_state(engine: Engine, table: ProjectedTable, zone: ZoneInfo) -> dict[bytes, dict[str, Any]]:
    """Key → projected row of the source, serialized the way the stream serializes it."""
    state: dict[bytes, dict[str, Any]] = {}
    query = sa.select(*table.select_list(with_cursor=False)).order_by(*table.key_exprs)
    with engine.connect() as connection:
        for mapping in connection.execution_options(stream_results=True, yield_per=10_000).execute(query).mappings():
            row = normalize_row(dict(mapping), zone)
            if row.pop(DELETED_LABEL, None) not in (None, False):
                continue  # soft-deleted rows are deletes in the stream
            key = dumps({k: row[k] for k in table.key_public})
            state[key] = orjson.loads(dumps(row))
    return state


def row_hash(row: dict[str, Any]) -> str:
    return hashlib.blake2b(orjson.dumps(row, option=orjson.OPT_SORT_KEYS), digest_size=12).hexdigest()


@dataclass
class Comparison:
    """Differences between the replica and the source, by key."""

    source_rows: int
    replica_rows: int
    missing: list[bytes] = field(default_factory=list)
    """In the source, not in the replica."""
    extra: list[bytes] = field(default_factory=list)
    """In the replica, not in the source."""
    different: list[bytes] = field(default_factory=list)

    @property
    def matches(self) -> bool:
        return not (self.missing or self.extra or self.different)

    @property
    def differing_keys(self) -> list[str]:
        return [k.decode() for k in (self.missing + self.extra + self.different)]

    def describe(self, limit: int = 10) -> str:
        if self.matches:
            return f"replica matches source: {self.source_rows} rows"
        parts = [f"source {self.source_rows} rows, replica {self.replica_rows} rows"]
        for label, keys in (("missing from replica", self.missing), ("not in source", self.extra), ("different", self.different)):
            if keys:
                shown = ", ".join(k.decode() for k in keys[:limit])
                parts.append(f"{len(keys)} {label}: {shown}{' …' if len(keys) > limit else ''}")
        return "; ".join(parts)


def compare(source: dict[bytes, dict[str, Any]], replica: dict[bytes, dict[str, Any]]) -> Comparison:
    result = Comparison(source_rows=len(source), replica_rows=len(replica))
    for key, row in source.items():
        other = replica.get(key)
        if other is None:
            result.missing.append(key)
        elif row_hash(row) != row_hash(other):
            result.different.append(key)
    result.extra = [key for key in replica if key not in source]
    for keys in (result.missing, result.extra, result.different):
        keys.sort()
    return result
