"""kill -9 of ``liberation follow`` at random points under the demo write load: nothing lost, nothing duplicated."""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest

from liberation_assets.core.engine.cdc_mysql import drain
from liberation_assets.demo import generator, schema
from liberation_tests.core.readers.binlog.cdc_support import (
    FollowProcess,
    assert_replicas_match,
    binlog_changes,
    cdc_spec,
    demo_streams,
    published_changes,
    snapshot_reads,
    source_of,
    write_spec,
)
from liberation_tests.fix_kafka import consume_all

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KILLS = 12
SEED = 20


def _kill_point(attempt: int, rng: random.Random) -> tuple[str | None, float]:
    """(log line to wait for, then seconds to wait): the first kills land inside the snapshot, later ones anywhere."""
    if attempt < 3:
        return "snapshot of", rng.uniform(0.02, 0.4)
    return rng.choice([(None, rng.uniform(0.5, 4.0)), ("streaming the binlog", rng.uniform(0.0, 2.0))])


def test_kill_9_at_random_points_then_resume(
    make_spec, mysql_database, mysql_engine, stack, kafka_bootstrap, tmp_path
) -> None:
    schema.create_schema(mysql_engine)
    generator.seed(mysql_engine, products_count=3000, orders_count=2500)
    tables = ("products", "orders", "payments")
    spec = cdc_spec(make_spec, mysql_database, demo_streams(*tables), snapshot_chunk=50, batch_size=100)
    source, spec_file = source_of(spec), write_spec(spec, tmp_path)
    rng = random.Random(SEED)
    kill_points: list[str] = []
    load = generator.WriteLoad(mysql_engine, threads=2, pause=0.005, long_transaction_seconds=0.5)
    with load:
        for attempt in range(KILLS):
            follower = FollowProcess(spec_file, source, tmp_path / f"follow-{attempt}.log")
            where = _kill_point(attempt, rng)
            if where[0]:  # a moment in a phase; the rest of the time, anywhere from start-up on
                assert follower.wait_for(where[0]), follower.output()
            time.sleep(where[1])
            ended = follower.kill()
            assert ended is None, f"follow ended by itself with {ended}:\n{follower.output()}"
            kill_points.append(f"{where[0] or 'start'}+{where[1]:.2f}s")
    summary = drain(spec, source)  # the last resume, to the binlog's end

    assert_replicas_match(spec, mysql_engine)
    messages = {table: consume_all(kafka_bootstrap, spec.topic_for(table)) for table in tables}
    snapshot_points = Counter()
    for table, topic in messages.items():
        reads = snapshot_reads(topic)
        assert max(reads.values()) == 1, f"{table}: a key was read twice by the snapshot"
        snapshot_points.update(
            (m.envelope["source"]["file"], m.envelope["source"]["pos"])
            for m in topic
            if m.value is not None and m.envelope["op"] == "r"
        )
    assert len(snapshot_points) > 1, "no kill landed inside the snapshot"
    first_point = min(snapshot_points, key=lambda p: (int(p[0].rsplit(".", 1)[1]), p[1]))

    published = published_changes(messages)
    expected = binlog_changes(
        stack, mysql_database, set(tables), first_point, (summary.position.file, summary.position.pos)
    )
    duplicated = [change for change, count in published.items() if count > 1]
    lost = [change for change in expected if change not in published]
    assert not duplicated, f"{len(duplicated)} changes published twice, e.g. {duplicated[:3]}"
    assert not lost, f"{len(lost)} changes never published, e.g. {lost[:3]}"
    assert set(published) == set(expected)
    print(
        f"\n{KILLS} kill -9 at {kill_points}; snapshot resumed {len(snapshot_points) - 1} times; "
        f"{sum(expected.values())} binlog row changes each published exactly once; write load {load.report.counts}"
    )
