"""Compare a stream's replica with its source: the differing keys, columns and values.

``compare_with_source`` is what ``liberation verify`` and ``matches_source``
use: the source database server judges each published value (see ``server``),
so a conversion bug in liberation cannot hide behind the same conversion on
both sides.

The hash comparison below (``compare_hashed``) compares two streams of row
hashes; it is kept for comparing two sides that are both JSON, such as two
replicas.

``compare_hashed`` keeps memory bounded for tables of any size.  Each side is
streamed once into per-bucket sums of (key, row hash) digests, the bucket
chosen by the key alone, so a key lands in the same bucket on both sides.
Only buckets whose sums differ are read again, key by key, to name the
differing keys; at most ``max_buckets`` of them, so a replica that differs
everywhere (an empty one, say) never loads the whole table into memory.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from liberation_assets.core.contract.formats import canonical_key, decode_value
from liberation_assets.core.contract.serialize import dumps, normalize_row
from liberation_assets.core.publish.positions import read_latest
from liberation_assets.core.readers.table import DELETED_LABEL, ProjectedTable
from liberation_assets.core.verify.server import ColumnDifference, ReplicaRows, server_compare

BUCKETS = 4096
MAX_EXAMINED_BUCKETS = 32
_MASK = (1 << 64) - 1

HashedRows = Callable[[], Iterable[tuple[bytes, str]]]
"""Calling it streams (key, row hash) pairs of one side; the comparison may call it twice."""


def topic_state(bootstrap_servers: str, topic: str) -> dict[bytes, dict[str, Any]]:
    """Key → after-image of every live key, from the topic's compacted view (read_committed)."""
    state: dict[bytes, dict[str, Any]] = {}
    for key, value in read_latest(bootstrap_servers, topic).items():
        envelope = decode_value(value) or {}  # any value format
        if envelope.get("after") is not None:
            state[canonical_key(key)] = envelope["after"]
    return state


def _is_deleted(value: Any, deleted_when: str) -> bool:
    if value is None or value is False:
        return False
    return bool(value) if deleted_when == "true" else True


def _source_rows(
    engine: Engine, table: ProjectedTable, zone: ZoneInfo, deleted_when: str
) -> Iterator[tuple[bytes, bytes]]:
    """(key, row JSON) of every live source row, serialized the way the stream serializes it."""
    query = sa.select(*table.select_list(with_cursor=False)).order_by(*table.key_exprs)
    with engine.connect() as connection:
        for mapping in connection.execution_options(stream_results=True, yield_per=10_000).execute(query).mappings():
            row = normalize_row(dict(mapping), zone)
            if _is_deleted(row.pop(DELETED_LABEL, None), deleted_when):
                continue  # soft-deleted rows are deletes in the stream
            yield dumps({k: row[k] for k in table.key_public}), dumps(row)


def source_state(
    engine: Engine, table: ProjectedTable, zone: ZoneInfo, deleted_when: str = "not_null"
) -> dict[bytes, dict[str, Any]]:
    """Key → projected row of the source, serialized the way the stream serializes it."""
    return {key: orjson.loads(row) for key, row in _source_rows(engine, table, zone, deleted_when)}


def source_hashes(
    engine: Engine, table: ProjectedTable, zone: ZoneInfo, deleted_when: str = "not_null"
) -> Iterator[tuple[bytes, str]]:
    """(key, row hash) of every live source row, streamed."""
    for key, row in _source_rows(engine, table, zone, deleted_when):
        yield key, row_hash(orjson.loads(row))


def row_hash(row: dict[str, Any]) -> str:
    return document_hash(canonical(row))


def canonical(row: dict[str, Any]) -> bytes:
    """The row's JSON with sorted keys: equal rows give equal bytes."""
    return orjson.dumps(row, option=orjson.OPT_SORT_KEYS)


def document_hash(document: bytes) -> str:
    return hashlib.blake2b(document, digest_size=12).hexdigest()


def bucket_of(key: bytes) -> int:
    return zlib.crc32(key) % BUCKETS


def _digest(key: bytes, hash_: str) -> int:
    return int.from_bytes(hashlib.blake2b(key + b"\x00" + hash_.encode(), digest_size=8).digest(), "big")


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
    differing_buckets: int = 0
    """Key buckets whose digests differ (``compare_hashed``); 0 when every row matches."""
    examined_buckets: int = 0
    """How many of those were read key by key to fill the lists above."""
    details: list[ColumnDifference] = field(default_factory=list)
    """The differing values (key, column, the source server's text, the published value), the first ones."""

    @property
    def matches(self) -> bool:
        return not (self.missing or self.extra or self.different or self.differing_buckets)

    @property
    def partial(self) -> bool:
        """The key lists cover only some differing buckets: the counts are a lower bound."""
        return self.examined_buckets < self.differing_buckets

    @property
    def differing_keys(self) -> list[str]:
        return [k.decode() for k in (self.missing + self.extra + self.different)]

    def metadata(self) -> dict[str, int]:
        """Numbers only, so the UI plots them."""
        return {
            "source_rows": self.source_rows,
            "replica_rows": self.replica_rows,
            "missing_keys": len(self.missing),
            "extra_keys": len(self.extra),
            "different_keys": len(self.different),
            "different_buckets": self.differing_buckets,
            "different_values": len(self.details),
        }

    def describe(self, limit: int = 10) -> str:
        if self.matches:
            return f"replica matches source: {self.source_rows} rows"
        parts = [f"source {self.source_rows} rows, replica {self.replica_rows} rows"]
        for label, keys in (
            ("missing from replica", self.missing),
            ("not in source", self.extra),
            ("different", self.different),
        ):
            if keys:
                shown = ", ".join(k.decode() for k in keys[:limit])
                parts.append(f"{len(keys)} {label}: {shown}{' …' if len(keys) > limit else ''}")
        if self.partial:
            parts.append(f"keys listed from {self.examined_buckets} of {self.differing_buckets} differing key buckets")
        text = "; ".join(parts)
        if self.details:
            text += "\n" + "\n".join("  " + d.describe() for d in self.details[:limit])
            if len(self.details) > limit:
                text += f"\n  … {len(self.details) - limit} more differing values"
        return text


def compare_with_source(
    engine: Engine, table: ProjectedTable, zone: str, replica: ReplicaRows, deleted_when: str = "not_null"
) -> Comparison:
    """The replica judged by the source server, value by value (``server``)."""
    source_rows, replica_rows, verdict, missing = server_compare(engine, table, zone, deleted_when, replica)
    return Comparison(
        source_rows=source_rows,
        replica_rows=replica_rows,
        missing=missing,
        extra=sorted(verdict.extra),
        different=sorted(verdict.different),
        details=verdict.details,
    )


def compare(source: dict[bytes, dict[str, Any]], replica: dict[bytes, dict[str, Any]]) -> Comparison:
    """Compare two in-memory states (key → row)."""
    return _diff({k: row_hash(v) for k, v in source.items()}, {k: row_hash(v) for k, v in replica.items()})


def _diff(source: dict[bytes, str], replica: dict[bytes, str]) -> Comparison:
    result = Comparison(source_rows=len(source), replica_rows=len(replica))
    for key, hash_ in source.items():
        other = replica.get(key)
        if other is None:
            result.missing.append(key)
        elif other != hash_:
            result.different.append(key)
    result.extra = [key for key in replica if key not in source]
    for keys in (result.missing, result.extra, result.different):
        keys.sort()
    return result


@dataclass
class _BucketSums:
    rows: int = 0
    sums: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    counts: list[int] = field(default_factory=lambda: [0] * BUCKETS)

    def add_all(self, pairs: Iterable[tuple[bytes, str]]) -> None:
        sums, counts = self.sums, self.counts
        for key, hash_ in pairs:
            bucket = zlib.crc32(key) % BUCKETS
            sums[bucket] = (sums[bucket] + _digest(key, hash_)) & _MASK
            counts[bucket] += 1
            self.rows += 1


def _in_buckets(pairs: Iterable[tuple[bytes, str]], buckets: set[int]) -> dict[bytes, str]:
    return {key: hash_ for key, hash_ in pairs if zlib.crc32(key) % BUCKETS in buckets}


def compare_hashed(source: HashedRows, replica: HashedRows, *, max_buckets: int = MAX_EXAMINED_BUCKETS) -> Comparison:
    """Compare two sides given as streams of (key, row hash), in bounded memory."""
    left, right = _BucketSums(), _BucketSums()
    left.add_all(source())
    right.add_all(replica())
    differing = [b for b in range(BUCKETS) if left.sums[b] != right.sums[b] or left.counts[b] != right.counts[b]]
    examined = set(differing[:max_buckets])
    if examined:
        result = _diff(_in_buckets(source(), examined), _in_buckets(replica(), examined))
    else:
        result = Comparison(0, 0)
    result.source_rows, result.replica_rows = left.rows, right.rows
    result.differing_buckets, result.examined_buckets = len(differing), len(examined)
    return result
