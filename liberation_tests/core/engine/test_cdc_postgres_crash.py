"""kill -9 at random points, restart, and every change is in Kafka exactly once (read_committed)."""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from liberation_assets.core.readers.table import reflect_stream_table
from liberation_assets.core.verify.compare import compare, source_state, topic_state
from liberation_tests.core.engine.cdc_postgres_support import (
    FollowProcess,
    cdc_spec,
    changes,
    drain,
    source_name,
    stored_position,
    write_spec,
)
from liberation_tests.fix_kafka import TopicGrowth
from liberation_tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KILLS = 12


class LedgerWriter:
    """Every update adds exactly 1 to a row's version, so a lost change is a gap and a duplicate a repeat.

    Some transactions update 60-150 rows at once: more than a micro-batch, so
    kills land in the middle of a database transaction too.
    """

    def __init__(self, engine: sa.Engine, seed: int):
        self.engine = engine
        self.rng = random.Random(seed)
        self.stop_event = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=60)
        assert not self.errors, repr(self.errors[0])

    def _run(self) -> None:
        rng = self.rng
        try:
            while not self.stop_event.is_set():
                with self.engine.begin() as connection:
                    ids = connection.exec_driver_sql("SELECT id FROM ledger").scalars().all()
                    roll = rng.random()
                    if roll < 0.1:
                        picked = rng.sample(ids, min(len(ids), rng.randint(60, 150)))
                        connection.execute(
                            sa.text("UPDATE ledger SET version = version + 1 WHERE id = ANY(:ids)"), {"ids": picked}
                        )
                    elif roll < 0.25:
                        connection.exec_driver_sql("INSERT INTO ledger (version, payload) VALUES (0, 'new')")
                    elif roll < 0.3 and len(ids) > 100:
                        connection.execute(sa.text("DELETE FROM ledger WHERE id = :id"), {"id": rng.choice(ids)})
                    else:
                        for row_id in rng.sample(ids, 3):
                            connection.execute(
                                sa.text("UPDATE ledger SET version = version + 1 WHERE id = :id"), {"id": row_id}
                            )
                time.sleep(0.005)
        except BaseException as exc:  # surfaced by stop()
            self.errors.append(exc)


def assert_every_change_exactly_once(messages, engine: sa.Engine) -> None:
    """Per key: a snapshot read or a create, then versions +1 each, then (only if gone) one delete."""
    history: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for message in messages:
        envelope = message.envelope
        if envelope is None:
            continue
        image = envelope["after"] or envelope["before"]
        history[message.key_object["id"]].append((envelope["op"], image["version"]))
    with engine.connect() as connection:
        current = dict(connection.exec_driver_sql("SELECT id, version FROM ledger").all())
    for key, events in history.items():
        first_op, first_version = events[0]
        assert first_op == "r" or (first_op, first_version) == ("c", 0), f"id {key} starts with {events[:3]}"
        assert all(op != "r" for op, _ in events[1:]), f"id {key} snapshotted twice: {events[:5]}"
        updates = [version for op, version in events[1:] if op == "u"]
        expected = list(range(first_version + 1, first_version + 1 + len(updates)))
        assert updates == expected, f"id {key}: versions {updates[:20]}… expected {expected[:20]}…: lost or duplicated"
        deletes = [version for op, version in events if op == "d"]
        if key in current:
            assert not deletes and (updates[-1] if updates else first_version) == current[key], (
                f"id {key}: {events[-3:]}"
            )
        else:
            assert len(deletes) == 1 and events[-1][0] == "d", f"id {key} deleted: {events[-3:]}"
    assert set(current) <= set(history), f"rows never published: {sorted(set(current) - set(history))[:10]}"


def test_kill_9_at_random_points_loses_and_duplicates_nothing(make_spec, pg_database, pg_engine, tmp_path) -> None:
    with pg_engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE ledger (id bigserial PRIMARY KEY, version int NOT NULL, payload text)")
        connection.exec_driver_sql(
            "INSERT INTO ledger (version, payload) SELECT 0, 'seed' FROM generate_series(1, 400)"
        )
    spec = cdc_spec(
        make_spec, pg_database, {"ledger": {"table": "ledger", "key": ["id"]}}, batch_size=40, snapshot_chunk=100
    )
    drain(spec)
    spec_file = write_spec(spec, tmp_path)
    rng = random.Random(4)
    writer = LedgerWriter(pg_engine, seed=9)
    writer.start()
    positions = [stored_position(spec)]
    try:
        for _ in range(KILLS):
            # Kill on observed progress, not after a fixed time: wait until this reader has committed past the
            # last kill's position (however slow the machine), then a random moment more, mid-stream.
            follower = FollowProcess(spec_file, source_name(spec))
            before = (positions[-1].lsn, positions[-1].index)
            wait_until(
                lambda: follower.assert_alive() or (stored_position(spec).lsn, stored_position(spec).index) > before,
                300,
                lambda: "the reader made no progress: " + follower.tail(),
            )
            time.sleep(rng.uniform(0.0, 2.0))
            follower.assert_alive()
            follower.kill()
            positions.append(stored_position(spec))
    finally:
        writer.stop()
    summary = drain(spec)
    at_kills = [(p.lsn, p.index) for p in positions[1:]]
    mid_transaction = sum(1 for p in positions[1:] if not p.complete)
    print(
        f"\n{KILLS} kills; {len(set(at_kills))} distinct positions at the kills, {mid_transaction} inside a transaction; "
        f"final drain: {summary.describe()}"
    )
    assert at_kills == sorted(set(at_kills)), "each kill lands after the reader moved past the previous one"

    messages = changes(spec, "ledger")
    assert_every_change_exactly_once(messages, pg_engine)
    table = reflect_stream_table(pg_engine, spec.streams["ledger"], "ledger")
    result = compare(
        source_state(pg_engine, table, ZoneInfo("UTC")),
        topic_state(spec.kafka.resolved_bootstrap_servers(), spec.topic_for("ledger")),
    )
    assert result.matches, result.describe()


def test_killed_initial_snapshot_resumes_without_loss_or_duplicates(
    make_spec, pg_database, pg_engine, tmp_path
) -> None:
    """The exported snapshot dies with the killed reader; the remaining chunks are read with watermarks."""
    rows = 5_000  # 100 chunks: the kill at ~1,000 rows leaves most of them to the watermark windows
    with pg_engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE ledger (id bigserial PRIMARY KEY, version int NOT NULL, payload text)")
        connection.exec_driver_sql(
            f"INSERT INTO ledger (version, payload) SELECT 0, 'seed' FROM generate_series(1, {rows})"
        )
    spec = cdc_spec(make_spec, pg_database, {"ledger": {"table": "ledger", "key": ["id"]}}, snapshot_chunk=50)
    growth = TopicGrowth(spec.kafka.resolved_bootstrap_servers(), spec.topic_for("ledger"))
    follower = FollowProcess(write_spec(spec, tmp_path), source_name(spec))
    try:  # kill it once ~1,000 rows are written: well inside the snapshot, however fast the machine
        wait_until(
            lambda: follower.assert_alive() or growth.offsets() >= 1000, 120, lambda: "no chunk: " + follower.tail()
        )
    finally:
        follower.kill()
        growth.close()
    interrupted = stored_position(spec).tables["ledger"]
    with pg_engine.begin() as connection:  # changes after the kill, to rows both read and not yet read
        connection.exec_driver_sql(f"UPDATE ledger SET version = 1 WHERE id IN (1, {rows - 1})")
    drain(spec)
    messages = changes(spec, "ledger")
    reads = [m.key_object["id"] for m in messages if m.envelope and m.envelope["op"] == "r"]
    print(
        f"\nkilled after {interrupted.rows} of {rows} rows (done={interrupted.done}); {len(reads)} snapshot reads in all"
    )
    assert not interrupted.done
    assert sorted(reads) == list(range(1, rows + 1)), "every row snapshotted exactly once"
    assert stored_position(spec).tables["ledger"].done
    updates = [
        (m.key_object["id"], m.envelope["after"]["version"]) for m in messages if m.envelope and m.envelope["op"] == "u"
    ]
    assert sorted(updates) == [(1, 1), (rows - 1, 1)]
    table = reflect_stream_table(pg_engine, spec.streams["ledger"], "ledger")
    result = compare(
        source_state(pg_engine, table, ZoneInfo("UTC")),
        topic_state(spec.kafka.resolved_bootstrap_servers(), spec.topic_for("ledger")),
    )
    assert result.matches, result.describe()
