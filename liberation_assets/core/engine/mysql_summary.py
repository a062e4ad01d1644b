"""MySQL/MariaDB CDC: where a source's position lives, which streams it feeds, and the numbers of a run."""

from __future__ import annotations

from dataclasses import dataclass, field

from liberation_assets.core.engine.summary import counters
from liberation_assets.core.engine.writer import WriteResult
from liberation_assets.core.readers.binlog.position import BinlogPosition


@dataclass
class CdcSummary:
    """Numbers about one run, per stream and for the source, for the CLI and Dagster metadata."""

    results: dict[str, WriteResult] = field(default_factory=dict)
    snapshot_rows: dict[str, int] = field(default_factory=dict)
    transactions: int = 0
    snapshot_lock_ms: float = 0.0
    snapshot_started_s: float | None = None
    snapshot_finished_s: float | None = None
    reconciled_deletes: int = 0
    position: BinlogPosition | None = None
    bytes_behind: int = 0
    ddl: int = 0
    truncated: list[str] = field(default_factory=list)
    skipped_as_published: int = 0
    seconds: float = 0.0
    """How long ``follow`` ran (set by the coordinator)."""

    def result(self, name: str) -> WriteResult:
        return self.results.setdefault(name, WriteResult())

    def stream_metadata(self, name: str) -> dict[str, int | float]:
        r = self.results.get(name, WriteResult())
        data: dict[str, int | float] = {
            **counters(
                published=r.published,
                quarantined=r.quarantined,
                deletes=r.deletes,
                kafka_transactions=self.transactions,
            ),
            "snapshot_rows": self.snapshot_rows.get(name, 0),
            "truncates_seen": self.truncated.count(name),
        }
        data.update(r.lag_metadata())
        return data

    def metadata(self) -> dict[str, int | float]:
        data: dict[str, int | float] = {
            **counters(
                published=sum(r.published for r in self.results.values()),
                quarantined=sum(r.quarantined for r in self.results.values()),
                deletes=sum(r.deletes for r in self.results.values()),
                kafka_transactions=self.transactions,
            ),
            "snapshot_rows": sum(self.snapshot_rows.values()),
            "snapshot_lock_ms": round(self.snapshot_lock_ms, 3),
            "reconciled_deletes": self.reconciled_deletes,
            "binlog_bytes_behind": self.bytes_behind,
            "ddl_events": self.ddl,
            "skipped_as_published": self.skipped_as_published,
        }
        if self.snapshot_started_s is not None and self.snapshot_finished_s is not None:
            data["snapshot_seconds"] = round(self.snapshot_finished_s - self.snapshot_started_s, 3)
        if self.position is not None:
            data["binlog_file_index"] = self.position.coordinates[0]
            data["binlog_pos"] = self.position.pos
            if self.position.ts_ms is not None:
                data["last_event_epoch_ms"] = self.position.ts_ms
        return data

    def describe(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.metadata().items())
