"""Runs cost their work: in-process jobs, schedules that skip while a run of their stream is queued, priorities."""

from __future__ import annotations

import uuid
from pathlib import Path

import dagster as dg
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from liberation_assets.core.spec import load_spec
from liberation_assets.orchestration.build import build_definitions
from liberation_assets.orchestration.runs import ACTIVE_RUN_STATUSES, PRIORITY_TAG, QUERY_TAG

REPO = Path(__file__).resolve().parents[2]


def _defs() -> dg.Definitions:
    return build_definitions(load_spec(REPO / "liberation.yaml"))


def _add_run(instance: dg.DagsterInstance, job: str, tags: dict[str, str], status: dg.DagsterRunStatus) -> None:
    """A run as the queued run coordinator stores it (a queued run must name where its job lives)."""
    location = InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name="liberation_assets.definitions"))
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), job)
    instance.add_run(
        DagsterRun(job_name=job, run_id=str(uuid.uuid4()), status=status, tags=tags, remote_job_origin=origin)
    )


def test_every_job_runs_in_process_but_the_partitioned_backfill() -> None:
    repository = _defs().get_repository_def()
    jobs = repository.get_all_jobs()
    assert jobs and all(job.executor_def.name == "in_process" for job in jobs), {
        job.name: job.executor_def.name for job in jobs
    }


def test_the_partitioned_backfill_job_keeps_the_multiprocess_executor(make_spec, pg_database) -> None:
    spec = make_spec(
        pg=pg_database,
        streams={
            "items": {
                "source": "pg",
                "table": "items",
                "key": ["id"],
                "patterns": ["snapshot"],
                "snapshot_partitions": {"bounds": [10, 20]},
            }
        },
    )
    defs = build_definitions(spec)
    assert defs.resolve_job_def("items_snapshot_backfill").executor_def.name == "multiprocess"
    assert defs.resolve_job_def("liberate_all").executor_def.name == "in_process"


def test_a_poll_schedule_skips_while_a_run_of_its_stream_is_queued_and_requests_one_after() -> None:
    defs = _defs()
    schedule = defs.resolve_schedule_def("products_poll_schedule")
    with dg.instance_for_test() as instance:
        _schedule_waits_for_queued_runs(defs, schedule, instance)


def _schedule_waits_for_queued_runs(
    defs: dg.Definitions, schedule: dg.ScheduleDefinition, instance: dg.DagsterInstance
) -> None:
    first = schedule.evaluate_tick(dg.build_schedule_context(instance=instance))
    assert [r.tags[QUERY_TAG] for r in first.run_requests or []] == ["products"]

    _add_run(instance, "prices_poll", {QUERY_TAG: "prices"}, dg.DagsterRunStatus.QUEUED)  # another stream: no matter
    assert schedule.evaluate_tick(dg.build_schedule_context(instance=instance)).run_requests

    _add_run(instance, "products_poll", {QUERY_TAG: "products"}, dg.DagsterRunStatus.QUEUED)
    skipped = schedule.evaluate_tick(dg.build_schedule_context(instance=instance))
    assert not skipped.run_requests and "already queued or running" in (skipped.skip_message or "")

    reconcile = defs.resolve_schedule_def("products_reconcile_schedule")  # the stream's other job waits too
    assert not reconcile.evaluate_tick(dg.build_schedule_context(instance=instance)).run_requests


def test_a_finished_run_does_not_hold_the_schedule() -> None:
    schedule = _defs().resolve_schedule_def("products_poll_schedule")
    with dg.instance_for_test() as instance:
        for status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
            _add_run(instance, "products_poll", {QUERY_TAG: "products"}, status)
        assert schedule.evaluate_tick(dg.build_schedule_context(instance=instance)).run_requests
    assert dg.DagsterRunStatus.QUEUED in ACTIVE_RUN_STATUSES


def test_log_runs_outrank_polls_in_the_queue() -> None:
    from liberation_assets.orchestration.runs import LOG_PRIORITY

    assert int(LOG_PRIORITY[PRIORITY_TAG]) > 0  # query runs keep the default priority 0


def test_the_log_sensor_factory_says_why_it_skips_and_why_it_runs() -> None:
    from liberation_assets.orchestration import translator
    from liberation_assets.orchestration.resources import LiberationResource
    from liberation_assets.orchestration.runs import CDC_TAG, REASON_TAG, Probe, log_sensor

    key = translator.asset_key("s", "cdc")
    found: list[Probe] = []

    sensor = log_sensor(
        name="s_cdc_sensor",
        job=translator.asset_job("src", "drain", [key], "drain"),
        interval_seconds=30,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="test",
        tags={CDC_TAG: "src"},
        what="CDC run of src",
        heartbeat_key=key,
        heartbeat_seconds=3600,
        probe=lambda spec: found[-1],
    )
    resources = {"liberation": LiberationResource(spec_path=str(REPO / "liberation.yaml"))}

    def tick(instance: dg.DagsterInstance, probe: Probe) -> dg.SensorResult | dg.SkipReason:
        found.append(probe)
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            return sensor(context)

    with dg.instance_for_test() as instance:
        idle = tick(instance, Probe(False, "no unread changes in the slot"))  # never materialized: a heartbeat is due
        assert isinstance(idle, dg.SensorResult) and idle.run_requests[0].tags[REASON_TAG] == "heartbeat"
        instance.report_runless_asset_event(dg.AssetMaterialization(key))
        quiet = tick(instance, Probe(False, "no unread changes in the slot"))
        assert isinstance(quiet, dg.SkipReason) and quiet.skip_message == "no unread changes in the slot"
        busy = tick(instance, Probe(None, "the slot is in use by another reader"))
        assert isinstance(busy, dg.SkipReason) and busy.skip_message == "the slot is in use by another reader"
        due = tick(instance, Probe(True, "-", {"liberation/behind": "10 bytes"}))
        assert isinstance(due, dg.SensorResult)
        assert due.run_requests[0].tags == {
            CDC_TAG: "src",
            PRIORITY_TAG: "10",
            "liberation/behind": "10 bytes",
            REASON_TAG: "pending",
        }
        _add_run(instance, "src_drain", {CDC_TAG: "src"}, dg.DagsterRunStatus.STARTED)
        waiting = tick(instance, Probe(True, "-"))
        assert isinstance(waiting, dg.SkipReason) and "already queued or running" in (waiting.skip_message or "")
