"""Where log-based capture of one source stands: finer than an LSN, because a
database transaction may span several Kafka transactions.

``lsn`` is the commit LSN (pgoutput's Begin ``final_lsn``) of the transaction
last published, ``index`` the last change of it published.  pgoutput resends a
whole transaction when the slot was confirmed only up to its commit, so on
restart every change at or below this position is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from liberation_assets.core.readers.pgoutput.lsn import lsn_to_str


@dataclass(frozen=True)
class TableProgress:
    """The snapshot of one stream: the last key published and whether it finished."""

    after_key: list[Any] | None = None
    """Codec-encoded key values (``readers.codec``)."""
    rows: int = 0
    done: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"after_key": self.after_key, "rows": self.rows, "done": self.done}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TableProgress":
        return cls(after_key=data.get("after_key"), rows=int(data.get("rows", 0)), done=bool(data.get("done")))


@dataclass(frozen=True)
class CdcPosition:
    lsn: int = 0
    index: int = -1
    complete: bool = False
    """The whole transaction at ``lsn`` was published (or ``lsn`` is a heartbeat between transactions)."""
    tables: dict[str, TableProgress] = field(default_factory=dict)
    slot: str = ""
    columns: dict[str, list[str]] = field(default_factory=dict)
    """Source columns of each stream that publishes every column, as last snapshotted: a column added while
    liberation was stopped shows up as a difference on the next start."""

    def skips(self, final_lsn: int, index: int) -> bool:
        """Whether the change ``index`` of the transaction committing at ``final_lsn`` was already published."""
        if final_lsn != self.lsn:
            return final_lsn < self.lsn
        return self.complete or index <= self.index

    def at(self, lsn: int, index: int, complete: bool) -> "CdcPosition":
        return replace(self, lsn=lsn, index=index, complete=complete)

    def with_table(self, stream: str, progress: TableProgress) -> "CdcPosition":
        return replace(self, tables={**self.tables, stream: progress})

    def with_columns(self, stream: str, columns: list[str]) -> "CdcPosition":
        return replace(self, columns={**self.columns, stream: list(columns)})

    def to_dict(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "lsn": self.lsn,
            "lsn_text": lsn_to_str(self.lsn),
            "index": self.index,
            "complete": self.complete,
            "tables": {name: progress.to_dict() for name, progress in sorted(self.tables.items())},
            "columns": dict(sorted(self.columns.items())),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "CdcPosition":
        if not data:
            return cls()
        return cls(
            lsn=int(data.get("lsn", 0)),
            index=int(data.get("index", -1)),
            complete=bool(data.get("complete", False)),
            tables={name: TableProgress.from_dict(p) for name, p in (data.get("tables") or {}).items()},
            slot=str(data.get("slot", "")),
            columns={name: [str(c) for c in columns] for name, columns in (data.get("columns") or {}).items()},
        )
