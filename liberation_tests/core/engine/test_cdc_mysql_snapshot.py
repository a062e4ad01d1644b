"""The consistent snapshot does not lock writers out: they commit all through it, and the longest stall is reported."""

from __future__ import annotations

import random
import threading
import time

import pytest
import sqlalchemy as sa

from liberation_assets.core.engine.cdc_mysql import drain
from liberation_tests.core.readers.binlog.cdc_support import assert_replicas_match, cdc_spec, source_of

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROWS = 60_000


class TimedWriter(threading.Thread):
    """Single-row updates and inserts in autocommit, each one timed from start to commit."""

    def __init__(self, engine: sa.Engine):
        super().__init__(daemon=True)
        self.engine = engine
        self.stop = threading.Event()
        self.writes: list[tuple[float, float]] = []
        """(started, seconds) per committed write."""
        self.error: BaseException | None = None

    def run(self) -> None:
        rng, next_id = random.Random(5), ROWS + 1
        try:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                while not self.stop.is_set():
                    started = time.time()
                    if rng.random() < 0.5:
                        connection.exec_driver_sql("UPDATE items SET v = v + 1 WHERE id = %s", (rng.randint(1, ROWS),))
                    else:
                        connection.exec_driver_sql("INSERT INTO items VALUES (%s, 0, 'new')", (next_id,))
                        next_id += 1
                    self.writes.append((started, time.time() - started))
                    time.sleep(0.002)
        except BaseException as exc:
            self.error = exc


def test_writers_proceed_during_the_snapshot(make_spec, mysql_database, mysql_engine) -> None:
    with mysql_engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE items (id INT PRIMARY KEY, v INT NOT NULL, note VARCHAR(100))")
        connection.exec_driver_sql(f"INSERT INTO items SELECT seq, seq, REPEAT('x', 60) FROM seq_1_to_{ROWS}")
    spec = cdc_spec(make_spec, mysql_database, {"items": {"table": "items", "key": ["id"]}}, snapshot_chunk=500)
    writer = TimedWriter(mysql_engine)
    writer.start()
    try:
        time.sleep(0.5)
        summary = drain(spec, source_of(spec))
    finally:
        writer.stop.set()
        writer.join(timeout=30)
    assert writer.error is None, writer.error
    started, finished = summary.snapshot_started_s, summary.snapshot_finished_s
    assert started is not None and finished is not None
    during = [seconds for begun, seconds in writer.writes if begun >= started and begun + seconds <= finished]
    overlapping = [seconds for begun, seconds in writer.writes if begun <= finished and begun + seconds >= started]
    longest = max(overlapping)
    print(
        f"\nsnapshot of {summary.snapshot_rows['items']} rows took {finished - started:.2f}s; "
        f"{len(during)} writes committed during it; longest write stall {longest * 1000:.1f} ms "
        f"(lock held {summary.snapshot_lock_ms} ms)"
    )
    assert summary.snapshot_rows["items"] >= ROWS and summary.snapshot_lock_ms == 0
    assert len(during) >= 10, "writers were blocked during the snapshot"
    assert longest < 10, f"a write stalled {longest:.1f}s"
    drain(spec, source_of(spec))
    assert_replicas_match(spec, mysql_engine)
