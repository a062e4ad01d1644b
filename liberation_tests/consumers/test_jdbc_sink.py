"""The Debezium JDBC sink (Maven Central) on Kafka Connect standalone reads our connect-json topics and builds
replicas equal to the source, value for value, with the column types it builds from Debezium's own topic."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from liberation_assets.core.publish.topics import TopicSpec, ensure_topics
from liberation_assets.core.verify.compare import topic_state
from liberation_assets.stack import StackSettings
from liberation_tests.consumers import mixed_types
from liberation_tests.consumers.connect_support import ConnectWorker
from liberation_tests.support import pg_admin

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SINK_SETTINGS = {
    "connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector",
    "tasks.max": 1,
    "insert.mode": "upsert",
    "primary.key.mode": "record_key",
    "delete.enabled": "true",
    "truncate.enabled": "true",
    "schema.evolution": "basic",
    "collection.name.format": "${topic}",
}


@pytest.fixture
def sink_database(stack: StackSettings) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for the sink."""
    name = f"sink_{uuid.uuid4().hex[:10]}"
    with pg_admin(stack) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield name
    with pg_admin(stack) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _sink_table(topic: str) -> str:
    return topic.replace(".", "_")


def _column_types(engine: sa.Engine, table: str) -> dict[str, tuple[Any, ...]]:
    with engine.connect() as connection:
        found = connection.execute(
            sa.text(
                "SELECT column_name, data_type, numeric_precision, numeric_scale FROM information_schema.columns "
                "WHERE table_name = :t"
            ),
            {"t": table},
        ).all()
    return {name: tuple(rest) for name, *rest in found if name in mixed_types.COLUMNS}


def _debezium_source(stack: StackSettings, pg_database: str, prefix: str) -> dict[str, Any]:
    """Debezium's own PostgreSQL connector on the same table, with its defaults for value types."""
    return {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "database.hostname": stack.pg_host,
        "database.port": stack.pg_port,
        "database.user": stack.pg_user,
        "database.password": stack.pg_password,
        "database.dbname": pg_database,
        "topic.prefix": prefix,
        "plugin.name": "pgoutput",
        "slot.name": f"dbz_{prefix}",
        "publication.name": f"dbz_{prefix}",
        "publication.autocreate.mode": "filtered",
        "table.include.list": "public.mixed",
        "snapshot.mode": "initial",
    }


def test_the_jdbc_sink_replicates_every_pattern_value_for_value(
    stack: StackSettings, make_spec, pg_database, pg_engine, mysql_database, mysql_engine, sink_database, tmp_path: Path
) -> None:
    spec = mixed_types.spec_for(make_spec, pg_database, mysql_database, "connect-json")
    mixed_types.replay(spec, pg_engine, mysql_engine)
    topics = {name: spec.topic_for(name) for name in ("q_mixed", "pg_mixed", "my_mixed")}
    dbz_prefix = f"dbz{uuid.uuid4().hex[:8]}"
    dbz_topic = f"{dbz_prefix}.public.mixed"
    ensure_topics(stack.kafka_bootstrap, [TopicSpec(dbz_topic, 1, 1, {})])

    sink = {
        **SINK_SETTINGS,
        "topics": ",".join([*topics.values(), dbz_topic]),
        "connection.url": f"jdbc:postgresql://{stack.pg_host}:{stack.pg_port}/{sink_database}",
        "connection.username": stack.pg_user,
        "connection.password": stack.pg_password,
    }
    sink_engine = sa.create_engine(stack.pg_url(sink_database))
    expected = {
        "q_mixed": mixed_types.rows(pg_engine, "mixed"),
        "pg_mixed": mixed_types.rows(pg_engine, "mixed"),
        "my_mixed": mixed_types.rows(mysql_engine, "mixed"),
    }
    assert (
        [row[0] for row in expected["pg_mixed"]] == [row[0] for row in expected["my_mixed"]] == mixed_types.FINAL_KEYS
    )
    for name in topics:  # what liberation's verify reads back from connect-json is our JSON forms again
        state = topic_state(stack.kafka_bootstrap, topics[name])
        assert [mixed_types.typed(state[k]) for k in sorted(state, key=lambda k: int(k[6:-1]))] == expected[name]

    def replicas() -> dict[str, list[tuple[Any, ...]]] | None:
        found = {}
        for name, topic in topics.items():
            try:
                found[name] = mixed_types.rows(sink_engine, _sink_table(topic))
            except sa.exc.ProgrammingError:  # not created yet
                return None
        return found if found == expected else None

    def debezium_table_filled() -> bool:
        try:
            return len(mixed_types.rows(sink_engine, _sink_table(dbz_topic))) == len(expected["pg_mixed"])
        except sa.exc.ProgrammingError:
            return False

    try:
        with ConnectWorker(
            stack,
            tmp_path / "connect",
            {
                f"sink-{dbz_prefix}": sink,
                f"source-{dbz_prefix}": _debezium_source(stack, pg_database, dbz_prefix),
            },
        ) as worker:
            try:
                worker.wait_until(replicas, timeout=240, what="the sink's replicas to equal the sources")
            except AssertionError:
                found = {}
                for name, topic in topics.items():
                    try:
                        found[name] = mixed_types.rows(sink_engine, _sink_table(topic))
                    except sa.exc.ProgrammingError as exc:
                        found[name] = [str(exc)[:200]]
                details = "\n".join(f"{n}:\n  source  {expected[n]}\n  replica {found[n]}" for n in topics)
                raise AssertionError(f"replicas differ:\n{details}\n{worker.log_tail(3000)}") from None
            worker.wait_until(debezium_table_filled, timeout=120, what="the replica of Debezium's own topic")

        ours = {name: _column_types(sink_engine, _sink_table(topic)) for name, topic in topics.items()}
        debezium = _column_types(sink_engine, _sink_table(dbz_topic))
        for name in ("q_mixed", "pg_mixed"):
            assert ours[name] == debezium, f"{name}: column types {ours[name]} differ from Debezium's {debezium}"
        print(f"\nsink column types (same as from Debezium's topic): {debezium}\nfrom MariaDB: {ours['my_mixed']}")
    finally:
        sink_engine.dispose()
