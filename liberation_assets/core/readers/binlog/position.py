"""Where a binlog reader stands: a value object stored in Kafka with the events it covers.

``pos`` is always a transaction boundary, so a restart reads whole
transactions (their table maps included).  One database transaction may span
several Kafka transactions, so ``event`` adds the end position of the last rows
event already published inside the transaction that starts at ``pos``: on
restart those events are skipped, the rest published.  While a snapshot runs,
``snapshot`` records its progress per stream, so an interrupted snapshot
resumes after its last committed chunk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from liberation_assets.core.readers import codec

_FILE_INDEX = re.compile(r"\.(\d+)$")


def file_index(name: str) -> int:
    """The sequence number of a binlog file name such as ``mariadb-bin.000042``."""
    match = _FILE_INDEX.search(name)
    return int(match.group(1)) if match else -1


def coordinates_key(file: str, pos: int) -> tuple[int, int]:
    """Binlog coordinates in log order."""
    return (file_index(file), pos)


@dataclass(frozen=True)
class StreamSnapshot:
    """One stream's snapshot progress."""

    after_key: tuple[Any, ...] | None = None
    rows: int = 0
    chunks_done: bool = False
    start_offsets: dict[int, int] = field(default_factory=dict)
    """The topic's end offsets when the snapshot began: keys whose latest record is older were not re-read."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "after_key": codec.encode_all(self.after_key) if self.after_key is not None else None,
            "rows": self.rows,
            "chunks_done": self.chunks_done,
            "start_offsets": {str(p): o for p, o in self.start_offsets.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StreamSnapshot":
        after = data.get("after_key")
        return cls(
            after_key=codec.decode_all(after) if after is not None else None,
            rows=int(data.get("rows", 0)),
            chunks_done=bool(data.get("chunks_done", False)),
            start_offsets={int(p): int(o) for p, o in (data.get("start_offsets") or {}).items()},
        )


@dataclass(frozen=True)
class BinlogPosition:
    """The resumable position of one source's binlog reader."""

    file: str
    pos: int
    event: int = 0
    """End position of the last published rows event of the transaction starting at ``pos``; 0 for none."""
    gtid: str | None = None
    server_id: int | None = None
    ts_ms: int | None = None
    """Event time of the last change covered."""
    streams: tuple[str, ...] = ()
    """Streams whose snapshot is complete and whose changes are streamed from here."""
    snapshot: dict[str, StreamSnapshot] | None = None
    """Streams still being snapshotted, or None."""
    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Source columns each stream without a projection was snapshotted with: DDL that changes them re-reads it."""

    @property
    def coordinates(self) -> tuple[int, int]:
        return coordinates_key(self.file, self.pos)

    def describe(self) -> str:
        return f"{self.file}:{self.pos}" + (f" (gtid {self.gtid})" if self.gtid else "")

    def with_snapshot(self, name: str, progress: StreamSnapshot) -> "BinlogPosition":
        return replace(self, snapshot={**(self.snapshot or {}), name: progress})

    def snapshot_finished(self) -> "BinlogPosition":
        """Every snapshotted stream joins the streamed ones."""
        done = tuple(sorted(set(self.streams) | set(self.snapshot or {})))
        return replace(self, streams=done, snapshot=None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "pos": self.pos,
            "event": self.event,
            "gtid": self.gtid,
            "server_id": self.server_id,
            "ts_ms": self.ts_ms,
            "streams": list(self.streams),
            "snapshot": {n: s.to_dict() for n, s in self.snapshot.items()} if self.snapshot is not None else None,
            "columns": {n: list(c) for n, c in self.columns.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BinlogPosition":
        snapshot = data.get("snapshot")
        return cls(
            file=data["file"],
            pos=int(data["pos"]),
            event=int(data.get("event", 0)),
            gtid=data.get("gtid"),
            server_id=data.get("server_id"),
            ts_ms=data.get("ts_ms"),
            streams=tuple(data.get("streams") or ()),
            snapshot={n: StreamSnapshot.from_dict(s) for n, s in snapshot.items()} if snapshot is not None else None,
            columns={n: tuple(c) for n, c in (data.get("columns") or {}).items()},
        )
