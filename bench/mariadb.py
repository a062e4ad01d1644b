"""MariaDB binlog CDC: the orders table in the stack's MariaDB, and Debezium's MariaDB connector on Kafka Connect.

The same orders as PostgreSQL's ``bench_orders`` (8 columns, 80-character note), loaded with MariaDB's
sequence engine.  Debezium's jars: ``io.debezium:debezium-connector-mariadb`` from Maven Central
(bench/debezium_mariadb/pom.xml, resolved once into bench/.work/debezium-mariadb/libs), the same version as the
PostgreSQL connector; Kafka Connect from the stack's Kafka libs.  A worker of its own (its own offsets, schema
history and REST port), run only while nothing else is measured, like the PostgreSQL one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pymysql

from bench import topics
from bench.ceilings import kafka_libs
from bench.context import BENCH_DIR, WORK, RunContext, Skip
from bench.dataset import DATABASE, ORDERS, UPDATE_BATCH
from bench.debezium import Connect, _properties, resolve_jars, worker_properties
from liberation_assets.stack import StackSettings
from liberation_assets.stack.kafka import _find_java

POM = BENCH_DIR / "debezium_mariadb" / "pom.xml"
HOME = WORK / "debezium-mariadb"
LIBS = HOME / "libs"
REST_PORT = 18084
SERVER_ID = 184_054
ARTIFACT = "io.debezium:debezium-connector-mariadb"

_CREATE_ORDERS = f"""
CREATE TABLE {ORDERS} (
    id          BIGINT PRIMARY KEY,
    customer_id BIGINT NOT NULL,
    status      VARCHAR(16) NOT NULL,
    total       DECIMAL(12, 2) NOT NULL,
    currency    CHAR(3) NOT NULL,
    placed_at   TIMESTAMP(6) NOT NULL,
    note        VARCHAR(80),
    updated_at  TIMESTAMP(6) NOT NULL,
    KEY {ORDERS}_updated_at_id (updated_at, id)
) ENGINE=InnoDB
"""

_LOAD_ORDERS = f"""
INSERT INTO {ORDERS}
SELECT seq, (seq * 7919) % 100000,
       ELT(1 + seq % 5, 'placed', 'paid', 'shipped', 'delivered', 'cancelled'),
       ROUND(((seq * 31) % 50000) / 100.0 + 1, 2),
       IF(seq % 3 = 0, 'USD', 'EUR'),
       TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq SECOND,
       LEFT(REPEAT(MD5(seq), 3), 80),
       TIMESTAMP '2024-06-01 00:00:00'
FROM seq_{{low}}_to_{{high}}
"""


def connect(stack: StackSettings, database: str | None = DATABASE) -> Any:
    return pymysql.connect(
        host=stack.mysql_host,
        port=stack.mysql_port,
        user=stack.mysql_user,
        password=stack.mysql_password,
        database=database,
        autocommit=True,
    )


def recreate(stack: StackSettings, rows: int) -> float:
    """Drop and create the bench database in MariaDB and load ``rows`` orders; returns the seconds taken."""
    started = time.monotonic()
    with connect(stack, None) as db, db.cursor() as cursor:
        cursor.execute("SET time_zone = '+00:00'")
        cursor.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        cursor.execute(f"CREATE DATABASE {DATABASE}")
        cursor.execute(f"USE {DATABASE}")
        cursor.execute(_CREATE_ORDERS)
        for low in range(1, rows + 1, 200_000):
            cursor.execute(_LOAD_ORDERS.format(low=low, high=min(rows, low + 199_999)))
    return time.monotonic() - started


def update_all(stack: StackSettings, rows: int, tag: int) -> float:
    """Update every row once, ``UPDATE_BATCH`` rows per transaction (one binlog rows event group each)."""
    started = time.monotonic()
    with connect(stack) as db, db.cursor() as cursor:
        for low in range(1, rows + 1, UPDATE_BATCH):
            cursor.execute(
                f"UPDATE {ORDERS} SET status = 'paid', customer_id = %s, updated_at = NOW(6) "
                f"WHERE id BETWEEN %s AND %s",
                (tag, low, min(rows, low + UPDATE_BATCH - 1)),
            )
    return time.monotonic() - started


def ensure_jars() -> Path:
    return resolve_jars(POM, HOME, ARTIFACT)


def version() -> str:
    jars = sorted(LIBS.glob("debezium-connector-mariadb-*.jar"))
    return jars[0].stem.removeprefix("debezium-connector-mariadb-") if jars else "?"


def orders_topic(ctx: RunContext) -> str:
    return f"dbz{ctx.prefix}m.{DATABASE}.{ORDERS}"


class MariaDbConnect(Connect):
    """A Kafka Connect standalone worker running Debezium's MariaDB connector on the orders table."""

    libs = LIBS
    connectors = ("orders.properties",)

    def __init__(self, ctx: RunContext):
        super().__init__(ctx)
        self.dir = HOME / "runs" / ctx.prefix

    def prepare(self) -> None:
        ensure_jars()
        if _find_java() is None or not kafka_libs(self.ctx).is_dir():
            raise Skip("java 17 or the stack's Kafka libs (connect-runtime 4.1.1) not found")
        self.dir.mkdir(parents=True, exist_ok=True)
        stack = self.ctx.stack
        bootstrap = stack.kafka_bootstrap
        topics.create(bootstrap, [orders_topic(self.ctx)], compacted=True)
        topics.create(bootstrap, [f"dbz{self.ctx.prefix}m"])  # its schema-change topic
        (self.dir / "worker.properties").write_text(worker_properties(bootstrap, self.dir))
        (self.dir / "orders.properties").write_text(
            _properties(
                {
                    "name": f"dbz-{self.ctx.prefix}-mariadb",
                    "connector.class": "io.debezium.connector.mariadb.MariaDbConnector",
                    "tasks.max": 1,
                    "database.hostname": stack.mysql_host,
                    "database.port": stack.mysql_port,
                    "database.user": stack.mysql_user,
                    "database.password": stack.mysql_password,
                    "database.server.id": SERVER_ID,
                    "database.include.list": DATABASE,
                    "table.include.list": f"{DATABASE}.{ORDERS}",
                    "topic.prefix": f"dbz{self.ctx.prefix}m",
                    "schema.history.internal": "io.debezium.storage.file.history.FileSchemaHistory",
                    "schema.history.internal.file.filename": self.dir / "schema-history.dat",
                    "include.schema.changes": "false",
                    "snapshot.mode": "initial",
                    "snapshot.locking.mode": "none",
                    "decimal.handling.mode": "string",
                    "max.batch.size": 8192,
                    "max.queue.size": 32768,
                    "poll.interval.ms": 50,
                    "snapshot.fetch.size": 10240,
                }
            )
        )
        (self.dir / "log4j2.properties").write_text(
            "status = warn\nappender.file.type = File\nappender.file.name = file\n"
            f"appender.file.fileName = {self.dir / 'connect.log'}\nappender.file.append = true\n"
            "appender.file.layout.type = PatternLayout\nappender.file.layout.pattern = %d %p %c{1} %m%n\n"
            "rootLogger.level = info\nrootLogger.appenderRef.file.ref = file\n"
        )

    def _wait_slots_released(self, timeout: float = 60) -> None:
        """No replication slots on MariaDB; the server drops a replica that reconnects with the same id."""
