"""A poison value is a row problem: its row goes to the quarantine, named by stream, key and column; the stream goes on.

Against the real stack: a 1 MB row passes with the default limits, a row over
``MAX_RECORD_BYTES`` is quarantined while the other rows of its batch and table
are published and later changes still arrive (PostgreSQL query snapshot and
CDC, MariaDB snapshot and binlog), and at the writer a value its converter
refused (``problems``) or the serializer refuses quarantines only its row.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa

from liberation_assets.cli import main
from liberation_assets.core.contract.quarantine import quarantine_topic, summarize
from liberation_assets.core.contract.validate import ContractValidator
from liberation_assets.core.engine import cdc_mysql, cdc_postgres
from liberation_assets.core.engine.query_pattern import QueryPattern
from liberation_assets.core.engine.redrive import redrive
from liberation_assets.core.engine.runtime import StreamRuntime
from liberation_assets.core.events import ChangeBatch, ChangeEvent
from liberation_assets.core.publish.topics import MAX_RECORD_BYTES
from liberation_assets.core.verify.run import verify
from liberation_tests.core.engine.cdc_postgres_support import cdc_spec as pg_cdc_spec
from liberation_tests.core.readers.binlog.cdc_support import cdc_spec as my_cdc_spec
from liberation_tests.core.readers.binlog.cdc_support import source_of
from liberation_tests.fix_kafka import consume_all
from liberation_tests.fix_stack import spec_to_yaml

pytestmark = pytest.mark.integration
ONE_MB = 1024 * 1024
TOO_BIG = MAX_RECORD_BYTES + ONE_MB


def _live(spec, stream: str) -> dict[int, dict]:
    """Key id → after-image of the topic's latest record per key."""
    state: dict[int, dict] = {}
    for message in consume_all(spec.kafka.resolved_bootstrap_servers(), spec.topic_for(stream)):
        if message.value is None:
            state.pop(message.key_object["id"], None)
        elif message.envelope["after"] is not None:
            state[message.key_object["id"]] = message.envelope["after"]
    return state


def _quarantined(spec, stream: str) -> list[dict]:
    return [
        m.envelope
        for m in consume_all(spec.kafka.resolved_bootstrap_servers(), quarantine_topic(spec.topic_for(stream)))
    ]


def _assert_only_the_big_row_quarantined(spec, stream: str, big_id: int, published_ids: set[int]) -> None:
    live = _live(spec, stream)
    assert set(live) == published_ids, sorted(live)
    assert len(live[2]["body"]) == ONE_MB  # the 1 MB row passed whole
    [record] = _quarantined(spec, stream)
    assert record["stream"] == stream and record["key"] == {"id": big_id} and record["columns"] == ["body"]
    assert record["poison"] is True
    [reason] = record["failed_checks"]
    assert reason.startswith("column body: record too large") and str(MAX_RECORD_BYTES) in reason
    assert record["row"]["body"]["liberation.truncated_bytes"] > MAX_RECORD_BYTES  # summarized, so the record fits


def _assert_replica_misses_only_the_quarantined(spec, tmp_path) -> None:
    """The replica materializer fetches the 1 MB records; the source server sees every published value as its own."""
    comparison = verify(spec, "bodies", replica=f"sqlite:///{tmp_path}/replica.sqlite").comparison
    assert comparison.missing == [b'{"id":11}', b'{"id":3}'] and not comparison.different and not comparison.extra, (
        comparison.describe()
    )


@pytest.fixture
def pg_bodies(pg_engine):
    with pg_engine.begin() as c:
        c.execute(
            sa.text(
                "CREATE TABLE bodies (id int PRIMARY KEY, body text, updated_at timestamptz NOT NULL DEFAULT now())"
            )
        )
        c.execute(
            sa.text(
                "INSERT INTO bodies (id, body) VALUES (1, 'small'), (2, repeat('x', :one)), (3, repeat('y', :big)), (4, 'after')"
            ),
            {"one": ONE_MB, "big": TOO_BIG},
        )
    return pg_engine


def test_postgresql_query_snapshot_quarantines_only_the_oversized_row(make_spec, pg_database, pg_bodies) -> None:
    spec = make_spec(pg=pg_database, streams={"bodies": {"source": "pg", "table": "bodies", "key": ["id"]}})
    pattern = QueryPattern(spec, "bodies")
    try:
        result = pattern.snapshot()
        assert result.result.quarantined == 1
        _assert_only_the_big_row_quarantined(spec, "bodies", 3, {1, 2, 4})
        with pg_bodies.begin() as c:
            c.execute(sa.text("UPDATE bodies SET body = 'fixed', updated_at = now() WHERE id = 3"))
            c.execute(sa.text("INSERT INTO bodies (id, body, updated_at) VALUES (5, 'later', now())"))
        pattern.incremental()
    finally:
        pattern.close()
    live = _live(spec, "bodies")
    assert live[3]["body"] == "fixed" and live[5]["body"] == "later"  # the stream went on; the fixed row arrived


def test_postgresql_cdc_snapshot_and_stream_quarantine_only_the_oversized_row(
    make_spec, pg_database, pg_bodies, tmp_path
) -> None:
    spec = pg_cdc_spec(make_spec, pg_database, {"bodies": {"table": "bodies", "key": ["id"]}})
    source = next(iter(spec.sources))
    cdc_postgres.drain(spec, source)
    _assert_only_the_big_row_quarantined(spec, "bodies", 3, {1, 2, 4})
    with pg_bodies.begin() as c:  # one transaction: an oversized row between two good ones
        c.execute(
            sa.text("INSERT INTO bodies (id, body) VALUES (10, 'a'), (11, repeat('z', :big)), (12, repeat('w', :one))"),
            {"big": TOO_BIG, "one": ONE_MB},
        )
    cdc_postgres.drain(spec, source)
    with pg_bodies.begin() as c:
        c.execute(sa.text("INSERT INTO bodies (id, body) VALUES (13, 'later')"))
    cdc_postgres.drain(spec, source)
    live = _live(spec, "bodies")
    assert {10, 12, 13} <= set(live) and 11 not in live and len(live[12]["body"]) == ONE_MB
    keys = [r["key"] for r in _quarantined(spec, "bodies")]
    assert keys == [{"id": 3}, {"id": 11}]
    _assert_replica_misses_only_the_quarantined(spec, tmp_path)


def test_mariadb_snapshot_and_binlog_quarantine_only_the_oversized_row(
    make_spec, mysql_database, mysql_engine, tmp_path
) -> None:
    with mysql_engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE bodies (id INT PRIMARY KEY, body LONGTEXT)")
        c.execute(
            sa.text(
                "INSERT INTO bodies VALUES (1, 'small'), (2, REPEAT('x', :one)), (3, REPEAT('y', :big)), (4, 'after')"
            ),
            {"one": ONE_MB, "big": TOO_BIG},
        )
    spec = my_cdc_spec(make_spec, mysql_database, {"bodies": {"table": "bodies", "key": ["id"]}})
    cdc_mysql.drain(spec, source_of(spec))
    _assert_only_the_big_row_quarantined(spec, "bodies", 3, {1, 2, 4})
    with mysql_engine.begin() as c:
        c.execute(
            sa.text("INSERT INTO bodies VALUES (10, 'a'), (11, REPEAT('z', :big)), (12, REPEAT('w', :one))"),
            {"big": TOO_BIG, "one": ONE_MB},
        )
    cdc_mysql.drain(spec, source_of(spec))
    with mysql_engine.begin() as c:
        c.exec_driver_sql("INSERT INTO bodies VALUES (13, 'later')")
    cdc_mysql.drain(spec, source_of(spec))
    live = _live(spec, "bodies")
    assert {10, 12, 13} <= set(live) and 11 not in live and len(live[12]["body"]) == ONE_MB
    assert [r["key"] for r in _quarantined(spec, "bodies")] == [{"id": 3}, {"id": 11}]
    _assert_replica_misses_only_the_quarantined(spec, tmp_path)


def test_writer_quarantines_an_unconvertible_and_an_unserializable_value_alone(
    make_spec, pg_database, pg_engine, tmp_path, capsys
) -> None:
    with pg_engine.begin() as c:
        c.execute(
            sa.text(
                "CREATE TABLE things (id int PRIMARY KEY, amount numeric, updated_at timestamptz NOT NULL DEFAULT now())"
            )
        )
    spec = make_spec(pg=pg_database, streams={"things": {"source": "pg", "table": "things", "key": ["id"]}})
    runtime = StreamRuntime(spec, "things", "query")
    try:
        writer = runtime.writer
        assert isinstance(writer.validator, ContractValidator)
        events = [
            ChangeEvent("r", {"id": 1}, None, {"id": 1, "amount": "1.5"}, 1000),
            ChangeEvent(
                "r",
                {"id": 2},
                None,
                {"id": 2, "amount": "1e400000"},
                1000,
                problems=["column amount: exceeds the range the type mapping carries"],
            ),
            ChangeEvent("r", {"id": 3}, None, {"id": 3, "amount": Decimal("NaN")}, 1000),  # the serializer refuses it
            ChangeEvent("r", {"id": 4}, None, {"id": 4, "amount": "2"}, 1000),
        ]
        result = writer.write(ChangeBatch(events, None))
    finally:
        runtime.close()
    assert (result.published, result.quarantined, result.transactions) == (2, 2, 1)
    assert set(_live(spec, "things")) == {1, 4}
    records = {r["key"]["id"]: r for r in _quarantined(spec, "things")}
    assert records[2]["failed_checks"] == ["column amount: exceeds the range the type mapping carries"]
    assert (
        records[2]["stream"] == "things"
        and records[2]["columns"] == ["amount"]
        and records[2]["row"]["amount"] == "1e400000"
    )
    [reason] = records[3]["failed_checks"]
    assert reason.startswith("column amount: cannot be serialized") and records[3]["row"]["amount"] == "Decimal('NaN')"

    # The re-drive never publishes a poison row as if valid: it stays quarantined until the source row changes.
    summary = redrive(spec, "things")
    assert (summary.examined, summary.republished, summary.requarantined) == (2, 0, 2)
    assert set(_live(spec, "things")) == {1, 4}
    assert summarize(spec, "things").open == 2
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(spec_to_yaml(spec))
    assert main(["--spec", str(spec_file), "quarantine", "things", "--list", "5"]) == 0
    out = capsys.readouterr().out
    assert "stream=things" in out and 'key={"id":2}' in out and "column amount" in out and "poison" in out
    runtime = StreamRuntime(spec, "things", "query")
    try:  # the source row changed and the pattern published it: its poison record is superseded
        runtime.writer.write(ChangeBatch([ChangeEvent("u", {"id": 2}, None, {"id": 2, "amount": "3"}, 2000)], None))
    finally:
        runtime.close()
    summary = redrive(spec, "things")
    assert (summary.examined, summary.superseded, summary.republished, summary.requarantined) == (2, 1, 0, 1)
    assert _live(spec, "things")[2] == {"id": 2, "amount": "3"}
