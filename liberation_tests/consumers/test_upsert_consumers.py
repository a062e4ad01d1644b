"""Consumers without Kafka Connect: a plain upsert consumer of the flat format, and Flink's debezium-json rules
(Flink itself could not be run here, see docs/consumers.md), over the mixed-types scenario of every pattern."""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from liberation_assets.core.readers.table import reflect_stream_table
from liberation_assets.core.verify.compare import compare, source_state, topic_state
from liberation_tests.consumers import mixed_types

pytestmark = pytest.mark.integration

STREAMS = ("q_mixed", "pg_mixed", "my_mixed")
# Flink's ISO-8601 TIMESTAMP_LTZ pattern: ISO_LOCAL_DATE 'T' ISO_LOCAL_TIME, then a literal 'Z'.
FLINK_ISO_LTZ = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?Z$")


def upsert_table(bootstrap: str, topic: str) -> dict[Any, dict[str, Any]]:
    """What any upsert consumer does with a flat topic: the value replaces the row, a tombstone deletes it."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"upsert-{topic}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    table: dict[Any, dict[str, Any]] = {}
    remaining = set(partitions)
    try:
        while remaining:
            message = consumer.poll(5)
            if message is None:
                continue
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    remaining.discard(message.partition())
                    continue
                raise AssertionError(message.error().str())
            key = orjson.loads(message.key())["id"]
            if message.value() is None:
                table.pop(key, None)
            else:
                table[key] = orjson.loads(message.value())
    finally:
        consumer.close()
    return table


def test_a_flat_consumer_applying_upserts_and_tombstones_rebuilds_the_source(
    make_spec, pg_database, pg_engine, mysql_database, mysql_engine
) -> None:
    spec = mixed_types.spec_for(make_spec, pg_database, mysql_database, "flat")
    mixed_types.replay(spec, pg_engine, mysql_engine)
    bootstrap = spec.kafka.resolved_bootstrap_servers()
    for name in STREAMS:
        engine = mysql_engine if name == "my_mixed" else pg_engine
        rebuilt = upsert_table(bootstrap, spec.topic_for(name))
        assert [mixed_types.typed(rebuilt[k]) for k in sorted(rebuilt)] == mixed_types.rows(engine, "mixed"), name
        table = reflect_stream_table(engine, spec.streams[name].model_copy(update={"cursor": None}), name)
        result = compare(source_state(engine, table, ZoneInfo("UTC")), topic_state(bootstrap, spec.topic_for(name)))
        assert result.matches, f"verify reads the flat format too: {result.describe()}"


def test_the_debezium_format_keeps_flinks_debezium_json_rules(
    make_spec, pg_database, pg_engine, mysql_database, mysql_engine
) -> None:
    """DebeziumJsonDeserializationSchema: c and r need ``after``; u needs ``before`` and ``after``; d needs
    ``before``; any other op is an error; a tombstone is skipped; TIMESTAMP_LTZ parses ISO-8601 with a Z."""
    spec = mixed_types.spec_for(make_spec, pg_database, mysql_database, "debezium")
    mixed_types.replay(spec, pg_engine, mysql_engine)
    bootstrap = spec.kafka.resolved_bootstrap_servers()
    for name in STREAMS:
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"flink-{name}",
                "enable.partition.eof": True,
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
            }
        )
        topic = spec.topic_for(name)
        consumer.assign([TopicPartition(topic, 0, 0)])
        envelopes = []
        try:
            while (message := consumer.poll(5)) is None or not message.error():
                if message is not None and message.value() is not None:
                    envelopes.append(orjson.loads(message.value()))
        finally:
            consumer.close()
        ops = {e["op"] for e in envelopes}
        assert ops <= {"r", "c", "u", "d"} and {"c", "d"} <= ops, (name, ops)
        for envelope in envelopes:
            op, before, after = envelope["op"], envelope["before"], envelope["after"]
            assert (after is not None) if op in ("r", "c") else True, envelope
            assert (before is not None and after is not None) if op == "u" else True, envelope
            assert before is not None if op == "d" else True, envelope
            for image in (before, after):
                for column in ("happened", "local_ts"):
                    if image and image.get(column) is not None:
                        assert FLINK_ISO_LTZ.match(image[column]), image[column]
        if name != "q_mixed":
            assert "u" in ops, f"{name}: CDC publishes updates with their before image"
        print(f"\n{name}: {len(envelopes)} envelopes, ops {sorted(ops)}")
