"""Log-based capture from PostgreSQL against the real server and broker: envelope, snapshot, TOAST, schema, slots."""

from __future__ import annotations

import os
import threading
import time
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from liberation_assets.core.engine import cdc_postgres
from liberation_assets.core.engine.cdc_postgres import PostgresCdc
from liberation_assets.core.errors import PositionLost, SchemaIncompatible
from liberation_assets.core.readers import pg_slot
from liberation_assets.core.readers.table import reflect_stream_table
from liberation_assets.core.verify.compare import compare, source_state, topic_state
from liberation_tests.core.engine.cdc_postgres_support import (
    cdc_spec,
    changes,
    drain,
    envelopes,
    source_name,
    stored_position,
)

pytestmark = pytest.mark.integration

ITEMS = {"items": {"table": "items", "key": ["id"]}}


def _sql(engine: sa.Engine, *statements: str) -> None:
    with engine.begin() as connection:
        for statement in statements:
            connection.exec_driver_sql(statement)


@pytest.fixture
def items(pg_engine: sa.Engine) -> sa.Engine:
    _sql(
        pg_engine,
        "CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, price numeric(10,2), "
        "tags jsonb, at timestamptz NOT NULL DEFAULT now())",
        "INSERT INTO items SELECT g, 'item ' || g, g * 1.25, '{\"n\": 1}', now() FROM generate_series(1, 25) g",
    )
    return pg_engine


def _replica_matches(spec, engine: sa.Engine, stream: str) -> None:
    table = reflect_stream_table(engine, spec.streams[stream].model_copy(update={"cursor": None}), stream)
    result = compare(
        source_state(engine, table, ZoneInfo("UTC")),
        topic_state(spec.kafka.resolved_bootstrap_servers(), spec.topic_for(stream)),
    )
    assert result.matches, result.describe()


def test_snapshot_then_stream_with_commit_time_lsn_and_txid(make_spec, pg_database, items) -> None:
    spec = cdc_spec(make_spec, pg_database, ITEMS, snapshot_chunk=10)
    summary = drain(spec)
    snapshot = envelopes(spec, "items")
    assert [e["op"] for e in snapshot] == ["r"] * 25
    assert [e["source"]["snapshot"] for e in snapshot][-6:] == ["true"] * 5 + ["last"]
    assert summary.snapshot_rows == 25 and summary.metadata()["published"] == 25

    started_ms = time.time_ns() // 1_000_000
    _sql(
        items,
        "INSERT INTO items VALUES (100, 'new', 9.99, '[1,2]', '2024-01-02 03:04:05+02')",
        "UPDATE items SET name = 'renamed' WHERE id = 1",
        "DELETE FROM items WHERE id = 2",
    )
    finished_ms = time.time_ns() // 1_000_000
    summary = drain(spec)
    messages = changes(spec, "items")[25:]
    ops = [(m.envelope or {}).get("op") for m in messages]
    assert ops == ["c", "u", "d", None], "a delete is followed by its tombstone"
    created, updated, deleted = (m.envelope for m in messages[:3])
    assert created["after"] == {
        "id": 100,
        "name": "new",
        "price": "9.99",
        "tags": "[1, 2]",
        "at": "2024-01-02T01:04:05Z",
    }
    assert updated["before"]["name"] == "item 1" and updated["after"]["name"] == "renamed"  # REPLICA IDENTITY FULL
    assert deleted["before"]["id"] == 2 and deleted["after"] is None
    commit_ms = {e["source"]["ts_ms"] for e in (created, updated, deleted)}
    assert len(commit_ms) == 1, "one database transaction, one commit time"
    assert started_ms - 1000 <= commit_ms.pop() <= finished_ms + 1000
    assert all(m.timestamp_ms == m.envelope["source"]["ts_ms"] for m in messages[:3]), "Kafka timestamp = commit time"
    assert len({e["source"]["txId"] for e in (created, updated, deleted)}) == 1
    lsns = [e["source"]["lsn"] for e in (created, updated, deleted)]
    assert lsns == sorted(lsns) and all(e["source"]["snapshot"] == "false" for e in (created, updated, deleted))
    metadata = summary.metadata()
    assert metadata["published"] == 3 and metadata["deletes"] == 1
    assert all(isinstance(v, (int, float)) for v in metadata.values())
    assert metadata["lsn"] == stored_position(spec).lsn > 0

    with items.connect() as connection:
        info = pg_slot.slot_info(connection, spec.sources[source_name(spec)].cdc.slot or "")
    assert info is not None and info.confirmed_flush_lsn is not None
    assert info.confirmed_flush_lsn >= stored_position(spec).lsn, "the slot is confirmed up to the stored position"
    _replica_matches(spec, items, "items")


def test_primary_key_change_and_truncate(make_spec, pg_database, items) -> None:
    spec = cdc_spec(make_spec, pg_database, ITEMS)
    drain(spec)
    _sql(items, "UPDATE items SET id = 1000 WHERE id = 3")
    _sql(items, "BEGIN", "TRUNCATE items", "INSERT INTO items (id, name) VALUES (7, 'after truncate')", "COMMIT")
    _sql(items, "INSERT INTO items (id, name) VALUES (8, 'later')")
    drain(spec)
    tail = changes(spec, "items")[25:]
    first = [(m.key_object, (m.envelope or {}).get("op")) for m in tail[:3]]
    assert first == [({"id": 3}, "d"), ({"id": 3}, None), ({"id": 1000}, "c")], "a key change is a delete and a create"
    assert not [m for m in tail if m.envelope and m.envelope["op"] == "t"], (
        "no t event (Debezium's default, Flink's need)"
    )
    deletes = [m for m in tail[3:] if m.envelope and m.envelope["op"] == "d"]
    assert {d.key_object["id"] for d in deletes} == set(range(1, 26)) - {3} | {1000}
    assert all(d.envelope["source"]["truncate"] for d in deletes)
    assert [m.envelope["after"]["name"] for m in tail if m.envelope and m.envelope["op"] == "c"][-2:] == [
        "after truncate",
        "later",
    ]
    _replica_matches(spec, items, "items")


@pytest.mark.parametrize("toast", ["replica_identity_full", "reread"])
def test_unchanged_toast_value_is_published_whole(make_spec, pg_database, pg_engine, toast) -> None:
    body = os.urandom(40_000).hex()  # incompressible: stored out of line in TOAST
    _sql(pg_engine, "CREATE TABLE docs (id int PRIMARY KEY, title text, body text)")
    with pg_engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO docs VALUES (1, 'v1', :b), (2, 'v1', :b)"), {"b": body})
    spec = cdc_spec(make_spec, pg_database, {"docs": {"table": "docs", "key": ["id"], "toast": toast}})
    drain(spec)
    _sql(
        pg_engine,
        "UPDATE docs SET title = 'v2' WHERE id = 1",
        "UPDATE docs SET title = 'v2' WHERE id = 2",
        "DELETE FROM docs WHERE id = 2",
    )
    drain(spec)
    updates = [e for e in envelopes(spec, "docs") if e["op"] == "u"]
    with pg_engine.connect() as connection:  # closed at once: an open transaction would hold back polling ceilings
        identity = connection.exec_driver_sql("SELECT relreplident FROM pg_class WHERE relname = 'docs'").scalar()
    if toast == "replica_identity_full":
        assert identity == "f"
        assert [u["after"]["body"] == body and u["after"]["title"] == "v2" for u in updates] == [True, True]
    else:
        assert identity == "d"
        # Re-read: row 2 is gone by then, so its update is left to the delete that follows it in the log.
        assert [(u["after"]["id"], u["after"]["body"] == body) for u in updates] == [(1, True)]
    assert "UNCHANGED" not in str(envelopes(spec, "docs"))
    _replica_matches(spec, pg_engine, "docs")


def _versions(spec, stream: str) -> list[tuple[int, int]]:
    """(id, schema version header) of each change from the log (snapshot reads left out), in topic order."""
    return [
        (m.key_object["id"], int(m.headers["liberation.schema.version"]))
        for m in changes(spec, stream)
        if m.envelope is not None and m.envelope["source"]["snapshot"] == "false"
    ]


def test_added_column_while_streaming_is_versioned_gated_and_backfilled(make_spec, pg_database, items) -> None:
    spec = cdc_spec(make_spec, pg_database, ITEMS, snapshot_chunk=10)
    drain(spec)
    cdc = PostgresCdc(spec, source_name(spec))
    try:
        cdc.open()  # the gate runs here against the table as it is: version 1
        _sql(
            items,
            "INSERT INTO items (id, name) VALUES (200, 'before')",
            "ALTER TABLE items ADD COLUMN colour text DEFAULT 'red'",
            "INSERT INTO items (id, name, colour) VALUES (201, 'after', 'blue')",
            "UPDATE items SET name = 'touched' WHERE id = 1",
        )
        cdc.drain()  # the change is met in the log, mid-stream
    finally:
        cdc.close()
    envelopes_ = [e for e in envelopes(spec, "items") if e["source"]["snapshot"] == "false"]
    assert [e["after"]["id"] for e in envelopes_] == [200, 201, 1]
    assert "colour" not in envelopes_[0]["after"]
    assert envelopes_[1]["after"]["colour"] == "blue" and envelopes_[2]["after"]["colour"] == "red"
    assert _versions(spec, "items") == [(200, 1), (201, 2), (1, 2)]
    # Rows the log never touched hold the new column too: they were snapshotted again, so the replica matches.
    _replica_matches(spec, items, "items")


def test_added_column_while_stopped_is_backfilled_on_the_next_start(make_spec, pg_database, items) -> None:
    spec = cdc_spec(make_spec, pg_database, ITEMS)
    drain(spec)
    _sql(
        items,
        "ALTER TABLE items ADD COLUMN colour text DEFAULT 'red'",
        "INSERT INTO items (id, name, colour) VALUES (201, 'after', 'blue')",
    )
    drain(spec)
    assert stored_position(spec).columns["items"] == ["id", "name", "price", "tags", "at", "colour"]
    _replica_matches(spec, items, "items")


def test_a_required_column_added_while_streaming_stops_the_stream_after_what_came_before(
    make_spec, pg_database, items
) -> None:
    spec = cdc_spec(make_spec, pg_database, ITEMS)
    drain(spec)
    cdc = PostgresCdc(spec, source_name(spec))
    try:
        cdc.open()
        _sql(
            items,
            "INSERT INTO items (id, name) VALUES (200, 'before')",
            "ALTER TABLE items ADD COLUMN size int NOT NULL DEFAULT 0",
            "INSERT INTO items (id, name) VALUES (201, 'after')",
        )
        with pytest.raises(SchemaIncompatible, match="size"):
            cdc.drain()
    finally:
        cdc.close()
    assert _versions(spec, "items") == [(200, 1)]  # published; 201 waits behind the gate
    with pytest.raises(SchemaIncompatible, match="size"):
        drain(spec)  # and it stays stopped until the change is made compatible or accepted


def test_table_added_later_is_snapshotted_with_watermarks_while_streaming(make_spec, pg_database, items) -> None:
    spec = cdc_spec(make_spec, pg_database, ITEMS)
    drain(spec)
    _sql(
        items,
        "CREATE TABLE stock (id int PRIMARY KEY, qty int NOT NULL)",
        "INSERT INTO stock SELECT g, 0 FROM generate_series(1, 400) g",
    )
    both = cdc_spec(make_spec, pg_database, {**ITEMS, "stock": {"table": "stock", "key": ["id"]}}, snapshot_chunk=25)
    both = both.model_copy(update={"kafka": spec.kafka})  # same topics and positions as before
    stop = threading.Event()

    def write() -> None:  # changes racing the chunks: the window must drop the rows they touch
        n = 0
        while not stop.is_set():
            n += 1
            _sql(
                items,
                f"UPDATE stock SET qty = qty + 1 WHERE id = {n % 400 + 1}",
                f"INSERT INTO items (id, name) VALUES ({1000 + n}, 'during')",
            )
            time.sleep(0.005)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        summary = drain(both)
    finally:
        stop.set()
        writer.join()
    drain(both)
    stock = envelopes(both, "stock")
    reads = [e for e in stock if e["op"] == "r"]
    assert reads and all(e["source"]["snapshot"] == "incremental" for e in reads)
    assert len({e["after"]["id"] for e in reads}) == len(reads), "each row is snapshotted at most once"
    assert {e["after"]["id"] for e in stock} == set(range(1, 401))
    assert summary.snapshot_rows == len(reads)
    assert stored_position(both).tables["stock"].done
    _replica_matches(both, items, "stock")
    _replica_matches(both, items, "items")


def test_mid_transaction_stop_resumes_without_loss_or_duplicates(make_spec, pg_database, items) -> None:
    spec = cdc_spec(make_spec, pg_database, ITEMS, batch_size=10)
    drain(spec)
    _sql(items, "INSERT INTO items (id, name) SELECT g, 'bulk' FROM generate_series(1000, 1094) g")
    cdc = PostgresCdc(spec, source_name(spec))
    flushes = []
    try:
        cdc.open()
        # Stop inside the transaction, after its third flush (an idle read before it arrives does not count).
        cdc.run(until=lambda: cdc._log.tx is not None and (bool(flushes.append(1)) or len(flushes) >= 3))
    finally:
        cdc.close()  # no final flush: as if the process died here
    partial = stored_position(spec)
    assert not partial.complete and partial.index >= 0
    drain(spec)
    inserted = [e["after"]["id"] for e in envelopes(spec, "items") if e["op"] == "c"]
    assert sorted(inserted) == list(range(1000, 1095)) and len(inserted) == 95


def test_heartbeats_advance_an_idle_slot(make_spec, pg_database, items) -> None:
    spec = cdc_spec(make_spec, pg_database, ITEMS)
    drain(spec)
    before = stored_position(spec).lsn
    cdc_postgres.follow(spec, source_name(spec), duration=3.5, on_summary=lambda s: None)
    assert stored_position(spec).lsn > before, "heartbeats move the position without any change"


def test_a_lost_slot_is_never_recreated(make_spec, pg_database, items) -> None:
    spec = cdc_spec(make_spec, pg_database, ITEMS)
    drain(spec)
    slot = spec.sources[source_name(spec)].cdc.slot
    deadline = time.monotonic() + 60  # the server's walsender lets go of the slot a moment after the client leaves
    while time.monotonic() < deadline:
        with items.connect() as connection:
            if not connection.exec_driver_sql(
                f"SELECT active FROM pg_replication_slots WHERE slot_name = '{slot}'"
            ).scalar():
                break
        time.sleep(0.2)
    _sql(items, f"SELECT pg_drop_replication_slot('{slot}')", "INSERT INTO items (id, name) VALUES (500, 'lost')")
    with pytest.raises(PositionLost, match="not recreated silently"):
        drain(spec)
    with items.connect() as connection:
        assert pg_slot.slot_info(connection, slot or "") is None
