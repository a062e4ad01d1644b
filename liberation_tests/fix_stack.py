"""Fixtures that start the real local stack and give each test its own databases.

Nothing is mocked: tests talk to the Kafka, PostgreSQL and MariaDB processes
that ``liberation stack up`` runs.  Each test gets fresh databases and a unique
topic prefix, so tests never interfere.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from liberation_assets.core.readers.pg_types import SESSION_OPTIONS
from liberation_assets.core.spec import Spec
from liberation_assets.stack import StackSettings, ensure_stack
from liberation_tests.support import mysql_admin, pg_admin
from liberation_tests.support import spec_to_yaml as spec_to_yaml  # re-exported: tests import it from here


@pytest.fixture(scope="session")
def stack() -> StackSettings:
    """The local stack, brought up once per session (idempotent if already running)."""
    return ensure_stack(log=lambda *_: None)


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def pg_database(stack: StackSettings) -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards with its replication slots."""
    name = _unique("t")
    with pg_admin(stack) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield name
    with pg_admin(stack) as admin:
        for (slot,) in admin.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE database = %s", (name,)
        ).fetchall():
            admin.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = %s AND active_pid IS NOT NULL",
                (slot,),
            )
            try:
                admin.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            except psycopg.Error:
                pass
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_engine(stack: StackSettings, pg_database: str) -> Iterator[sa.Engine]:
    # The session settings liberation's own engines use (connect.create_source_engine): CAST(col AS TEXT) agrees.
    engine = sa.create_engine(stack.pg_url(pg_database), connect_args={"options": SESSION_OPTIONS})
    yield engine
    engine.dispose()


@pytest.fixture
def mysql_database(stack: StackSettings) -> Iterator[str]:
    """A fresh MariaDB database, dropped afterwards."""
    name = _unique("t")
    connection = mysql_admin(stack)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    yield name
    connection.ping(reconnect=True)  # the test may have restarted the server
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
    connection.close()


@pytest.fixture
def mysql_engine(stack: StackSettings, mysql_database: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(
        stack.mysql_url(mysql_database), connect_args={"init_command": "SET time_zone = '+00:00'"}
    )
    yield engine
    engine.dispose()


@pytest.fixture
def make_spec(stack: StackSettings, request: pytest.FixtureRequest):
    """Build a validated Spec for this test's databases, with a unique topic prefix and positions topic.

    ``make_spec(streams={...}, pg="dbname", mysql="dbname", outboxes={...})``; sources are named ``pg`` and ``mysql``.
    """
    token = uuid.uuid4().hex[:8]

    def build(
        *,
        streams: dict[str, Any] | None = None,
        outboxes: dict[str, Any] | None = None,
        pg: str | None = None,
        mysql: str | None = None,
        kafka: dict[str, Any] | None = None,
        sources: dict[str, Any] | None = None,
    ) -> Spec:
        all_sources: dict[str, Any] = dict(sources or {})
        if pg:
            # One server clock for writers and poller, so no clock-skew allowance is needed in tests.
            all_sources["pg"] = {
                "url": f"postgresql+psycopg://{stack.pg_user}:${{LIBERATION_TEST_PG_PASSWORD:-{stack.pg_password}}}@{stack.pg_host}:{stack.pg_port}/{pg}",
                "clock_skew": "0s",
            }
        if mysql:
            all_sources["mysql"] = {
                "url": f"mysql+pymysql://{stack.mysql_user}:${{LIBERATION_TEST_MYSQL_PASSWORD:-{stack.mysql_password}}}@{stack.mysql_host}:{stack.mysql_port}/{mysql}",
                "safety_lag": "1s",
                "clock_skew": "0s",
            }
        kafka_settings = {
            "bootstrap_servers": stack.kafka_bootstrap,
            "topic_prefix": f"t{token}",
            "positions_topic": f"t{token}.positions",
            "partitions": 1,
        }
        kafka_settings.update(kafka or {})
        return Spec.model_validate(
            {"kafka": kafka_settings, "sources": all_sources, "streams": streams or {}, "outboxes": outboxes or {}}
        )

    return build
