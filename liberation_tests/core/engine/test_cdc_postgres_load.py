"""Replica under load: the demo shop's write load plus truncates, streamed from the slot, rebuilt from the topics."""

from __future__ import annotations

import threading
import time
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from liberation_assets.core.readers.table import reflect_stream_table
from liberation_assets.core.verify.compare import compare, source_state, topic_state
from liberation_assets.demo.generator import WriteLoad, seed
from liberation_assets.demo.schema import INTERNAL_COLUMNS, create_schema, inventory, orders, payments
from liberation_tests.core.engine.cdc_postgres_support import cdc_spec, drain, envelopes

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REFILL = (
    "TRUNCATE inventory",
    "INSERT INTO inventory (product_id, warehouse, quantity, reserved, reorder_level, audit_note, updated_at) "
    "SELECT id, 'ams-1', 7, 0, 10, 'refill', now() FROM products",
)


def _public(table: sa.Table) -> list[str]:
    return [c.name for c in table.columns if c.name not in INTERNAL_COLUMNS[table.name]]


def _truncate_now_and_then(engine: sa.Engine, stop: threading.Event, done: list[int]) -> None:
    """TRUNCATE and refill inventory in one transaction, every few seconds, while the load runs."""
    while not stop.wait(3.0):
        with engine.begin() as connection:
            for statement in REFILL:
                connection.exec_driver_sql(statement)
        done.append(1)


def test_replica_equals_source_under_demo_load_with_truncates(make_spec, pg_database, pg_engine) -> None:
    create_schema(pg_engine)
    seed(pg_engine, products_count=300)
    spec = cdc_spec(
        make_spec,
        pg_database,
        {
            "inventory": {"table": "inventory", "key": ["product_id", "warehouse"], "projection": _public(inventory)},
            "orders": {"table": "orders", "key": ["id"], "projection": _public(orders)},
            "payments": {"table": "payments", "key": ["id"], "projection": _public(payments)},
        },
        batch_size=500,
        snapshot_chunk=200,
    )
    drain(spec)

    load = WriteLoad(pg_engine, threads=2, pause=0.005, long_transaction_seconds=1.0)
    stop, truncates = threading.Event(), []
    truncator = threading.Thread(target=_truncate_now_and_then, args=(pg_engine, stop, truncates))
    load.start()
    truncator.start()
    drains, deadline = 0, time.monotonic() + 12
    try:
        while time.monotonic() < deadline:  # Dagster-style runs while the load goes on
            drain(spec)
            drains += 1
    finally:
        stop.set()
        truncator.join()
        load.stop()
    summary = drain(spec)
    print(
        f"\nload {load.report.counts}, truncates {len(truncates)}, drains {drains + 1}, last drain {summary.describe()}"
    )
    assert truncates and load.report.counts.get("delete_stock", 0) + load.report.counts.get("delete_product", 0) > 0

    bootstrap = spec.kafka.resolved_bootstrap_servers()
    for name in spec.streams:
        table = reflect_stream_table(pg_engine, spec.streams[name], name)
        result = compare(source_state(pg_engine, table, ZoneInfo("UTC")), topic_state(bootstrap, spec.topic_for(name)))
        assert result.matches, f"{name}: {result.describe()}"
        internal = set(INTERNAL_COLUMNS[spec.streams[name].table])
        assert not any(internal & set(e["after"] or e["before"] or {}) for e in envelopes(spec, name)[:200])
    published = envelopes(spec, "inventory")
    ops = {e["op"] for e in published}
    assert {"r", "c", "u", "d"} <= ops and "t" not in ops  # a truncate is the deletes that follow it
    assert any(e["op"] == "d" and e["source"].get("truncate") for e in published)
