"""Bytes per record of each value format, measured on the mixed-types table of the consumer tests.

    .venv/bin/python -m bench.formats

Replays liberation_tests/consumers/mixed_types.py (snapshot, updates, deletes, a key update, a TRUNCATE;
query pattern, PostgreSQL CDC, MariaDB CDC) once per format into fresh databases and topics, then reads the
topics back: key + value bytes of every record that has a value (tombstones are 0 bytes of value in every
format and are counted apart).
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pymysql
import sqlalchemy as sa
from confluent_kafka import Consumer, KafkaError, TopicPartition

from liberation_assets.core.spec import Spec
from liberation_assets.stack import StackSettings, ensure_stack
from liberation_tests.consumers import mixed_types

FORMATS = ("debezium", "connect-json", "flat")
STREAMS = ("q_mixed", "pg_mixed", "my_mixed")


def _spec_builder(stack: StackSettings) -> Any:
    token = uuid.uuid4().hex[:8]

    def build(*, pg: str, mysql: str, kafka: dict[str, Any]) -> Spec:
        return Spec.model_validate(
            {
                "kafka": {
                    "bootstrap_servers": stack.kafka_bootstrap,
                    "topic_prefix": f"bf{token}",
                    "positions_topic": f"bf{token}.positions",
                    "partitions": 1,
                    **kafka,
                },
                "sources": {
                    "pg": {
                        "url": f"postgresql+psycopg://{stack.pg_user}:${{BENCH_PG_PASSWORD:-{stack.pg_password}}}@"
                        f"{stack.pg_host}:{stack.pg_port}/{pg}",
                        "clock_skew": "0s",
                    },
                    "mysql": {
                        "url": f"mysql+pymysql://{stack.mysql_user}:${{BENCH_MY_PASSWORD:-{stack.mysql_password}}}@"
                        f"{stack.mysql_host}:{stack.mysql_port}/{mysql}",
                        "safety_lag": "1s",
                        "clock_skew": "0s",
                    },
                },
                "streams": {},
            }
        )

    return build


def _sizes(bootstrap: str, topic: str) -> tuple[list[int], int]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4()}",
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    sizes, tombstones = [], 0
    try:
        while True:
            message = consumer.poll(5)
            if message is None:
                continue
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    break
                raise RuntimeError(message.error().str())
            if message.value() is None:
                tombstones += 1
            else:
                sizes.append(len(message.key() or b"") + len(message.value()))
    finally:
        consumer.close()
    return sizes, tombstones


def measure(stack: StackSettings, value_format: str) -> dict[str, tuple[float, int, int]]:
    name = f"bf_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(
        host=stack.pg_host,
        port=stack.pg_port,
        user=stack.pg_user,
        password=stack.pg_password,
        dbname="liberation",
        autocommit=True,
    )
    my_admin = pymysql.connect(
        host=stack.mysql_host,
        port=stack.mysql_port,
        user=stack.mysql_user,
        password=stack.mysql_password,
        autocommit=True,
    )
    admin.execute(f'CREATE DATABASE "{name}"')
    with my_admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    pg = sa.create_engine(stack.pg_url(name))
    my = sa.create_engine(stack.mysql_url(name), connect_args={"init_command": "SET time_zone = '+00:00'"})
    try:
        spec = mixed_types.spec_for(_spec_builder(stack), name, name, value_format)
        mixed_types.replay(spec, pg, my)
        result = {}
        for stream in STREAMS:
            sizes, tombstones = _sizes(stack.kafka_bootstrap, spec.topic_for(stream))
            result[stream] = (sum(sizes) / len(sizes), len(sizes), tombstones)
        return result
    finally:
        pg.dispose()
        my.dispose()
        for (slot,) in admin.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE database = %s", (name,)
        ).fetchall():
            admin.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        with my_admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()
        my_admin.close()


def main() -> None:
    stack = ensure_stack(log=lambda *_: None)
    print("| format | query pattern | PostgreSQL CDC | MariaDB CDC |")
    print("|---|---|---|---|")
    for value_format in FORMATS:
        figures = measure(stack, value_format)
        cells = [
            f"{mean:.0f} B ({count} records, {tombstones} tombstones)"
            for mean, count, tombstones in (figures[s] for s in STREAMS)
        ]
        print(f"| `{value_format}` | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
