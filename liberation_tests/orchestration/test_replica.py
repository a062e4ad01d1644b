"""``<stream>/replica`` assets: downstream of every publishing asset, blocking ``matches_source`` that names the key."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import dagster as dg
import orjson
import pytest
import sqlalchemy as sa
from confluent_kafka import Producer

from liberation_assets.core.spec import load_spec
from liberation_assets.core.verify.store import replica_table_name
from liberation_assets.orchestration.build import build_definitions
from liberation_assets.orchestration.replica import VERIFY_JOB, backlog_result
from liberation_tests.core.verify.test_settle import followed, source  # noqa: F401 (fixtures)
from liberation_tests.fix_stack import spec_to_yaml

REPO = Path(__file__).resolve().parents[2]
LEAVES = {"snapshot": "snapshot", "query": "incremental", "cdc": "cdc"}


def test_every_demo_stream_has_a_replica_checked_against_its_source() -> None:
    spec = load_spec(REPO / "liberation.yaml")
    defs = build_definitions(spec)
    graph = defs.resolve_asset_graph()
    for name, stream in spec.streams.items():
        node = graph.get(dg.AssetKey([name, f"{name}_replica"]))
        parents = {key.to_user_string() for key in node.parent_keys}
        assert {f"{name}/{name}_{LEAVES[p]}" for p in stream.patterns if p in LEAVES} <= parents, (name, parents)
        assert dg.AssetCheckKey(dg.AssetKey([name, f"{name}_replica"]), "matches_source") in graph.asset_check_keys
        assert dg.AssetCheckKey(dg.AssetKey([name, f"{name}_replica"]), "quarantine") in graph.asset_check_keys
    replica_def = defs.resolve_assets_def(dg.AssetKey(["products", "products_replica"]))
    [check_spec] = list(replica_def.check_specs)
    assert check_spec.name == "matches_source" and check_spec.blocking
    schedule = {s.name: s for s in defs.schedules}[f"{VERIFY_JOB}_schedule"]
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING  # the demo spec turns automation on


def _check(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == "matches_source"]
    return evaluation


@pytest.mark.integration
def test_matches_source_passes_then_fails_and_names_the_key(
    make_spec, pg_database, pg_engine, tmp_path, monkeypatch
) -> None:
    replica_file = tmp_path / "items.sqlite"
    monkeypatch.setenv("LIBERATION_REPLICA_URL", f"sqlite:///{replica_file}")
    with pg_engine.begin() as c:
        c.execute(
            sa.text("CREATE TABLE items (id int PRIMARY KEY, name text, updated_at timestamptz NOT NULL DEFAULT now())")
        )
        c.execute(sa.text("INSERT INTO items (id, name) SELECT i, 'item ' || i FROM generate_series(1, 500) i"))
    name = "items_" + pg_database.rsplit("_", 1)[-1]  # transactional ids are cluster-wide: no sharing with other tests
    spec = make_spec(
        pg=pg_database, kafka={"partitions": 2}, streams={name: {"source": "pg", "table": "items", "key": ["id"]}}
    )
    path = tmp_path / "spec.yaml"
    path.write_text(spec_to_yaml(spec))
    defs = build_definitions(spec, str(path))
    assets = [
        defs.resolve_assets_def(dg.AssetKey([name, f"{name}_{leaf}"]))
        for leaf in ("snapshot", "incremental", "replica")
    ]
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize(assets[:1], instance=instance).success
    with pg_engine.begin() as c:
        c.execute(sa.text("UPDATE items SET name = 'renamed', updated_at = now() WHERE id <= 20"))
    result = dg.materialize(
        assets,
        instance=instance,
        selection=[dg.AssetKey([name, f"{name}_incremental"]), dg.AssetKey([name, f"{name}_replica"])],
    )
    assert result.success
    evaluation = _check(result)
    assert evaluation.passed and evaluation.metadata["source_rows"].value == 500
    metadata = result.asset_materializations_for_node(f"{name}__{name}_replica")[0].metadata
    assert isinstance(metadata["event_to_publish_lag_seconds"], dg.FloatMetadataValue)
    assert isinstance(metadata["last_event_age_seconds"], dg.FloatMetadataValue)
    assert metadata["records_applied"].value == 520

    replica_only = [defs.resolve_assets_def(dg.AssetKey([name, f"{name}_replica"]))]
    with sqlite3.connect(replica_file) as db:
        db.execute(
            f"UPDATE {replica_table_name(name)} SET document = json_set(document, '$.name', 'tampered') WHERE key = ?",
            ('{"id":42}',),
        )
    failed = dg.materialize(replica_only, instance=instance, raise_on_error=False)
    assert not failed.success  # the blocking check fails the step
    evaluation = _check(failed)
    assert not evaluation.passed and evaluation.metadata["first_different_keys"].value == ['{"id":42}']
    assert evaluation.metadata["different_keys"].value == 1 and '{"id":42}' in (evaluation.description or "")
    [value] = evaluation.metadata["first_different_values"].value
    assert (value["key"], value["column"], value["source"], value["published"]) == (
        '{"id":42}',
        "name",
        "item 42",
        "tampered",
    )

    for leftover in tmp_path.glob("items.sqlite*"):
        leftover.unlink()  # the next run rebuilds the replica from the topic: the tampering is gone; now drop an event
    producer = Producer({"bootstrap.servers": spec.kafka.resolved_bootstrap_servers()})
    producer.produce(spec.topic_for(name), key=orjson.dumps({"id": 7}), value=None)
    assert producer.flush(30) == 0
    dropped = dg.materialize(replica_only, instance=instance, raise_on_error=False)
    evaluation = _check(dropped)
    assert not dropped.success and not evaluation.passed
    assert (
        evaluation.metadata["first_different_keys"].value == ['{"id":7}']
        and evaluation.metadata["missing_keys"].value == 1
    )


def test_backlog_passes_while_young_warns_then_fails_with_age() -> None:
    young, old, ancient = (backlog_result(3, age, warn_after=60, fail_after=600) for age in (5.0, 120.0, 900.0))
    assert young.passed and young.metadata["pending"].value == 3
    assert not old.passed and old.severity == dg.AssetCheckSeverity.WARN
    assert not ancient.passed and ancient.severity == dg.AssetCheckSeverity.ERROR
    assert isinstance(ancient.metadata["oldest_pending_age_seconds"], dg.FloatMetadataValue)


@pytest.mark.integration
def test_outbox_backlog_check_reports_waiting_rows(make_spec, pg_database, pg_engine, tmp_path) -> None:
    from liberation_assets.core.outbox import create_outbox_table, emit
    from liberation_tests.core.outbox.support import CounterBumped, outbox_spec

    spec = outbox_spec(make_spec, pg=pg_database, freshness={"fail_after": "10m", "warn_after": "1m"})
    create_outbox_table(pg_engine, spec.outboxes["ob"])
    with pg_engine.begin() as connection:
        for n in (1, 2, 3):
            emit(connection, CounterBumped(counter_id="c", n=n, writer=0))
        connection.execute(sa.text("UPDATE outbox SET occurred_at = occurred_at - interval '5 minutes'"))
    spec_file = tmp_path / "liberation.yaml"
    spec_file.write_text(spec_to_yaml(spec))
    key = dg.AssetCheckKey(dg.AssetKey(["ob", "ob_relay"]), "backlog")
    job = dg.define_asset_job("backlog_only", selection=dg.AssetSelection.checks(key))
    defs = dg.Definitions.merge(build_definitions(spec, str(spec_file)), dg.Definitions(jobs=[job]))
    result = defs.resolve_job_def("backlog_only").execute_in_process(instance=dg.DagsterInstance.ephemeral())
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["pending"].value == 3 and evaluation.metadata["oldest_pending_age_seconds"].value >= 299


@pytest.mark.integration
@pytest.mark.parametrize("source", ["postgresql"], indirect=True)
def test_verify_all_passes_a_followed_stream_under_writes(source, followed, tmp_path, monkeypatch) -> None:
    """The ``verify_all`` job's ``matches_source`` goes through the re-check of a continuous stream (``verify.settle``)."""
    from liberation_tests.core.verify.test_settle import UpdateLoop

    spec, replica = followed
    monkeypatch.setenv("LIBERATION_REPLICA_URL", replica)
    path = tmp_path / "spec-dagster.yaml"
    path.write_text(spec_to_yaml(spec))
    job = build_definitions(spec, str(path)).resolve_job_def(VERIFY_JOB)
    rechecked: list[int] = []
    with UpdateLoop(source[1]):
        while not any(rechecked):  # until a run met rows changed under it
            result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral())
            assert result.success
            evaluation = _check(result)
            assert evaluation.passed, evaluation.description
            rechecked.append(evaluation.metadata["rechecked_keys"].value)  # type: ignore[arg-type]
            assert len(rechecked) < 10, "no run ever met a row changed under it"
