"""Flink SQL (PyFlink 2.0.1, flink-sql-connector-kafka 4.0.1-2.0) builds the source table from our topics:
``debezium-json`` over the debezium format and ``upsert-kafka`` over the flat format, query pattern and CDC.

PyFlink is ~800 MB with its jars, so it is not a project dependency: the test runs when
``LIBERATION_FLINK_PYTHON`` names a Python with ``apache-flink==2.0.1`` installed and
``LIBERATION_FLINK_KAFKA_JAR`` the connector jar (docs/consumers.md says how to get both), and skips otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from liberation_tests.consumers import mixed_types

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JOB = Path(__file__).with_name("flink_job.py")


def _flink() -> tuple[str, str]:
    python, jar = os.environ.get("LIBERATION_FLINK_PYTHON"), os.environ.get("LIBERATION_FLINK_KAFKA_JAR")
    if not python or not jar or not Path(python).exists() or not Path(jar).exists():
        pytest.skip(
            "set LIBERATION_FLINK_PYTHON (a Python with apache-flink==2.0.1) and LIBERATION_FLINK_KAFKA_JAR "
            "(org.apache.flink:flink-sql-connector-kafka:4.0.1-2.0) to run Flink"
        )
    return python, jar


def _flink_rows(bootstrap: str, topic: str, connector: str) -> list[tuple[Any, ...]]:
    python, jar = _flink()
    done = subprocess.run(
        [python, str(JOB), bootstrap, topic, connector, jar], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-4000:]
    found = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("[")]
    assert found, f"Flink built an empty table:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return [mixed_types.typed(dict(zip(mixed_types.COLUMNS, values))) for values in found]


@pytest.mark.parametrize(("value_format", "connector"), [("debezium", "debezium-json"), ("flat", "upsert-kafka")])
def test_flink_sql_builds_the_source_table(
    make_spec, pg_database, pg_engine, mysql_database, mysql_engine, value_format: str, connector: str
) -> None:
    _flink()
    spec = mixed_types.spec_for(make_spec, pg_database, mysql_database, value_format)
    mixed_types.replay(spec, pg_engine, mysql_engine)
    expected = mixed_types.rows(pg_engine, "mixed")
    for name in ("q_mixed", "pg_mixed"):
        assert _flink_rows(spec.kafka.resolved_bootstrap_servers(), spec.topic_for(name), connector) == expected, name
