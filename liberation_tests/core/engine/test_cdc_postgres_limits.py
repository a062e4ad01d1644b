"""The failure classes of log-based tools at scale: a huge transaction's memory, and an idle database's WAL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from liberation_assets.core.readers import pg_slot
from liberation_assets.stack import StackSettings
from liberation_tests.core.engine.cdc_postgres_support import (
    FollowProcess,
    cdc_spec,
    source_name,
    stored_position,
    write_spec,
)
from liberation_tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MB = 1024 * 1024
HUGE_ROWS = 1_000_000


def _current_lsn(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return pg_slot.current_lsn(connection)


def _caught_up(spec, lsn: int) -> bool:
    position = stored_position(spec)
    return position.complete and position.lsn >= lsn


def test_huge_transaction_streams_through_in_bounded_memory(make_spec, pg_database, pg_engine, tmp_path: Path) -> None:
    with pg_engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE big (id int PRIMARY KEY, n int NOT NULL)")
    spec = cdc_spec(make_spec, pg_database, {"big": {"table": "big", "key": ["id"]}})
    follower = FollowProcess(write_spec(spec, tmp_path), source_name(spec))
    try:
        with pg_engine.begin() as connection:  # warm up: imports, buffers, the first batches
            connection.exec_driver_sql("INSERT INTO big SELECT g, g FROM generate_series(-5000, -1) g")
        warm = _current_lsn(pg_engine)
        wait_until(
            lambda: follower.assert_alive() or _caught_up(spec, warm), 120, lambda: "no warm-up: " + follower.tail()
        )
        baseline = follower.status("VmRSS")
        Path(f"/proc/{follower.process.pid}/clear_refs").write_text("5")  # reset the peak (VmHWM) to now
        started = time.monotonic()
        with pg_engine.begin() as connection:
            connection.exec_driver_sql(f"INSERT INTO big SELECT g, g FROM generate_series(1, {HUGE_ROWS}) g")
        committed = _current_lsn(pg_engine)
        wait_until(
            lambda: follower.assert_alive() or _caught_up(spec, committed),
            600,
            lambda: "the huge transaction did not get through: " + follower.tail(),
        )
        seconds = time.monotonic() - started
        peak = follower.status("VmHWM")
        assert follower.stop() == 0, follower.tail()
    finally:
        follower.kill()
    growth = peak - baseline
    summary = next(line for line in reversed(follower.lines) if line.startswith("published="))
    print(
        f"\n{HUGE_ROWS} rows in one transaction: RSS {baseline / MB:.0f} MB before, peak {peak / MB:.0f} MB, "
        f"growth {growth / MB:.1f} MB; {HUGE_ROWS / seconds:,.0f} rows/s end to end ({seconds:.0f} s); {summary}"
    )
    assert f"published={HUGE_ROWS + 5000} " in summary, "every row once, warm-up included"
    assert growth < 500 * MB


@pytest.fixture
def busy_database(stack: StackSettings, pg_database: str) -> Iterator[sa.Engine]:
    """A second database of the same cluster, to write WAL that the idle database's slot must not hold back."""
    name = pg_database + "_busy"
    admin = dict(
        host=stack.pg_host, port=stack.pg_port, user=stack.pg_user, password=stack.pg_password, autocommit=True
    )
    with psycopg.connect(dbname="liberation", **admin) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    engine = sa.create_engine(stack.pg_url(name))
    yield engine
    engine.dispose()
    with psycopg.connect(dbname="liberation", **admin) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


IDLE_SECONDS = 20
"""At least this long idle (ten heartbeats), and until the busy database has written ``BUSY_WAL`` of WAL."""
BUSY_WAL = 96 * MB


def test_idle_database_slot_keeps_little_wal_while_another_is_busy(
    make_spec, pg_database, pg_engine, busy_database, tmp_path: Path
) -> None:
    with pg_engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE quiet (id int PRIMARY KEY)")
    with pg_engine.begin() as connection:
        # A slot nobody reads, as a tool without heartbeats would leave it: the WAL it holds is the problem.
        connection.execute(
            sa.text("SELECT pg_create_logical_replication_slot(:s, 'pgoutput')"), {"s": f"ctl_{pg_database}"}
        )
    with busy_database.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE churn (id int PRIMARY KEY, body text)")
    spec = cdc_spec(make_spec, pg_database, {"quiet": {"table": "quiet", "key": ["id"]}}, heartbeat_every="2s")
    slot = spec.sources[source_name(spec)].cdc.slot or ""
    follower = FollowProcess(write_spec(spec, tmp_path), source_name(spec))
    samples: list[tuple[float, int, int, int]] = []

    def sample(started: float, start_lsn: int) -> tuple[float, int, int, int]:
        with pg_engine.connect() as connection:
            ours, control = pg_slot.slot_info(connection, slot), pg_slot.slot_info(connection, f"ctl_{pg_database}")
        assert ours is not None and control is not None
        follower.assert_alive()
        return (
            time.monotonic() - started,
            ours.current_lsn - start_lsn,
            ours.retained_wal_bytes,
            control.retained_wal_bytes,
        )

    try:
        wait_until(
            lambda: follower.assert_alive() or stored_position(spec).tables.get("quiet") is not None,
            120,
            lambda: "follow did not start: " + follower.tail(),
        )
        start_lsn = _current_lsn(pg_engine)
        started = time.monotonic()
        while time.monotonic() - started < IDLE_SECONDS or (samples[-1][1] < BUSY_WAL and len(samples) < 400):
            with busy_database.begin() as connection:
                connection.exec_driver_sql(
                    "INSERT INTO churn SELECT g, repeat('x', 300) FROM generate_series(1, 5000) g"
                )
                connection.exec_driver_sql("DELETE FROM churn")
            samples.append(sample(started, start_lsn))
            time.sleep(0.2)
        written, under_load = samples[-1][1], len(samples)
        # The slot is bounded, not zero: PostgreSQL moves restart_lsn at its next running-transactions record, and on
        # a loaded machine the walsender may still be decoding the busy database's WAL.  Give it time to catch up.
        wait_until(
            lambda: samples.append(sample(started, start_lsn)) or samples[-1][2] < written / 4,
            180,
            lambda: (
                f"the idle slot still retains {samples[-1][2] / MB:.0f} MB of {written / MB:.0f} MB written "
                "(is another session holding a long write transaction open?)"
            ),
        )
    finally:
        follower.kill()
    during = max(s[2] for s in samples[:under_load])
    ours_now, control_now = samples[-1][2:]
    print(
        f"\nidle {samples[under_load - 1][0]:.0f}s while another database wrote {written / MB:.0f} MB of WAL: the idle slot retained "
        f"at most {during / MB:.1f} MB during the load and {ours_now / MB:.1f} MB after; a slot without heartbeats "
        f"retains {control_now / MB:.0f} MB"
    )
    assert written > 64 * MB, "the busy database must write enough WAL to make the point"
    assert control_now >= written * 0.9, "without heartbeats the slot holds all of it"
