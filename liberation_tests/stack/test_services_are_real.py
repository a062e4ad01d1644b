"""Prove the local stack runs the real thing: Kafka transactions, PostgreSQL
logical decoding and a MariaDB ROW binlog, not stand-ins."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from liberation_assets.stack import StackSettings, status, up

pytestmark = pytest.mark.integration


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def _create_topic(bootstrap: str, name: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)]).values():
        future.result(timeout=30)


def _delete_topic(bootstrap: str, name: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})  # keep a reference until the futures resolve
    for future in admin.delete_topics([name]).values():
        future.result(timeout=30)


def _consume(bootstrap: str, topic: str, expected: int, isolation: str, timeout: float = 30.0) -> list[str]:
    """Values read from the start of `topic` until `expected` messages arrived (or timeout)."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": _unique("stack-test"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": isolation,
        }
    )
    values: list[str] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        while len(values) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            values.append((msg.value() or b"").decode())
    finally:
        consumer.close()
    return values


def test_status_reports_all_up_and_up_is_idempotent(stack: StackSettings) -> None:
    assert status(stack) == {"kafka": True, "postgres": True, "mariadb": True}
    started = time.monotonic()
    up(stack, log=lambda _line: None)
    assert time.monotonic() - started < 10


def test_kafka_produce_consume_round_trip(stack: StackSettings) -> None:
    from confluent_kafka import Producer

    topic = _unique("stack-roundtrip")
    _create_topic(stack.kafka_bootstrap, topic)
    try:
        producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "enable.idempotence": True})
        sent = [f"message-{i}" for i in range(5)]
        for i, value in enumerate(sent):
            producer.produce(topic, key=str(i).encode(), value=value.encode())
        assert producer.flush(30) == 0
        assert _consume(stack.kafka_bootstrap, topic, len(sent), "read_committed") == sent
    finally:
        _delete_topic(stack.kafka_bootstrap, topic)


def test_kafka_transactions_hide_aborted_messages_from_read_committed(stack: StackSettings) -> None:
    from confluent_kafka import Producer

    topic = _unique("stack-txn")
    _create_topic(stack.kafka_bootstrap, topic)
    try:
        producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "transactional.id": _unique("stack-txn")})
        producer.init_transactions(60)
        # Aborted first, committed last: reading every committed message proves we passed the aborted ones.
        producer.begin_transaction()
        for value in ("aborted-0", "aborted-1"):
            producer.produce(topic, value=value.encode())
        producer.flush(30)
        producer.abort_transaction(30)
        producer.begin_transaction()
        for value in ("committed-0", "committed-1"):
            producer.produce(topic, value=value.encode())
        producer.commit_transaction(30)

        assert _consume(stack.kafka_bootstrap, topic, 2, "read_committed") == ["committed-0", "committed-1"]
        # The aborted records really are in the log: read_uncommitted sees them.
        assert _consume(stack.kafka_bootstrap, topic, 4, "read_uncommitted") == [
            "aborted-0",
            "aborted-1",
            "committed-0",
            "committed-1",
        ]
    finally:
        _delete_topic(stack.kafka_bootstrap, topic)


def test_postgres_logical_decoding_with_pgoutput(stack: StackSettings) -> None:
    import psycopg
    from psycopg import sql

    database, slot = _unique("stack_test"), _unique("stack_slot")
    creds: dict[str, Any] = {
        "host": stack.pg_host,
        "port": stack.pg_port,
        "user": stack.pg_user,
        "password": stack.pg_password,
    }
    with psycopg.connect(dbname="postgres", autocommit=True, **creds) as admin:
        assert admin.execute("SHOW wal_level").fetchone() == ("logical",)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        try:
            with psycopg.connect(dbname=database, autocommit=True, **creds) as conn:
                conn.execute("CREATE TABLE t (id int PRIMARY KEY, name text)")
                conn.execute("CREATE PUBLICATION pub FOR TABLE t")
                conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", [slot])
                try:
                    conn.execute("INSERT INTO t VALUES (1, 'liberated')")
                    changes = conn.execute(
                        "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, NULL, NULL, "
                        "'proto_version', '1', 'publication_names', 'pub')",
                        [slot],
                    ).fetchall()
                finally:
                    conn.execute("SELECT pg_drop_replication_slot(%s)", [slot])
            kinds = [bytes(data)[:1] for (data,) in changes]
            assert b"I" in kinds, kinds  # pgoutput Insert message (between Begin/Relation and Commit)
        finally:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database)))


def test_mariadb_has_a_row_binlog(stack: StackSettings) -> None:
    import pymysql

    conn = pymysql.connect(
        host=stack.mysql_host, port=stack.mysql_port, user=stack.mysql_user, password=stack.mysql_password
    )
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@binlog_format, @@log_bin, @@binlog_row_image")
            assert cur.fetchone() == ("ROW", 1, "FULL")
            cur.execute("SHOW MASTER STATUS")
            assert cur.fetchone() is not None
    finally:
        conn.close()
