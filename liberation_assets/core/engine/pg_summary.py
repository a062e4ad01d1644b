"""PostgreSQL CDC: where a source's position lives, which streams it feeds, and the numbers of a run."""

from __future__ import annotations

from dataclasses import dataclass, field

from liberation_assets.core.contract.serialize import now_ms
from liberation_assets.core.engine.summary import counters
from liberation_assets.core.engine.writer import WriteResult
from liberation_assets.core.readers import pg_slot


@dataclass
class CdcSummary:
    """Numbers about one run, for the CLI and for Dagster metadata."""

    result: WriteResult = field(default_factory=WriteResult)
    per_stream: dict[str, int] = field(default_factory=dict)
    snapshot_rows: int = 0
    db_transactions: int = 0
    lsn: int = 0
    last_commit_ms: int | None = None
    slot: pg_slot.SlotInfo | None = None
    seconds: float = 0.0

    def add(self, stream: str, result: WriteResult) -> None:
        self.result.add(result)
        self.per_stream[stream] = self.per_stream.get(stream, 0) + result.published

    def metadata(self, stream: str | None = None) -> dict[str, int | float]:
        r = self.result
        data: dict[str, int | float] = {
            **counters(
                published=self.per_stream.get(stream, 0) if stream else r.published,
                quarantined=r.quarantined,
                deletes=r.deletes,
                kafka_transactions=r.transactions,
            ),
            "published_all_streams": r.published,
            "db_transactions": self.db_transactions,
            "snapshot_rows": self.snapshot_rows,
            "lsn": self.lsn,
            "seconds": round(self.seconds, 3),
        }
        if self.slot is not None:
            data["lag_bytes"] = self.slot.lag_bytes
            data["retained_wal_bytes"] = self.slot.retained_wal_bytes
        if self.last_commit_ms is not None:
            data["lag_seconds"] = round(max(0, now_ms() - self.last_commit_ms) / 1000, 3)
        data.update(r.lag_metadata())
        return data

    def describe(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.metadata().items())
