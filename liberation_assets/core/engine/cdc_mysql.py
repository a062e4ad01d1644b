"""Log-based liberation of a MySQL/MariaDB source: a consistent snapshot, then the binlog, exactly once into Kafka.

One reader per source (``mysql_capture.MySqlCdc``) reads every CDC stream of
that source.  All records of a micro-batch, across the source's streams, and
ONE position record form one Kafka transaction of the producer
``liberation.<source>.cdc``; the position (binlog file, transaction start, last
published rows event, GTID) is stored under ``source/<name>/cdc``.  A crash
therefore loses nothing and repeats nothing: a restart reads the position
committed with the last events.

The snapshot takes no global lock on MariaDB (and only an instant one on
MySQL), is chunked, and resumes after its last committed chunk.  Streaming then
starts from the snapshot's binlog position.  When the stored position has been
purged from the server, ``PositionLost`` says so and asks for a re-snapshot:
nothing is ever skipped silently.

This module holds the entry points: ``drain`` (a scheduled run), ``follow``
(``liberation follow``, through ``coordinator.follow``) and ``log_lag`` (sensors).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from liberation_assets.core.connect import create_source_engine
from liberation_assets.core.engine import coordinator
from liberation_assets.core.engine.mysql_capture import MySqlCdc, SnapshotProgress
from liberation_assets.core.engine.mysql_summary import CdcSummary
from liberation_assets.core.engine.runtime import cdc_streams
from liberation_assets.core.engine.runtime import source_position_key as position_key
from liberation_assets.core.publish.positions import PositionStore
from liberation_assets.core.readers.binlog.client import binary_logs, bytes_behind, current_coordinates
from liberation_assets.core.readers.binlog.position import BinlogPosition
from liberation_assets.core.spec import Spec

__all__ = ["CdcSummary", "LogLag", "MySqlCdc", "cdc_streams", "drain", "follow", "log_lag", "position_key"]


def drain(
    spec: Spec, source_name: str, *, resnapshot: bool = False, progress: SnapshotProgress | None = None
) -> CdcSummary:
    """Snapshot if needed, then publish the binlog up to where the server is now; for scheduled runs."""
    cdc = MySqlCdc(spec, source_name, progress=progress)
    try:
        return cdc.run(drain=True, resnapshot=resnapshot)
    finally:
        cdc.close()


class MySqlFollow:
    """MariaDB / MySQL CDC as a ``coordinator.LogSource``: snapshot what needs it, then the binlog."""

    def __init__(self, spec: Spec, source_name: str, summary: CdcSummary, resnapshot: bool):
        self.cdc = MySqlCdc(spec, source_name)
        self.summary = summary
        self.resnapshot = resnapshot
        self._position: BinlogPosition | None = None

    def open(self, connected: Callable[[], None]) -> str:
        self._position = self.cdc.connect(resnapshot=self.resnapshot)
        connected()
        return f"liberation: following {self.cdc.name} (binlog)"

    def snapshot(self) -> None:
        self._position = self.cdc.snapshot(self._position, self.summary)

    def changes(self, until: Callable[[], bool]) -> None:
        assert self._position is not None, "snapshot() first"
        self.cdc.changes(self._position, self.summary, drain=False, until=until)

    def confirm(self, through: Any) -> None:
        """Nothing to tell the server: a binlog reader's place is the position in Kafka alone."""

    def close(self) -> None:
        self.cdc.close()


def follow(
    spec: Spec,
    source_name: str,
    duration: float | None = None,
    *,
    resnapshot: bool = False,
    give_up_after: float | None = None,
) -> int:
    """Stream continuously (``liberation follow <source>``) until the duration ends or SIGTERM (``coordinator``).

    A retriable error (broker or server away, a lost connection) reconnects with backoff from the
    position in Kafka; a permanent one raises a ``LiberationError``.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    total = CdcSummary()

    def make_source() -> MySqlFollow:
        # a reconnect resumes from what was published since, not with a new snapshot
        return MySqlFollow(spec, source_name, total, resnapshot and not total.transactions)

    coordinator.follow(
        source_name, f"source {source_name}", make_source, total, duration=duration, give_up_after=give_up_after
    )
    print(f"source {source_name}: {total.describe()}", flush=True)
    return 0


@dataclass(frozen=True)
class LogLag:
    """How far the stored position trails the server's binlog: what the sensor decides on."""

    current: tuple[str, int]
    stored: BinlogPosition | None
    bytes_behind: int

    @property
    def behind(self) -> bool:
        return self.stored is None or self.bytes_behind > 0 or self.stored.snapshot is not None


def log_lag(spec: Spec, source_name: str) -> LogLag:
    """The server's binlog position against the stored one, without starting a reader."""
    source = spec.sources[source_name]
    engine = create_source_engine(source)
    try:
        with engine.connect() as connection:
            logs = binary_logs(connection)
            current = current_coordinates(connection)
    finally:
        engine.dispose()
    store = PositionStore.for_spec(spec.kafka)
    stored = store.get(position_key(source_name))
    position = BinlogPosition.from_dict(stored) if stored else None
    if position is None:
        return LogLag(current, None, bytes_behind(logs, logs[0][0], 0) if logs else 0)
    sizes = dict(logs)
    behind = bytes_behind(logs, position.file, position.pos) if position.file in sizes else max(1, sum(sizes.values()))
    return LogLag(current, position, behind)
