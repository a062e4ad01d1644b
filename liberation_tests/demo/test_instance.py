"""The demo's Dagster instance loads with PostgreSQL storage on the stack and keeps runs and events there."""

from __future__ import annotations

import uuid

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRun

from liberation_assets.demo.instance import MARKER, prepare_home
from liberation_assets.orchestration.runs import STREAM_TAGS

pytestmark = pytest.mark.integration


def test_the_demo_instance_keeps_runs_events_and_schedules_in_postgres(
    stack, pg_database, tmp_path, monkeypatch
) -> None:
    home = tmp_path / "dagster_home"
    for name, value in prepare_home(home, stack, database=pg_database).items():
        monkeypatch.setenv(name, value)
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        limits = {limit["key"] for limit in instance.get_concurrency_config().run_queue_config.tag_concurrency_limits}
        assert set(STREAM_TAGS) <= limits

        run_id = str(uuid.uuid4())
        instance.add_run(DagsterRun(job_name="products_poll", run_id=run_id, tags={"liberation/query": "products"}))
        instance.report_engine_event("round trip through PostgreSQL", instance.get_run_by_id(run_id))
        assert instance.get_run_by_id(run_id).tags["liberation/query"] == "products"
        assert any(e.message == "round trip through PostgreSQL" for e in instance.all_logs(run_id))
    finally:
        instance.dispose()


def test_an_instance_file_written_by_hand_is_left_alone(stack, pg_database, tmp_path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    prepare_home(home, stack, database=pg_database)
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"
    (home / "dagster.yaml").write_text("")  # the empty file earlier demos touched is replaced
    prepare_home(home, stack, database=pg_database)
    assert (home / "dagster.yaml").read_text().startswith(MARKER)
