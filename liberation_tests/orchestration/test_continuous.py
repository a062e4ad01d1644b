"""Continuous mode: the spec's choice, the follow run and its supervisor, and freshness when a follower stops."""

from __future__ import annotations

import time
import uuid

import dagster as dg
import pytest
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from liberation_assets.core.spec import Spec, parse_spec
from liberation_assets.orchestration import continuous, freshness, translator
from liberation_assets.orchestration.build import build_definitions
from liberation_assets.orchestration.resources import build_resources
from liberation_assets.orchestration.runs import FOLLOW_TAG
from liberation_tests.core.engine.cdc_postgres_support import cdc_spec, envelopes, write_spec
from liberation_tests.support import wait_until

SPEC = """
sources:
  db: {url: "postgresql+psycopg://u:${PW}@h/db", mode: MODE}
streams:
  a: {source: db, table: a, key: [id], cursor: null, patterns: [cdc]}
  b: {source: db, table: b, key: [id], patterns: [query]}
outboxes:
  box: {source: db, mode: continuous}
"""


def _spec(mode: str) -> Spec:
    return parse_spec(SPEC.replace("MODE", mode))


def test_a_continuous_source_gets_a_follow_job_and_its_supervisor_instead_of_the_micro_batch_sensor() -> None:
    defs = build_definitions(_spec("continuous"))
    sensors = {s.name for s in defs.sensors}
    assert {"db_follow_sensor", "box_follow_sensor", freshness.SENSOR_NAME} <= sensors
    assert "db_cdc_sensor" not in sensors and "box_relay_sensor" not in sensors
    assert {j.name for j in defs.jobs} >= {"db_follow", "box_follow"}
    assert defs.resolve_job_def("db_follow").tags[FOLLOW_TAG] == "db"

    micro = {s.name for s in build_definitions(_spec("micro_batch")).sensors}
    assert "db_cdc_sensor" in micro and "db_follow_sensor" not in micro


def test_the_main_job_leaves_the_followers_assets_to_them_and_a_catch_up_job_per_follower_has_them() -> None:
    from pathlib import Path

    from liberation_assets.core.spec import load_spec
    from liberation_assets.orchestration.build import MAIN_JOB

    demo = load_spec(Path(__file__).resolve().parents[2] / "liberation.yaml")
    defs = build_definitions(demo)
    followed = continuous.continuous_keys(demo)
    assert (
        translator.asset_key("inventory", "cdc") in followed
        and translator.asset_key("shop_outbox", "relay") in followed
    )
    main = defs.resolve_job_def(MAIN_JOB).asset_layer.selected_asset_keys
    assert not main & followed  # a drain beside the follower would fence it
    assert {translator.asset_key("products", "incremental"), translator.asset_key("inventory", "replica")} <= main
    for follower in continuous.followers(demo):
        catch_up = defs.resolve_job_def(follower.catch_up_job_name)
        assert catch_up.asset_layer.selected_asset_keys == set(follower.keys.values()), follower.name

    micro_defs = build_definitions(_spec("micro_batch"))  # the source's cdc is the main job's; box is still followed
    assert translator.asset_key("a", "cdc") in micro_defs.resolve_job_def(MAIN_JOB).asset_layer.selected_asset_keys
    assert (
        translator.asset_key("box", "relay") not in micro_defs.resolve_job_def(MAIN_JOB).asset_layer.selected_asset_keys
    )


def test_the_supervisor_starts_a_follow_run_only_when_none_is_queued_or_running() -> None:
    defs = build_definitions(_spec("continuous"))
    sensor = defs.resolve_sensor_def("db_follow_sensor")
    with dg.instance_for_test() as instance:

        def tick():
            with dg.build_sensor_context(instance=instance) as context:
                return sensor(context)

        request = tick()
        assert isinstance(request, dg.RunRequest) and request.tags[FOLLOW_TAG] == "db"
        location = InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name="liberation_assets.definitions"))
        origin = RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), "db_follow")
        run = instance.add_run(
            DagsterRun(
                job_name="db_follow",
                run_id=str(uuid.uuid4()),
                status=dg.DagsterRunStatus.QUEUED,
                tags=dict(request.tags),
                remote_job_origin=origin,
            )
        )
        assert isinstance(tick(), dg.SkipReason)
        instance.report_run_failed(run)  # the follower died: restarted once the back-off has passed
        skip = tick()
        assert isinstance(skip, dg.SkipReason) and "failed" in (skip.skip_message or "")


def test_the_demo_instance_keeps_its_micro_batch_slots_beside_the_long_lived_follow_runs() -> None:
    from pathlib import Path

    from dagster._core.instance.config import dagster_instance_config

    from liberation_assets.core.spec import load_spec
    from liberation_assets.demo.instance import TEMPLATE

    demo = load_spec(Path(__file__).resolve().parents[2] / "liberation.yaml")
    assert {f.name for f in continuous.followers(demo)} == {"shop", "shop_maria", "shop_outbox"}
    config, _ = dagster_instance_config(str(TEMPLATE.parent), config_filename=TEMPLATE.name)
    runs = config["concurrency"]["runs"]
    assert runs["max_concurrent_runs"] - len(continuous.followers(demo)) >= 4  # as many micro-batch runs as before
    assert {"key": FOLLOW_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in runs[
        "tag_concurrency_limits"
    ]


def test_the_supervisor_waits_while_a_catch_up_run_of_its_follower_is_queued() -> None:
    defs = build_definitions(_spec("continuous"))
    sensor = defs.resolve_sensor_def("db_follow_sensor")
    [follower] = [f for f in continuous.followers(_spec("continuous")) if f.name == "db"]
    assert follower.catch_up_job_name == "db_drain" and defs.resolve_job_def("db_drain")
    with dg.instance_for_test() as instance:
        location = InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name="liberation_assets.definitions"))
        origin = RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), "db_drain")
        instance.add_run(
            DagsterRun(
                job_name="db_drain",
                run_id=str(uuid.uuid4()),
                status=dg.DagsterRunStatus.QUEUED,
                tags=follower.catch_up_tags,
                remote_job_origin=origin,
            )
        )
        with dg.build_sensor_context(instance=instance) as context:
            skip = sensor(context)
        assert isinstance(skip, dg.SkipReason) and "db_drain" in (skip.skip_message or "")


@pytest.mark.integration
def test_a_stopped_follower_goes_warn_then_fail_by_its_windows_and_its_restart_brings_it_back(
    make_spec, pg_database, pg_engine, tmp_path
) -> None:
    with pg_engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE a (id int PRIMARY KEY, v text)")
        connection.exec_driver_sql("INSERT INTO a VALUES (1, 'a')")
    base = cdc_spec(
        make_spec,
        pg_database,
        {"a": {"table": "a", "key": ["id"], "freshness": {"warn_after": "8s", "fail_after": "16s"}}},
    )
    data = base.model_dump(by_alias=True)
    source = next(iter(data["sources"]))
    data["sources"][source]["mode"] = "continuous"
    spec = Spec.model_validate(data)
    path = write_spec(spec, tmp_path)
    # Only the follow job: Dagster refuses a FreshnessPolicy under a minute on the assets, data_fresh has no such floor.
    defs = dg.Definitions.merge(continuous.definitions(spec), dg.Definitions(resources=build_resources(str(path))))
    job = defs.resolve_job_def(f"{source}_follow")
    key = translator.asset_key("a", "cdc")
    run_config = {"ops": {f"{source}_follower": {"config": {"duration_seconds": 3.0, "report_every_seconds": 1.0}}}}

    def state() -> dg.AssetCheckEvaluation:
        return {e.asset_key: e for e in freshness.evaluate_all(spec, instance)}[key]

    def follow_until_materialized(after: float) -> dg.EventLogEntry:
        def materialized() -> bool:
            assert job.execute_in_process(run_config=run_config, instance=instance).success
            event = instance.get_latest_materialization_event(key)
            return event is not None and event.timestamp > after

        wait_until(materialized, 120, "the follow run reported no materialization")
        event = instance.get_latest_materialization_event(key)
        assert event is not None
        return event

    with dg.instance_for_test() as instance:
        event = follow_until_materialized(0)
        metadata = event.asset_materialization.metadata  # type: ignore[union-attr]
        assert metadata["position"].value.startswith("0/") and metadata["pattern"].value == "continuous"
        assert state().passed  # stopped, but nothing is waiting: a quiet source stays fresh

        with pg_engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO a VALUES (2, 'b')")  # nobody follows the slot now
        seen: list[dg.AssetCheckSeverity] = []

        def failing() -> bool:
            evaluation = state()
            if not evaluation.passed and evaluation.severity not in seen:
                seen.append(evaluation.severity)
            return dg.AssetCheckSeverity.ERROR in seen

        wait_until(failing, 90, lambda: f"never failed; seen {seen}")
        assert seen == [dg.AssetCheckSeverity.WARN, dg.AssetCheckSeverity.ERROR]  # warn first, then fail

        restarted = follow_until_materialized(event.timestamp)
        wait_until(lambda: state().passed, 60, "the restarted follower did not bring it back")
        assert [e["after"]["id"] for e in envelopes(spec, "a") if e["op"] != "r"][-1:] == [2]
        published = restarted.asset_materialization.metadata  # type: ignore[union-attr]
        assert "published" in published


def test_progress_windows_carry_the_lag_figures() -> None:
    from liberation_assets.core.progress import TopicWindow, position_text

    window = TopicWindow(published=3, lags_ms=[10, 20, 1500], last_event_ms=int(time.time() * 1000))
    figures = window.metadata()
    assert figures["event_to_publish_lag_seconds"] == 1.5 and figures["event_to_publish_lag_p50_seconds"] == 0.02
    assert position_text({"lsn": 0x16B3F28}) == "0/16B3F28"
    assert position_text({"file": "mysql-bin.000003", "pos": 4}) == "mysql-bin.000003:4"


@pytest.mark.parametrize("url", ["postgresql+psycopg://u:${PW}@h/db", "mysql+pymysql://u:${PW}@h/db"])
def test_a_drain_beside_a_running_follower_fails_with_the_reason_instead_of_fencing_it(
    url: str, tmp_path, monkeypatch
) -> None:
    """'Materialize all' in the UI also selects the follower's assets: their drain must not fence the follower."""
    monkeypatch.setenv("PW", "unused")
    text = SPEC.replace("MODE", "continuous").replace("postgresql+psycopg://u:${PW}@h/db", url)
    path = tmp_path / "liberation.yaml"
    path.write_text(text)
    spec = parse_spec(text)
    defs = build_definitions(spec)
    [follower] = [f for f in continuous.followers(spec) if f.name == "db"]
    drain = defs.resolve_job_def(follower.catch_up_job_name)
    with dg.instance_for_test() as instance:
        instance.add_run(
            DagsterRun(
                job_name=follower.job_name,
                run_id=str(uuid.uuid4()),
                status=dg.DagsterRunStatus.STARTED,
                tags={FOLLOW_TAG: "db"},
            )
        )
        result = drain.execute_in_process(instance=instance, resources=build_resources(str(path)), raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    data = failure.step_failure_data
    assert data.user_failure_data is not None, data.error
    assert "streamed continuously by its follower" in (data.user_failure_data.description or "")
