"""The replica materializer against the real stack: incremental catch-up, rebuilds, and failures that name the key."""

from __future__ import annotations

import sqlite3

import orjson
import pytest
import sqlalchemy as sa
from confluent_kafka import Producer

from liberation_assets.cli import main
from liberation_assets.core.engine.query_pattern import QueryPattern
from liberation_assets.core.verify.run import verify
from liberation_assets.core.verify.store import replica_table_name
from liberation_tests.support import write_spec

pytestmark = pytest.mark.integration
ROWS = 3000


@pytest.fixture
def items(make_spec, pg_database, pg_engine):
    with pg_engine.begin() as c:
        c.execute(
            sa.text(
                "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(10,2), tags jsonb, "
                "internal text, updated_at timestamptz NOT NULL DEFAULT now())"
            )
        )
        c.execute(
            sa.text(
                f"INSERT INTO items (id, name, price, tags, internal) SELECT i, 'item ' || i, i / 7.0, "
                f"jsonb_build_object('n', i), 'secret' FROM generate_series(1, {ROWS}) i"
            )
        )
    name = "items_" + pg_database.rsplit("_", 1)[-1]  # transactional ids are cluster-wide: no sharing with other tests
    spec = make_spec(
        pg=pg_database,
        kafka={"partitions": 3},
        streams={
            name: {
                "source": "pg",
                "table": "items",
                "key": ["id"],
                "projection": ["id", "name", "price", "tags", "updated_at"],
            }
        },
    )
    pattern = QueryPattern(spec, name)
    yield spec, pattern
    pattern.close()


def test_replica_catches_up_incrementally_and_matches(items, pg_engine, tmp_path) -> None:
    spec, pattern = items
    url = f"sqlite:///{tmp_path}/replica.sqlite"
    pattern.snapshot()
    first = verify(spec, pattern.name, replica=url)
    assert first.comparison.matches, first.comparison.describe()
    assert first.applied.records == ROWS and first.applied.rows == ROWS and not first.applied.rebuilt
    print(f"\nreplica of {ROWS} rows built at {first.applied.metadata()['records_per_second']} records/s")

    with pg_engine.begin() as c:
        c.execute(sa.text("UPDATE items SET name = name || ' v2', updated_at = now() WHERE id <= 10"))
        c.execute(sa.text("DELETE FROM items WHERE id BETWEEN 11 AND 15"))
    pattern.incremental()
    pattern.reconcile()
    second = verify(spec, pattern.name, replica=url)
    assert second.comparison.matches, second.comparison.describe()
    assert second.applied.records == 10 + 2 * 5  # 10 updates, 5 deletes with their tombstones: only new records
    assert (second.applied.upserts, second.applied.deletes, second.applied.rows) == (10, 5, ROWS - 5)
    assert second.applied.max_publish_lag_ms is not None
    assert {"event_to_publish_lag_seconds", "last_event_age_seconds", "source_rows", "different_keys"} <= set(
        second.metadata()
    )

    third = verify(spec, pattern.name, replica=url)
    assert third.applied.records == 0 and third.comparison.matches


def test_a_corrupted_replica_row_fails_and_names_the_key(items, tmp_path, capsys) -> None:
    spec, pattern = items
    path = tmp_path / "replica.sqlite"
    pattern.snapshot()
    assert verify(spec, pattern.name, replica=f"sqlite:///{path}").comparison.matches
    with sqlite3.connect(path) as db:
        db.execute(
            f"UPDATE {replica_table_name(pattern.name)} SET document = json_set(document, '$.name', 'tampered') "
            "WHERE key = '{\"id\":42}'"
        )
    result = verify(spec, pattern.name, replica=f"sqlite:///{path}").comparison
    assert not result.matches and result.different == [b'{"id":42}'] and not result.missing and not result.extra

    spec_file = write_spec(spec, tmp_path, "spec.yaml")
    code = main(["--spec", str(spec_file), "verify", pattern.name, "--replica", f"sqlite:///{path}"])
    out = capsys.readouterr().out
    assert code == 1 and '{"id":42}' in out and "1 different" in out
    assert main(["--spec", str(spec_file), "verify", pattern.name, "--replica", f"sqlite:///{path}", "--rebuild"]) == 0


def test_a_dropped_event_fails_and_names_the_key(items, tmp_path) -> None:
    spec, pattern = items
    url = f"sqlite:///{tmp_path}/replica.sqlite"
    pattern.snapshot()
    producer = Producer({"bootstrap.servers": spec.kafka.resolved_bootstrap_servers()})
    producer.produce(spec.topic_for(pattern.name), key=orjson.dumps({"id": 7}), value=None)  # the row's event is gone
    assert producer.flush(30) == 0
    result = verify(spec, pattern.name, replica=url).comparison
    assert not result.matches and result.missing == [b'{"id":7}'] and result.replica_rows == ROWS - 1
    assert '{"id":7}' in result.describe()


def test_postgresql_replica_and_rebuild_when_the_topic_changes(items, stack, pg_database, make_spec) -> None:
    spec, pattern = items
    url = stack.pg_url(pg_database)
    pattern.snapshot()
    first = verify(spec, pattern.name, replica=url)
    assert first.comparison.matches and first.applied.records == ROWS
    again = verify(spec, pattern.name, replica=url)
    assert again.applied.records == 0 and again.comparison.matches
    other = make_spec(
        pg=pg_database,
        kafka={"topic_prefix": f"{spec.kafka.topic_prefix}b", "positions_topic": f"{spec.kafka.positions_topic}b"},
        streams={pattern.name: spec.streams[pattern.name].model_dump(by_alias=True)},
    )
    pattern_b = QueryPattern(other, pattern.name)
    try:
        pattern_b.snapshot()
    finally:
        pattern_b.close()
    moved = verify(other, pattern.name, replica=url)  # same replica table, another topic: rebuilt from that topic
    assert moved.applied.rebuilt and moved.applied.records == ROWS and moved.comparison.matches
