"""The resumable, chunked snapshot of one table, through its projection.

Chunks are read in key order with keyset pagination, so memory holds one chunk
at most.  Each chunk is one Kafka transaction together with the snapshot's
position (the last key published), so a killed snapshot resumes after its last
committed chunk instead of starting over.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine

from liberation_assets.core.events import READ, ChangeBatch, Position
from liberation_assets.core.readers import codec
from liberation_assets.core.readers.rows import events_from_rows
from liberation_assets.core.readers.sql import snapshot_chunk_query
from liberation_assets.core.readers.table import ProjectedTable


@dataclass(frozen=True)
class SnapshotPosition:
    """Progress of one snapshot: the last key published and whether it finished."""

    after_key: tuple[Any, ...] | None = None
    rows: int = 0
    done: bool = False
    incremental_from: Any = None
    """The ceiling read before the snapshot began: incremental polling starts there."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "after_key": codec.encode_all(self.after_key) if self.after_key is not None else None,
            "rows": self.rows,
            "done": self.done,
            "incremental_from": codec.encode(self.incremental_from),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "SnapshotPosition":
        if not data:
            return cls()
        after = data.get("after_key")
        return cls(
            after_key=codec.decode_all(after) if after is not None else None,
            rows=int(data.get("rows", 0)),
            done=bool(data.get("done", False)),
            incremental_from=codec.decode(data.get("incremental_from")),
        )


def snapshot_batches(
    engine: Engine,
    table: ProjectedTable,
    *,
    position_key: str,
    start: SnapshotPosition,
    chunk_size: int,
    zone: ZoneInfo,
    key_range: tuple[Any, Any] | None = None,
) -> Iterator[ChangeBatch]:
    """Yield one batch per chunk, from where ``start`` left off; the last batch marks the snapshot done.

    The next chunk is read on a helper thread while the caller publishes this one (``read_ahead``).
    """
    rows_done = start.rows
    after_key = start.after_key
    for keys, rows in read_ahead(_chunks(engine, table, start.after_key, chunk_size, key_range)):
        is_last = len(rows) < chunk_size
        events, tuples = events_from_rows(
            rows, table, zone, READ, {"snapshot": "last" if is_last else "true"}, keys=keys
        )
        if tuples:
            after_key = tuples[-1][1:]
        rows_done += len(events)
        position = SnapshotPosition(after_key, rows_done, is_last, start.incremental_from)
        yield ChangeBatch(events, Position(position_key, position.to_dict()))
        if is_last:
            return


def _chunks(
    engine: Engine,
    table: ProjectedTable,
    after_key: tuple[Any, ...] | None,
    chunk_size: int,
    key_range: tuple[Any, Any] | None,
) -> Iterator[tuple[list[str], Sequence[Any]]]:
    """The table's chunks in key order from ``after_key``, each read on a connection of its own, as plain rows."""
    while True:
        query = snapshot_chunk_query(table, after_key=after_key, limit=chunk_size, key_range=key_range)
        with engine.connect() as connection:
            result = connection.execute(query)
            keys, rows = list(result.keys()), result.all()
        yield keys, rows
        if len(rows) < chunk_size:
            return
        last = rows[-1]
        after_key = tuple([last[keys.index(label)] for label in table.tuple_labels])


T = TypeVar("T")

_ITEM, _DONE, _ERROR = 0, 1, 2


def read_ahead(items: Iterator[T]) -> Iterator[T]:
    """``items``, the next one produced on a helper thread while the caller works on the current one.

    A snapshot chunk's wall time is mostly waits: the database running the SELECT, then the Kafka commit
    (issue 18: our process was on the CPU for ~40% of it).  Reading chunk N+1 while chunk N is converted,
    produced and committed overlaps the two; psycopg and librdkafka release the GIL while they wait.  At most
    one item is read ahead (memory: two chunks), and ``items`` runs and is closed on the helper thread only,
    so a connection it opens is used by one thread.  An error in ``items`` is raised here, in order; a
    caller that stops early (an error, a close) stops the helper after the item it is reading.
    """
    handoff: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
    turn = threading.Semaphore(1)
    stop = threading.Event()

    def produce() -> None:
        try:
            while True:
                turn.acquire()
                if stop.is_set():
                    return
                try:
                    item = next(items)
                except StopIteration:
                    handoff.put((_DONE, None))
                    return
                handoff.put((_ITEM, item))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            handoff.put((_ERROR, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    helper = threading.Thread(target=produce, name="liberation-read-ahead", daemon=True)
    helper.start()
    try:
        while True:
            kind, value = handoff.get()
            if kind == _DONE:
                return
            if kind == _ERROR:
                raise value
            turn.release()  # the helper reads the next one while the caller works on this one
            yield value
    finally:
        stop.set()
        turn.release()
        helper.join()
