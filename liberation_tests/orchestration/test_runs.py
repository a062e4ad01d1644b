"""Runs cost their work: in-process jobs, polls and schedules that skip while a run of their stream is queued, priorities."""

from __future__ import annotations

import functools
import json
import time
import uuid
from pathlib import Path

import dagster as dg
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from liberation_assets.core.spec import load_spec
from liberation_assets.orchestration import translator
from liberation_assets.orchestration.build import build_definitions
from liberation_assets.orchestration.query import due_streams, poll_sensor_interval
from liberation_assets.orchestration.runs import (
    ACTIVE_RUN_STATUSES,
    POLL_TAG,
    PRIORITY_TAG,
    QUERY_TAG,
    REASON_TAG,
    STREAMS_TAG,
)

REPO = Path(__file__).resolve().parents[2]


@functools.cache
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


SHOP_QUERY_STREAMS = ("products", "prices", "payments")


def _poll_tick(instance: dg.DagsterInstance, cursor: str | None = None, source: str = "shop"):
    sensor = _defs().resolve_sensor_def(translator.sensor_name(source, "poll"))
    with dg.build_sensor_context(instance=instance, cursor=cursor) as context:
        return sensor.evaluate_tick(context)


def _long_ago(*names: str) -> str:
    """A cursor saying every stream was last requested long ago: all due."""
    return json.dumps(dict.fromkeys(names, 0.0))


def test_a_source_poll_sensor_requests_its_due_streams_in_one_run_and_skips_until_they_are_due_again() -> None:
    with dg.instance_for_test() as instance:
        first = _poll_tick(instance)
        [request] = first.run_requests or []
        assert request.tags[POLL_TAG] == "shop" and request.tags[REASON_TAG] == "poll_every"
        assert request.tags[STREAMS_TAG] == ",".join(SHOP_QUERY_STREAMS)
        assert set(request.asset_selection or []) == {
            translator.asset_key(n, "incremental") for n in SHOP_QUERY_STREAMS
        }

        again = _poll_tick(instance, first.cursor)  # just requested: the 30 s poll_every has not passed
        assert not again.run_requests and "products is due in" in (again.skip_message or "")

        [maria] = _poll_tick(instance, source="shop_maria").run_requests or []  # each source its own run
        assert maria.tags[POLL_TAG] == "shop_maria" and maria.tags[STREAMS_TAG] == "inventory_maria"


def test_a_poll_tick_is_skipped_while_a_poll_of_its_source_is_queued() -> None:
    with dg.instance_for_test() as instance:
        _add_run(instance, "shop_maria_poll", {POLL_TAG: "shop_maria"}, dg.DagsterRunStatus.QUEUED)  # another source
        assert _poll_tick(instance, _long_ago(*SHOP_QUERY_STREAMS)).run_requests

        _add_run(instance, "shop_poll", {POLL_TAG: "shop"}, dg.DagsterRunStatus.QUEUED)
        skipped = _poll_tick(instance, _long_ago(*SHOP_QUERY_STREAMS))
        assert not skipped.run_requests
        assert skipped.skip_message == "a shop poll run is already queued or running"  # shown in the tick history


def test_a_stream_whose_own_run_is_queued_is_left_out_of_the_poll_and_its_reconcile_waits_too() -> None:
    with dg.instance_for_test() as instance:
        _add_run(instance, "products_reconcile", {QUERY_TAG: "products"}, dg.DagsterRunStatus.QUEUED)
        [request] = _poll_tick(instance, _long_ago(*SHOP_QUERY_STREAMS)).run_requests or []
        assert request.tags[STREAMS_TAG] == "prices,payments"
        assert translator.asset_key("products", "incremental") not in (request.asset_selection or [])

        only_products_due = json.dumps({"products": 0.0, "prices": time.time(), "payments": time.time()})
        skipped = _poll_tick(instance, only_products_due)
        assert not skipped.run_requests
        assert "a query run of products is already queued or running" in (skipped.skip_message or "")

        reconcile = _defs().resolve_schedule_def("products_reconcile_schedule")
        waiting = reconcile.evaluate_tick(dg.build_schedule_context(instance=instance))
        assert not waiting.run_requests and "already queued or running" in (waiting.skip_message or "")


def test_a_finished_run_does_not_hold_the_poll_sensor() -> None:
    with dg.instance_for_test() as instance:
        for status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
            _add_run(instance, "shop_poll", {POLL_TAG: "shop"}, status)
            _add_run(instance, "products_reconcile", {QUERY_TAG: "products"}, status)
        [request] = _poll_tick(instance, _long_ago(*SHOP_QUERY_STREAMS)).run_requests or []
        assert request.tags[STREAMS_TAG] == ",".join(SHOP_QUERY_STREAMS)
    assert dg.DagsterRunStatus.QUEUED in ACTIVE_RUN_STATUSES


def test_each_stream_is_due_by_its_own_poll_every() -> None:
    periods = {"fast": 30.0, "slow": 120.0, "new": 30.0}
    due, left = due_streams(periods, {"fast": 1000.0, "slow": 1000.0}, now=1030.0, slack=5.0)
    assert due == ["fast", "new"] and left == {"slow": 85.0}  # never requested: due at once
    due, _ = due_streams(periods, {"fast": 1000.0, "slow": 1000.0, "new": 1000.0}, now=1026.0, slack=5.0)
    assert due == ["fast", "new"]  # a tick a little early does not wait a whole tick more
    due, _ = due_streams(periods, {"fast": 1000.0, "slow": 1000.0, "new": 1000.0}, now=1116.0, slack=5.0)
    assert due == ["fast", "slow", "new"]  # in spec order


def test_the_poll_sensor_ticks_at_a_third_of_the_shortest_period_so_sub_minute_periods_are_kept() -> None:
    assert poll_sensor_interval([30, 120]) == 10
    assert poll_sensor_interval([1]) == 5 and poll_sensor_interval([3600]) == 60
    sensor = _defs().resolve_sensor_def("shop_poll_sensor")
    assert sensor.minimum_interval_seconds == 10  # the demo polls every 30 s


def test_log_runs_outrank_polls_in_the_queue() -> None:
    from liberation_assets.orchestration.runs import LOG_PRIORITY

    assert int(LOG_PRIORITY[PRIORITY_TAG]) > 0  # query runs keep the default priority 0


def test_the_log_sensor_factory_says_why_it_skips_and_why_it_runs() -> None:
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
