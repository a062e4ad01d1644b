"""data_fresh: freshness on the data's clock (pending source changes), not on the time of the last run."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import pytest

from liberation_assets.core.spec import FreshnessSpec
from liberation_assets.orchestration import freshness
from liberation_assets.orchestration.build import build_definitions
from liberation_assets.orchestration.freshness import Pending, freshness_evaluation
from liberation_assets.orchestration.resources import build_resources
from liberation_assets.orchestration.translator import asset_key
from liberation_tests.core.engine.cdc_postgres_support import cdc_spec, write_spec

KEY = asset_key("s", "cdc")
WINDOWS = FreshnessSpec(warn_after=timedelta(minutes=3), fail_after=timedelta(minutes=10))
NOW = 1_000_000.0


def _state(pending: Pending, complete_since: float | None) -> tuple[bool, dg.AssetCheckSeverity]:
    evaluation = freshness_evaluation(KEY, WINDOWS, pending, complete_since, NOW)
    return evaluation.passed, evaluation.severity


def test_a_quiet_source_is_fresh_however_old_the_last_run() -> None:
    assert _state(Pending(False), NOW - 86_400)[0]
    assert _state(Pending(False), None)[0]


def test_unpublished_changes_warn_then_fail_by_the_windows_counted_from_the_last_complete_point() -> None:
    assert _state(Pending(True), NOW - 60) == (True, dg.AssetCheckSeverity.WARN)
    assert _state(Pending(True), NOW - 200) == (False, dg.AssetCheckSeverity.WARN)
    assert _state(Pending(True), NOW - 700) == (False, dg.AssetCheckSeverity.ERROR)
    assert _state(Pending(True), None) == (False, dg.AssetCheckSeverity.ERROR)  # never published


def test_the_outbox_counts_from_its_oldest_waiting_row_even_right_after_a_run() -> None:
    just_ran = NOW - 1
    assert _state(Pending(True, oldest_age_seconds=700), just_ran) == (False, dg.AssetCheckSeverity.ERROR)
    assert _state(Pending(True, oldest_age_seconds=5), just_ran)[0]


@pytest.mark.integration
def test_the_sensor_reports_a_cdc_stream_stale_while_the_slot_holds_changes_and_fresh_after_a_drain(
    make_spec, pg_database, pg_engine, tmp_path
) -> None:
    with pg_engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE a (id int PRIMARY KEY, v text)")
        connection.exec_driver_sql("INSERT INTO a VALUES (1, 'a')")
    spec = cdc_spec(
        make_spec,
        pg_database,
        {"a": {"table": "a", "key": ["id"], "freshness": {"warn_after": "3m", "fail_after": "10m"}}},
    )
    path = write_spec(spec, tmp_path)
    defs = build_definitions(spec, str(path))
    key = asset_key("a", "cdc")
    assert dg.AssetCheckKey(key, freshness.CHECK_NAME) in defs.resolve_asset_graph().asset_check_keys
    with dg.instance_for_test() as instance:

        def reported() -> dg.AssetCheckEvaluation:
            sensor = defs.resolve_sensor_def(freshness.SENSOR_NAME)
            with dg.build_sensor_context(instance=instance, resources=build_resources(str(path))) as context:
                assert isinstance(sensor(context), dg.SkipReason)  # reports without requesting a run
            record = instance.event_log_storage.get_latest_asset_check_execution_by_key(
                [dg.AssetCheckKey(key, freshness.CHECK_NAME)]
            )[dg.AssetCheckKey(key, freshness.CHECK_NAME)]
            return record.event.dagster_event.event_specific_data

        assert not reported().passed  # nothing published while the table has rows

        result = dg.materialize([defs.resolve_assets_def(key)], instance=instance, raise_on_error=False)
        assert result.success
        after = reported()
        assert after.passed and after.metadata["staleness_seconds"].value == 0.0  # nothing pending

        with pg_engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO a VALUES (2, 'b')")  # a change no run has published
        start = freshness.complete_since(instance, key)
        assert start is not None
        late = {e.asset_key: e for e in freshness.evaluate_all(spec, instance, now=start + 200)}[key]
        assert not late.passed and late.severity == dg.AssetCheckSeverity.WARN
        later = {e.asset_key: e for e in freshness.evaluate_all(spec, instance, now=start + 700)}[key]
        assert not later.passed and later.severity == dg.AssetCheckSeverity.ERROR
