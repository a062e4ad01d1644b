"""Differences of a continuous log-based stream judged again once the stream has passed the source's log position.

A stream that a follower (``liberation follow``, ``mode: continuous``) keeps
publishing is compared with a source that keeps changing: the source table
and the topic are read at slightly different moments, so a row changed in
between differs for a moment without anything being wrong.

So the keys the comparison found different are judged again (``settle``):

1. the replica's current version of each key is noted;
2. their source rows are copied into a temporary table (``snapshot`` of the
   server comparers), and the source's log position taken right after the
   copy (PostgreSQL ``pg_current_wal_insert_lsn()``, MariaDB's binlog
   coordinates): every commit the copy saw lies below it;
3. wait (bounded, ``SettleSettings``) until the stream's stored position (the
   positions topic, committed in the same transaction as the events) has
   passed it, then catch the replica up, keeping every version of those keys
   the topic carried since step 1;
4. the source server judges those versions against the copy: a correct
   stream published the copied row (or its delete) by then, so a key with such
   a version is no difference, even if it was written again meanwhile and the
   replica already holds a newer version.  A key with none is a real difference.

Keys are not re-read in rounds: the versions in the topic cover any update
made during the wait, so one pass decides.  A stream that does not pass the
position in time leaves its keys as lag (``LagReport.behind_source``): a
stopped follower is a freshness failure, not a wrong row.

A micro-batch stream only moves when a run happens, so waiting for it proves
nothing: its differences stay as the comparison found them (``verify`` is
meant to run right after its drain there).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import orjson
import sqlalchemy as sa
from confluent_kafka import Message
from sqlalchemy.engine import Engine

from liberation_assets.core.contract.formats import canonical_key, decode_value
from liberation_assets.core.engine.runtime import source_position_key
from liberation_assets.core.publish.positions import PositionStore
from liberation_assets.core.readers.pgoutput.lsn import lsn_to_int
from liberation_assets.core.readers.table import ProjectedTable
from liberation_assets.core.spec import Spec
from liberation_assets.core.verify.compare import Comparison
from liberation_assets.core.verify.server import CannotCopy, Versions, canonical_key_json, judge_versions

TIMEOUT_SECONDS = 45.0
"""The longest wait for the stream to pass the source's position; a follower publishes within a second or two, a quiet source's position moves at the next
heartbeat (``cdc.heartbeat_every``, 10 s by default)."""
POLL_SECONDS = 0.2
MAX_KEYS = 1000
"""More differing keys than this are not a moment's race between two reads: they are left as found."""

LogPosition = tuple[int, ...]


TIMEOUT_ENV = "LIBERATION_VERIFY_SETTLE_SECONDS"


@dataclass(frozen=True)
class SettleSettings:
    timeout_seconds: float = TIMEOUT_SECONDS
    poll_seconds: float = POLL_SECONDS

    @classmethod
    def from_env(cls) -> "SettleSettings":
        """``$LIBERATION_VERIFY_SETTLE_SECONDS`` sets the wait (0: no re-check, differences stay as found)."""
        value = os.environ.get(TIMEOUT_ENV)
        return cls(timeout_seconds=float(value)) if value else cls()


@dataclass
class Settled:
    """What the re-check found: the comparison limited to real differences, and the keys left as lag."""

    comparison: Comparison
    rechecked: int = 0
    """Keys the first comparison found different, judged again."""
    skipped: str = ""
    """Why the keys were not judged again, when the source did not allow it."""
    behind_source: list[bytes] = field(default_factory=list)
    """Keys left as they were because the stream did not pass the source's position in time."""


def follows_continuously(spec: Spec, stream_name: str) -> bool:
    """A cdc stream whose source a long-lived follower streams (``mode: continuous``)."""
    stream = spec.streams[stream_name]
    return "cdc" in stream.patterns and spec.sources[stream.source].mode == "continuous"


def source_log_position(engine: Engine) -> LogPosition:
    """Where the source's log is written now: every commit visible before this call lies below it."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            return (lsn_to_int(connection.execute(sa.text("SELECT pg_current_wal_insert_lsn()::text")).scalar_one()),)
        from liberation_assets.core.readers.binlog.client import current_coordinates
        from liberation_assets.core.readers.binlog.position import coordinates_key

        return coordinates_key(*current_coordinates(connection))


def stored_log_position(spec: Spec, source_name: str, dialect: str) -> LogPosition | None:
    """The stream's committed position (the positions topic): everything below it is published."""
    stored = PositionStore.for_spec(spec.kafka).get(source_position_key(source_name))
    if not stored:
        return None
    if dialect == "postgresql":
        return (int(stored["lsn"]),)
    from liberation_assets.core.readers.binlog.position import BinlogPosition

    return BinlogPosition.from_dict(stored).coordinates


def settle(
    spec: Spec,
    stream_name: str,
    comparison: Comparison,
    engine: Engine,
    table: ProjectedTable,
    zone: str,
    deleted_when: str,
    current_versions: Callable[[set[bytes]], dict[bytes, str]],
    catch_up: Callable[[Callable[[Message], None]], object],
    settings: SettleSettings | None = None,
) -> Settled:
    """Judge the differing keys again once the stream has passed the source's position (see the module).

    ``current_versions(keys)``: the replica's after-image per key (sorted key JSON); ``catch_up(on_record)``
    brings the replica up to the topic's end, showing each record read."""
    settings = settings or SettleSettings.from_env()
    keys = comparison.missing + comparison.extra + comparison.different
    settled = Settled(comparison)
    if comparison.matches or comparison.partial or not keys or len(keys) > MAX_KEYS or settings.timeout_seconds <= 0:
        return settled
    settled.rechecked = len(keys)
    source_name = spec.streams[stream_name].source
    deadline = time.monotonic() + settings.timeout_seconds
    wanted = {canonical_key_json(key) for key in keys}
    prior = current_versions(wanted)
    versions: Versions = {key: [prior.get(key)] for key in wanted}

    def keep(message: Message) -> None:
        raw = message.key()
        if not raw:
            return
        key = canonical_key_json(canonical_key(raw))
        if key in versions:
            value = message.value()
            after = (decode_value(value) or {}).get("after") if value is not None else None
            versions[key].append(orjson.dumps(after).decode() if after is not None else None)

    def versions_after_copy() -> Versions | None:
        target = source_log_position(engine)
        while True:
            stored = stored_log_position(spec, source_name, engine.dialect.name)
            if stored is not None and stored >= target:
                catch_up(keep)
                return versions
            if time.monotonic() >= deadline:
                return None
            time.sleep(settings.poll_seconds)

    try:
        equal = judge_versions(engine, table, zone, deleted_when, keys, versions_after_copy)
    except CannotCopy as exc:
        settled.rechecked, settled.skipped = 0, f"no re-check: the source refused a temporary copy ({exc})"
        return settled
    if equal is None:
        settled.behind_source = sorted(keys)
        return settled
    still = set(keys) - equal
    settled.comparison = replace(
        comparison,
        missing=[k for k in comparison.missing if k in still],
        extra=[k for k in comparison.extra if k in still],
        different=[k for k in comparison.different if k in still],
        details=[d for d in comparison.details if d.key.encode() in still],
    )
    return settled
