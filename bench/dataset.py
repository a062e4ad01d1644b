"""The fixed data set: an orders-like table (8 columns, 80-character note), the demo shop's ``orders`` and
``products`` beside it (the shapes of liberation_assets/demo/schema.py: uuid key, jsonb, text, a float, internal
columns), and an outbox table.

Rows are generated inside PostgreSQL (``generate_series``), so loading a
million rows takes seconds and every run sees the same bytes.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
import sqlalchemy as sa

from liberation_assets.core.outbox.table import create_outbox_table
from liberation_assets.core.spec import OutboxSpec
from liberation_assets.stack import StackSettings

DATABASE = "liberation_bench"
ORDERS = "bench_orders"
OUTBOX = "bench_outbox"
CEILING_PUBLICATION = "bench_ceiling"
DEMO_ORDERS = "orders"
PRODUCTS = "products"
DEMO_TABLES = (DEMO_ORDERS, PRODUCTS)
UPDATE_BATCH = 10_000


def demo_rows(rows: int) -> dict[str, int]:
    """How many demo rows go with ``rows`` bench orders: a fifth as many orders, a twentieth as many products."""
    return {DEMO_ORDERS: max(1, rows // 5), PRODUCTS: max(1, rows // 20)}


def total_rows(rows: int) -> int:
    """Rows of every table the snapshot and CDC headlines read: bench orders plus the demo's orders and products."""
    return rows + sum(demo_rows(rows).values())


# The demo's shapes (liberation_assets/demo/schema.py), generated in the database; `seq` orders the updates.
_CREATE_DEMO = f"""
CREATE TABLE {PRODUCTS} (id bigint PRIMARY KEY, sku varchar(32) NOT NULL UNIQUE, name varchar(200) NOT NULL,
  description text, category varchar(40) NOT NULL, images jsonb, active boolean NOT NULL, cost numeric(12,2),
  supplier_notes text, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, updated_by varchar(64));
CREATE INDEX {PRODUCTS}_updated_at_id ON {PRODUCTS} (updated_at, id);
CREATE TABLE {DEMO_ORDERS} (id uuid PRIMARY KEY, customer_id bigint NOT NULL, status varchar(16) NOT NULL,
  total numeric(12,2) NOT NULL, currency varchar(3) NOT NULL, placed_at timestamptz NOT NULL, shipping jsonb,
  note text, internal_notes text, fraud_score double precision, updated_at timestamptz NOT NULL);
CREATE INDEX {DEMO_ORDERS}_updated_at_id ON {DEMO_ORDERS} (updated_at, id);
CREATE INDEX {DEMO_ORDERS}_customer_id ON {DEMO_ORDERS} (customer_id);
"""

_LOAD_PRODUCTS = f"""
INSERT INTO {PRODUCTS}
SELECT g, 'SKU-' || g, 'Product number ' || g, repeat('A fine product. ', 5), 'cat' || (g %% 40),
       jsonb_build_array('https://img.example/' || g || '.jpg'), g %% 7 <> 0, round((g %% 1000) * 1.37, 2), NULL,
       timestamptz '2024-01-01 00:00:00+00', timestamptz '2024-06-01 00:00:00+00', 'seed'
FROM generate_series(1, %s::bigint) AS g
"""

_LOAD_DEMO_ORDERS = f"""
INSERT INTO {DEMO_ORDERS}
SELECT md5(g::text)::uuid, g, (ARRAY['placed', 'paid', 'shipped', 'delivered', 'cancelled'])[1 + g %% 5],
       round((g %% 997) * 3.21, 2), CASE WHEN g %% 3 = 0 THEN 'USD' ELSE 'EUR' END,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
       jsonb_build_object('city', 'Berlin', 'zip', '10' || (g %% 999), 'street', 'Hauptstraße ' || (g %% 200)),
       'leave at the door', NULL, (g %% 100) / 100.0, timestamptz '2024-06-01 00:00:00+00'
FROM generate_series(1, %s::bigint) AS g
"""

_CREATE_ORDERS = f"""
CREATE TABLE {ORDERS} (
    id          bigint PRIMARY KEY,
    customer_id bigint NOT NULL,
    status      text NOT NULL,
    total       numeric(12, 2) NOT NULL,
    currency    char(3) NOT NULL,
    placed_at   timestamptz NOT NULL,
    note        text,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX {ORDERS}_updated_at_id ON {ORDERS} (updated_at, id);
"""

_LOAD_ORDERS = f"""
INSERT INTO {ORDERS}
SELECT g,
       (g * 7919) %% 100000,
       (ARRAY['placed', 'paid', 'shipped', 'delivered', 'cancelled'])[1 + g %% 5],
       round(((g * 31) %% 50000) / 100.0 + 1, 2),
       CASE WHEN g %% 3 = 0 THEN 'USD' ELSE 'EUR' END,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
       left(repeat(md5(g::text), 3), 80),
       timestamptz '2024-06-01 00:00:00+00'
FROM generate_series(%s::bigint, %s::bigint) AS g
"""


def connect(stack: StackSettings, database: str = DATABASE, *, autocommit: bool = True) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=stack.pg_host,
        port=stack.pg_port,
        user=stack.pg_user,
        password=stack.pg_password,
        dbname=database,
        autocommit=autocommit,
    )


def drop_slots(stack: StackSettings, *, like: str = "%") -> None:
    """Drop the bench database's replication slots (terminating their readers first): WAL is released."""
    with connect(stack, "liberation") as admin:
        slots = admin.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE database = %s AND slot_name LIKE %s", (DATABASE, like)
        ).fetchall()
        for (slot,) in slots:
            admin.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                "WHERE slot_name = %s AND active_pid IS NOT NULL",
                (slot,),
            )
            for _ in range(50):
                try:
                    admin.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                    break
                except psycopg.errors.ObjectInUse:
                    time.sleep(0.2)


def recreate(stack: StackSettings, rows: int) -> float:
    """Drop and create the bench database and load ``rows`` orders; returns the seconds taken."""
    started = time.monotonic()
    drop_slots(stack)
    with connect(stack, "liberation") as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{DATABASE}"')
    with connect(stack) as db:
        db.execute(_CREATE_ORDERS)
        for low in range(1, rows + 1, 200_000):
            db.execute(_LOAD_ORDERS, (low, min(rows, low + 199_999)))
        db.execute(_CREATE_DEMO)
        db.execute(_LOAD_PRODUCTS, (demo_rows(rows)[PRODUCTS],))
        db.execute(_LOAD_DEMO_ORDERS, (demo_rows(rows)[DEMO_ORDERS],))
        # What our CDC's default (toast: replica_identity_full) sets; set here so every reader sees the same WAL.
        for table in (ORDERS, *DEMO_TABLES):
            db.execute(f"ALTER TABLE {table} REPLICA IDENTITY FULL")
        _create_outbox(stack)
        db.execute(f"CREATE PUBLICATION {CEILING_PUBLICATION} FOR TABLE {ORDERS}, {DEMO_ORDERS}, {PRODUCTS}, {OUTBOX}")
        for table in (ORDERS, *DEMO_TABLES):
            db.execute(f"VACUUM ANALYZE {table}")
    return time.monotonic() - started


def _create_outbox(stack: StackSettings) -> None:
    """The outbox table exactly as ``liberation outbox`` creates it (Debezium's columns plus seq, occurred_at)."""
    engine = sa.create_engine(stack.pg_url(DATABASE))
    try:
        create_outbox_table(engine, OutboxSpec(source="bench", table=OUTBOX))
    finally:
        engine.dispose()


def vacuum(stack: StackSettings) -> None:
    with connect(stack) as db:
        for table in (ORDERS, *DEMO_TABLES, OUTBOX):
            db.execute(f"VACUUM ANALYZE {table}")


def update_all(stack: StackSettings, rows: int, tag: int) -> float:
    """Update every row once, ``UPDATE_BATCH`` rows per transaction; returns the seconds taken."""
    started = time.monotonic()
    with connect(stack, autocommit=True) as db:
        for low in range(1, rows + 1, UPDATE_BATCH):
            db.execute(
                f"UPDATE {ORDERS} SET status = 'paid', customer_id = %s, updated_at = clock_timestamp() "
                f"WHERE id BETWEEN %s AND %s",
                (tag, low, min(rows, low + UPDATE_BATCH - 1)),
            )
        demo = demo_rows(rows)
        for low in range(1, demo[DEMO_ORDERS] + 1, UPDATE_BATCH):
            db.execute(
                f"UPDATE {DEMO_ORDERS} SET status = 'shipped', updated_at = clock_timestamp() "
                f"WHERE customer_id BETWEEN %s AND %s",
                (low, low + UPDATE_BATCH - 1),
            )
        for low in range(1, demo[PRODUCTS] + 1, UPDATE_BATCH):
            db.execute(
                f"UPDATE {PRODUCTS} SET active = NOT active, updated_at = clock_timestamp() WHERE id BETWEEN %s AND %s",
                (low, low + UPDATE_BATCH - 1),
            )
    return time.monotonic() - started


def insert_outbox(stack: StackSettings, count: int, *, batch: int = 5_000) -> float:
    """Insert ``count`` outbox events of aggregate type ``order``, ``batch`` per transaction."""
    started = time.monotonic()
    with connect(stack, autocommit=True) as db:
        for low in range(0, count, batch):
            db.execute(
                f"INSERT INTO {OUTBOX} (id, aggregatetype, aggregateid, type, payload, occurred_at) "
                f"SELECT gen_random_uuid(), 'order', (g %% 100000)::text, 'OrderPaid', "
                f"json_build_object('seq', g, 'order', g %% 100000, 'status', 'paid', 'note', left(md5(g::text), 24)), now() "
                f"FROM generate_series(%s::bigint, %s::bigint) AS g",
                (low, min(count, low + batch) - 1),
            )
    return time.monotonic() - started


def outbox_count(stack: StackSettings) -> int:
    with connect(stack) as db:
        return int(db.execute(f"SELECT count(*) FROM {OUTBOX}").fetchone()[0])  # type: ignore[index]


def current_lsn(stack: StackSettings) -> str:
    with connect(stack) as db:
        return str(db.execute("SELECT pg_current_wal_lsn()").fetchone()[0])  # type: ignore[index]
