"""MySQL/MariaDB CDC against real Kafka and MariaDB: replica under load, envelope, DDL, resumable snapshot, purge."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import orjson
import pymysql
import pytest
import sqlalchemy as sa

from liberation_assets.core.engine.cdc_mysql import drain, position_key
from liberation_assets.core.errors import PositionLost, SchemaIncompatible
from liberation_assets.core.publish.positions import PositionStore
from liberation_assets.demo import generator, schema
from liberation_tests.core.readers.binlog.cdc_support import (
    assert_replicas_match,
    cdc_spec,
    coordinates,
    demo_streams,
    purge_binlogs_before_now,
    snapshot_reads,
    source_of,
    write_spec,
)
from liberation_tests.fix_kafka import consume_all

pytestmark = pytest.mark.integration


def test_replica_equals_source_under_the_demo_write_load(make_spec, mysql_database, mysql_engine) -> None:
    schema.create_schema(mysql_engine)
    generator.seed(mysql_engine, products_count=1500, orders_count=1000)
    spec = cdc_spec(
        make_spec,
        mysql_database,
        demo_streams("products", "prices", "inventory", "orders", "payments"),
        snapshot_chunk=700,
        batch_size=500,
    )
    load = generator.WriteLoad(mysql_engine, threads=2, pause=0.005, long_transaction_seconds=1.0)
    summaries = []
    with load:
        for _ in range(4):  # the first run snapshots while the load writes
            summaries.append(drain(spec, source_of(spec)))
    summaries.append(drain(spec, source_of(spec)))
    rows = assert_replicas_match(spec, mysql_engine)

    first, streamed = summaries[0].metadata(), sum(s.metadata()["published"] for s in summaries[1:])
    assert first["snapshot_rows"] > 5000 and first["snapshot_lock_ms"] == 0
    assert streamed > 50 and sum(load.report.counts.values()) > 50, load.report.counts
    assert all(isinstance(v, (int, float)) for s in summaries for v in s.metadata().values())
    print(
        f"\nreplica matches: {rows}; snapshot {first['snapshot_rows']} rows in {first['snapshot_seconds']}s; "
        f"{streamed} changes streamed; write load {load.report.counts}"
    )


@pytest.fixture
def widgets(mysql_engine):
    with mysql_engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE widgets (id INT PRIMARY KEY, label VARCHAR(40), secret VARCHAR(40), "
            "updated_at DATETIME(6) NOT NULL DEFAULT NOW(6))"
        )
        connection.exec_driver_sql("INSERT INTO widgets (id, label, secret) VALUES (1, 'one', 's1'), (2, 'two', 's2')")
    return mysql_engine


def _widgets_spec(make_spec, mysql_database, **stream):
    return cdc_spec(
        make_spec,
        mysql_database,
        {"widgets": {"table": "widgets", "key": ["id"], "projection": ["id", "label", "updated_at"], **stream}},
    )


def test_envelope_carries_binlog_coordinates_and_event_time(
    make_spec, mysql_database, widgets, kafka_bootstrap
) -> None:
    spec = _widgets_spec(make_spec, mysql_database)
    drain(spec, source_of(spec))
    with widgets.begin() as connection:
        connection.exec_driver_sql("INSERT INTO widgets (id, label, secret) VALUES (3, 'three', 's3')")
        connection.exec_driver_sql("UPDATE widgets SET label = 'ONE' WHERE id = 1")
        connection.exec_driver_sql("UPDATE widgets SET id = 20 WHERE id = 2")
        connection.exec_driver_sql("DELETE FROM widgets WHERE id = 3")
    with widgets.connect() as connection:
        server_id = connection.exec_driver_sql("SELECT @@server_id").scalar_one()
    summary = drain(spec, source_of(spec))

    messages = consume_all(kafka_bootstrap, spec.topic_for("widgets"))
    ops = [(m.key_object["id"], m.envelope["op"] if m.value else None) for m in messages]
    assert ops == [(1, "r"), (2, "r"), (3, "c"), (1, "u"), (2, "d"), (2, None), (20, "c"), (3, "d"), (3, None)]
    changes = [m for m in messages if m.value is not None and m.envelope["op"] != "r"]
    for message in changes:
        source = message.envelope["source"]
        assert source["connector"] == "liberation" and source["table"] == "widgets" and source["snapshot"] == "false"
        assert source["file"].startswith("mariadb-bin.") and source["server_id"] == server_id
        assert source["gtid"].startswith("0-") and source["pos"] < source["event"]
        assert source["ts_ms"] % 1000 == 0 and message.timestamp_ms == source["ts_ms"]  # binlog time, in seconds
        assert "secret" not in (message.envelope["after"] or message.envelope["before"])
    assert len({m.envelope["source"]["gtid"] for m in changes}) == 1  # one database transaction
    update = changes[1].envelope
    assert update["before"]["label"] == "one" and update["after"]["label"] == "ONE"
    stored = PositionStore(kafka_bootstrap, spec.kafka.positions_topic).get(position_key(source_of(spec)))
    assert stored is not None and stored["file"] == summary.position.file and stored["event"] == 0
    assert stored["streams"] == ["widgets"] and stored["snapshot"] is None


def test_an_added_column_appears_in_the_following_events(make_spec, mysql_database, widgets, kafka_bootstrap) -> None:
    spec = cdc_spec(
        make_spec,
        mysql_database,
        {
            "everything": {"table": "widgets", "key": ["id"]},
            "projected": {
                "table": "widgets",
                "key": ["id"],
                "projection": ["id", "label"],
                "topic": f"{mysql_database}.projected",
            },
        },
    )
    drain(spec, source_of(spec))
    with widgets.begin() as connection:
        connection.exec_driver_sql("UPDATE widgets SET label = 'before' WHERE id = 1")
    with widgets.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE widgets ADD COLUMN color VARCHAR(20) DEFAULT 'red'")
    with widgets.begin() as connection:
        connection.exec_driver_sql("UPDATE widgets SET label = 'after', color = 'blue' WHERE id = 1")
        connection.exec_driver_sql("INSERT INTO widgets (id, label, secret) VALUES (5, 'five', 's5')")
    summary = drain(spec, source_of(spec))

    everything = [m.envelope for m in consume_all(kafka_bootstrap, spec.topic_for("everything")) if m.value]
    projected = [m.envelope for m in consume_all(kafka_bootstrap, spec.topic_for("projected")) if m.value]
    changes, reads = [e for e in everything if e["op"] != "r"], [e for e in everything if e["op"] == "r"]
    assert [e["after"].get("color", "absent") for e in changes] == ["absent", "blue", "red"]
    assert changes[-1]["after"]["secret"] == "s5"
    assert len(reads) == 2 + 3 and all("color" in e["after"] for e in reads[2:])  # re-read with the new column
    assert all(set(e["after"]) == {"id", "label"} for e in projected)
    assert summary.metadata()["ddl_events"] == 1
    assert summary.snapshot_rows == {"everything": 3}  # its columns changed: rows the log did not touch are re-read
    assert_replicas_match(spec, widgets)
    versions = [
        m.headers["liberation.schema.version"] for m in consume_all(kafka_bootstrap, spec.topic_for("everything"))
    ]
    assert versions[0] == b"1" and versions[-1] == b"2"  # the compatible change registered the next schema version

    with widgets.begin() as connection:  # a required column would break consumers: the gate stops the stream
        connection.exec_driver_sql("ALTER TABLE widgets ADD COLUMN size INT NOT NULL DEFAULT 0")
    with pytest.raises(SchemaIncompatible, match="size"):
        drain(spec, source_of(spec))


def test_an_interrupted_snapshot_resumes_after_its_last_chunk(
    make_spec, mysql_database, mysql_engine, kafka_bootstrap
) -> None:
    with mysql_engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE items (id INT PRIMARY KEY, v INT NOT NULL)")
        connection.exec_driver_sql("INSERT INTO items SELECT seq, seq FROM seq_1_to_3000")
    spec = cdc_spec(make_spec, mysql_database, {"items": {"table": "items", "key": ["id"]}}, snapshot_chunk=200)

    class Interrupted(Exception):
        pass

    def interrupt_after_five(_stream: str, rows: int) -> None:
        if rows >= 1000:
            raise Interrupted

    with pytest.raises(Interrupted):
        drain(spec, source_of(spec), progress=interrupt_after_five)
    with mysql_engine.begin() as connection:  # changes on both sides of the interrupted chunk boundary
        connection.exec_driver_sql("UPDATE items SET v = -v WHERE id IN (10, 999, 1000, 1001, 2500)")
        connection.exec_driver_sql("DELETE FROM items WHERE id IN (20, 2600)")
        connection.exec_driver_sql("INSERT INTO items VALUES (5000, 5000)")
    summary = drain(spec, source_of(spec))

    reads = snapshot_reads(consume_all(kafka_bootstrap, spec.topic_for("items")))
    assert max(reads.values()) == 1, "a key was read twice"
    assert summary.snapshot_rows["items"] == 3000 - 1000 - 1 + 1  # resumed after id 1000, at the new state
    assert_replicas_match(spec, mysql_engine)


def test_purged_position_fails_clearly_then_resnapshot_recovers(
    make_spec, mysql_database, widgets, stack, tmp_path, kafka_bootstrap
) -> None:
    spec = _widgets_spec(make_spec, mysql_database)
    drain(spec, source_of(spec))
    stored_file = coordinates(widgets)[0]
    with widgets.begin() as connection:  # lost with the purged binlog: a delete and an update
        connection.exec_driver_sql("DELETE FROM widgets WHERE id = 1")
        connection.exec_driver_sql("UPDATE widgets SET label = 'changed' WHERE id = 2")
    purge_binlogs_before_now(stack, stored_file)

    with pytest.raises(PositionLost, match=r"has been purged.*re-snapshot|Re-snapshot") as lost:
        drain(spec, source_of(spec))
    assert stored_file in str(lost.value) and "--resnapshot" in str(lost.value)
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "liberation_assets.cli",
            "--spec",
            str(write_spec(spec, tmp_path)),
            "follow",
            source_of(spec),
            "--duration",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 2 and "has been purged" in cli.stderr, cli.stderr

    summary = drain(spec, source_of(spec), resnapshot=True)
    assert summary.reconciled_deletes == 1
    assert_replicas_match(spec, widgets)
    last = {}
    for message in consume_all(kafka_bootstrap, spec.topic_for("widgets")):
        last[message.key_object["id"]] = message.value
    assert last[1] is None and orjson.loads(last[2])["after"]["label"] == "changed"
    print(f"\npurged position error: {lost.value}")


def test_drain_with_nothing_new_publishes_nothing(make_spec, mysql_database, widgets, kafka_bootstrap, stack) -> None:
    spec = _widgets_spec(make_spec, mysql_database)
    drain(spec, source_of(spec))
    before = Counter(m.offset for m in consume_all(kafka_bootstrap, spec.topic_for("widgets")))
    admin = pymysql.connect(
        host=stack.mysql_host,
        port=stack.mysql_port,
        user=stack.mysql_user,
        password=stack.mysql_password,
        autocommit=True,
    )
    with admin.cursor() as cursor:  # a new binlog file starts with events a reader never sees as items
        cursor.execute("FLUSH BINARY LOGS")
    admin.close()
    summary = drain(spec, source_of(spec))
    assert summary.metadata()["published"] == 0
    assert Counter(m.offset for m in consume_all(kafka_bootstrap, spec.topic_for("widgets"))) == before
    with widgets.connect() as connection:
        assert connection.execute(sa.text("SELECT COUNT(*) FROM widgets")).scalar_one() == 2
