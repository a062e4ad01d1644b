"""Run the query-based pattern for one stream: snapshot, incremental poll, delete reconciliation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from liberation_assets.core.contract.formats import canonical_key, decode_key, decode_value
from liberation_assets.core.contract.serialize import dumps, now_ms, to_epoch_ms
from liberation_assets.core.engine.runtime import StreamRuntime, position_key
from liberation_assets.core.engine.summary import counters
from liberation_assets.core.engine.writer import WriteResult
from liberation_assets.core.events import DELETE, ChangeBatch, ChangeEvent
from liberation_assets.core.publish.positions import read_latest
from liberation_assets.core.readers.ceiling import read_ceiling
from liberation_assets.core.readers.pg_types import Unconvertible
from liberation_assets.core.readers.query import PollStats, QueryPosition, poll_batches
from liberation_assets.core.readers.rows import key_converter
from liberation_assets.core.readers.snapshot import SnapshotPosition, snapshot_batches
from liberation_assets.core.readers.sql import key_set_query
from liberation_assets.core.readers.table import ProjectedTable, reflect_stream_table
from liberation_assets.core.spec import Spec

ProgressCallback = Callable[[int, int | None], None]
"""Called after each committed batch with (rows so far, estimated total or None)."""

DEFAULT_REREAD_WINDOW = timedelta(seconds=2)


@dataclass
class RunSummary:
    """Numbers about one run, for the CLI and for Dagster metadata."""

    result: WriteResult = field(default_factory=WriteResult)
    watermark_ms: int | None = None
    ceiling_lag_seconds: float = 0.0
    rows_total: int = 0
    done: bool = True
    skipped_as_seen: int = 0

    def metadata(self) -> dict[str, float | int]:
        r = self.result
        data: dict[str, float | int] = {
            **counters(
                published=r.published, quarantined=r.quarantined, deletes=r.deletes, kafka_transactions=r.transactions
            ),
            "ceiling_lag_seconds": round(self.ceiling_lag_seconds, 3),
            "rows_total": self.rows_total,
        }
        if self.watermark_ms is not None:
            data["watermark_epoch_ms"] = self.watermark_ms
        data.update(r.lag_metadata())
        return data


class QueryPattern:
    """Snapshot, incremental polling and reconciliation of one stream."""

    def __init__(self, spec: Spec, stream_name: str):
        self.spec = spec
        self.name = stream_name
        self.stream = spec.streams[stream_name]
        self.source = spec.sources[self.stream.source]
        self.runtime = StreamRuntime(spec, stream_name, "query")
        self._snapshot_runtimes: dict[str | None, StreamRuntime] = {}
        self._table: ProjectedTable | None = None
        self._committed_watermark: dict[str, Any] | None = None
        """The last watermark this process committed: we are its only writer (Kafka fences others)."""

    def snapshot_runtime(self, part: str | None) -> StreamRuntime:
        """Snapshots publish with their own transactional id (one per partition), so they run beside polls."""
        if part not in self._snapshot_runtimes:
            suffix = f".{part}" if part else ""
            runtime = StreamRuntime(self.spec, self.name, "snapshot", transactional_suffix=suffix)
            # The stream's engine (one connection pool) and schema version, not a second of each: the schema
            # gate reads the schema topic and the catalog, ~0.3 s a stream (issue 18), and decides the same.
            runtime.__dict__["engine"] = self.runtime.engine
            runtime.__dict__["schema"] = self.runtime.schema
            self._snapshot_runtimes[part] = runtime
        return self._snapshot_runtimes[part]

    @property
    def table(self) -> ProjectedTable:
        if self._table is None:
            self._table = reflect_stream_table(self.runtime.engine, self.stream, self.name, self.runtime.identity.zone)
        return self._table

    def close(self) -> None:
        self.runtime.close()
        for runtime in self._snapshot_runtimes.values():
            runtime.close()

    # -- snapshot ---------------------------------------------------------------------------------------
    def snapshot(
        self,
        *,
        key_range: tuple[Any, Any] | None = None,
        part: str | None = None,
        progress: ProgressCallback | None = None,
        restart: bool = False,
    ) -> RunSummary:
        """Snapshot the table, resuming from the last committed chunk; a finished snapshot is only retaken with ``restart``."""
        runtime = self.snapshot_runtime(part)
        key = position_key(self.name, "snapshot", part)
        stored = None if restart else runtime.positions_for(key)
        start = SnapshotPosition.from_dict(stored)
        if start.done:
            # Finished before (perhaps just before a crash): rerunning must not publish it twice.
            return RunSummary(rows_total=start.rows, done=True)
        if start.incremental_from is None:
            start = SnapshotPosition(start.after_key, start.rows, False, self._ceiling_value())
        summary = RunSummary(rows_total=start.rows)
        estimate = self._estimate_rows()
        for batch in snapshot_batches(
            runtime.engine,
            self.table,
            position_key=key,
            start=start,
            chunk_size=self.stream.snapshot_chunk,
            zone=runtime.identity.zone,
            key_range=key_range,
        ):
            summary.result.add(runtime.writer.write(batch, unique_key=True))
            summary.rows_total = batch.position.value["rows"] if batch.position else summary.rows_total
            if progress:
                progress(summary.rows_total, estimate)
        summary.done = True
        return summary

    def _ceiling_value(self) -> Any:
        with self.runtime.engine.connect() as connection:
            ceiling = read_ceiling(connection, skew=self.source.clock_skew, safety_lag=self._safety_lag())
        return (
            ceiling.for_column(self.table.cursor_is_naive, self.runtime.identity.zone) if self.stream.cursor else None
        )

    def _estimate_rows(self) -> int | None:
        try:
            with self.runtime.engine.connect() as connection:
                return int(connection.execute(sa.select(sa.func.count()).select_from(self.table.table)).scalar_one())
        except sa.exc.DBAPIError:
            return None

    # -- incremental ------------------------------------------------------------------------------------
    def _safety_lag(self) -> timedelta:
        if self.stream.safety_lag is not None:
            return self.stream.safety_lag
        return self.source.safety_lag

    def _reread_window(self) -> timedelta:
        if self.source.dialect == "postgresql":
            return timedelta(0)  # the ceiling is exact there
        return max(self._safety_lag(), DEFAULT_REREAD_WINDOW)

    def incremental(self, *, progress: ProgressCallback | None = None) -> RunSummary:
        """One poll: publish every row changed since the watermark and below the ceiling."""
        runtime = self.runtime
        stored = self._committed_watermark or runtime.positions_for(position_key(self.name, "query"))
        start = QueryPosition.from_dict(stored)
        if stored is None:
            start = QueryPosition(since=self._snapshot_start())
        stats = PollStats()
        summary = RunSummary(rows_total=start.rows)
        deleted_when = self.stream.soft_delete.deleted_when if self.stream.soft_delete else "not_null"
        last_after = start.after
        for batch in poll_batches(
            runtime.engine,
            self.table,
            position_key=position_key(self.name, "query"),
            start=start,
            batch_size=self.stream.batch_size,
            zone=runtime.identity.zone,
            skew=self.source.clock_skew,
            safety_lag=self._safety_lag(),
            reread_window=self._reread_window(),
            stats=stats,
            deleted_when=deleted_when,
        ):
            summary.result.add(runtime.writer.write(batch, unique_key=True))  # a poll reads each row once
            self._committed_watermark = batch.position.value if batch.position else self._committed_watermark
            last_after = QueryPosition.from_dict(batch.position.value).after if batch.position else last_after
            summary.rows_total = batch.position.value["rows"] if batch.position else summary.rows_total
            if progress:
                progress(summary.result.published, None)
        if stats.ceiling is not None:
            summary.ceiling_lag_seconds = stats.ceiling.lag_seconds
        summary.skipped_as_seen = stats.skipped_as_seen
        if last_after is not None and last_after[0] is not None:
            summary.watermark_ms = to_epoch_ms(last_after[0], runtime.identity.zone)
        return summary

    def _snapshot_start(self) -> Any:
        """Where the first poll starts: the earliest ceiling recorded by the snapshot or any of its partitions."""
        _ = self.runtime.writer  # fence first, so the positions read are committed ones
        prefix = position_key(self.name, "snapshot")
        starts = [
            SnapshotPosition.from_dict(value).incremental_from
            for key, value in self.runtime.positions.load(prefix).items()
            if key == prefix or key.startswith(prefix + "/")
        ]
        starts = [s for s in starts if s is not None]
        return min(starts) if starts else None

    # -- reconciliation ---------------------------------------------------------------------------------
    def reconcile(self) -> RunSummary:
        """Publish a delete and a tombstone for every key live in the topic but gone from the source.

        It shares the incremental poll's transactional id, so Kafka fences one
        against the other: a poll can never commit between our read of the
        source keys and our deletes.
        """
        runtime = self.runtime
        writer = runtime.writer  # fences a concurrent poll of this stream
        live = {k: v for k, v in read_latest(runtime.bootstrap, runtime.topic).items() if _is_live(v)}
        zone = runtime.identity.zone
        with runtime.engine.connect() as connection:
            rows = connection.execute(key_set_query(self.table)).mappings()
            # A key the type mapping refuses was never published (its row is in the quarantine): nothing to match.
            published_key = key_converter(self.table, zone)
            source_keys = {
                dumps(published_key(dict(row)))
                for row in rows
                if not any(isinstance(value, Unconvertible) for value in row.values())
            }
        vanished = [k for k in live if canonical_key(k) not in source_keys]
        summary = RunSummary()
        ts = now_ms()
        for start in range(0, len(vanished), self.stream.batch_size):
            events = []
            for raw_key in vanished[start : start + self.stream.batch_size]:
                previous = decode_value(live[raw_key]) or {}
                events.append(
                    ChangeEvent(
                        DELETE,
                        decode_key(raw_key),
                        previous.get("after"),
                        None,
                        ts,
                        {"snapshot": "false", "reconciliation": True},
                    )
                )
            summary.result.add(writer.write(ChangeBatch(events, None)))
        return summary


def _is_live(value: bytes) -> bool:
    return (decode_value(value) or {}).get("op") != DELETE
