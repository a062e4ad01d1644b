"""Run tags, priorities and the one "is a run of this stream already queued or running?" question.

Every schedule and sensor asks it before requesting a run, so a slow run is
never joined by a second one of the same stream that would only wait in the
queue (or, for the exactly-once writers, be fenced by Kafka).  The tags are
also what the instance's ``tag_concurrency_limits`` (deploy/dagster.yaml)
count, one run per unique value.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import dagster as dg

from liberation_assets.core.spec import Spec
from liberation_assets.orchestration.resources import LiberationResource

ACTIVE_RUN_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
"""A run in one of these states has not finished: a new run of the same stream would only queue behind it."""

CDC_TAG = "liberation/cdc"
BINLOG_TAG = "liberation/binlog"
OUTBOX_TAG = "liberation/outbox"
QUERY_TAG = "liberation/query"
"""A query stream's reconciliation (or any run of that one stream), valued with the stream."""
POLL_TAG = "liberation/poll"
"""A source's poll run (orchestration/query.py: the due query streams of one source in one run), valued with the source."""
STREAMS_TAG = "liberation/streams"
"""The streams a poll run polls, comma-separated: which of the source's streams were due."""
VERIFY_TAG = "liberation/verify"
FOLLOW_TAG = "liberation/follow"
"""A continuous source's or outbox's long-lived follow run (orchestration/continuous.py), valued with its name."""
STREAM_TAGS = (CDC_TAG, BINLOG_TAG, OUTBOX_TAG, QUERY_TAG, POLL_TAG)
"""One tag per kind of run, valued with the source, outbox or stream it works on: the concurrency limits' keys."""

REASON_TAG = "liberation/reason"
"""Why a sensor requested the run: ``pending`` (the source holds changes), ``heartbeat`` (an idle source kept fresh)
or ``poll_every`` (a query stream's polling period has passed)."""
PRIORITY_TAG = "dagster/priority"
LOG_PRIORITY = {PRIORITY_TAG: "10"}
"""CDC and outbox runs go before query polls in the queue: they hold the low-latency promise (and the slot's WAL)."""


def active_run(instance: dg.DagsterInstance, tags: Mapping[str, str]) -> bool:
    """Whether a run with these tags is queued or running on the instance."""
    return bool(instance.get_run_records(filters=dg.RunsFilter(tags=dict(tags), statuses=ACTIVE_RUN_STATUSES), limit=1))


def refuse_beside_follower(instance: dg.DagsterInstance, spec: Spec, source: str) -> None:
    """Fail a drain of a continuous source while its follower runs, with the reason, instead of fencing the follower.

    Both would read one slot or binlog position under one transactional id: the
    drain's producer would fence the follower's (which reconnects, after a
    failed batch). A drain comes from "Materialize all" in the UI or a catch-up
    job launched by hand; the follower already publishes these assets.
    """
    if source not in spec.continuous_sources():
        return
    records = instance.get_run_records(
        filters=dg.RunsFilter(tags={FOLLOW_TAG: source}, statuses=ACTIVE_RUN_STATUSES), limit=1
    )
    if records:
        run = records[0].dagster_run
        raise dg.Failure(
            description=f"{source} is streamed continuously by its follower (run {run.run_id}, "
            f"{run.status.value.lower()}), which publishes these assets: nothing to drain beside it. "
            f"Terminate that run first to drain by hand."
        )


def skip_while_active(instance: dg.DagsterInstance, tags: Mapping[str, str], what: str) -> dg.SkipReason | None:
    """A SkipReason (shown in the tick history) when a run with these tags is still queued or running."""
    if active_run(instance, tags):
        return dg.SkipReason(f"a {what} run is already queued or running")
    return None


def skipping_schedule(
    name: str,
    job: dg.UnresolvedAssetJobDefinition,
    cron: str,
    tags: Mapping[str, str],
    what: str,
    default_status: dg.DefaultScheduleStatus,
    description: str | None = None,
) -> dg.ScheduleDefinition:
    """A cron schedule that requests its job only when no run with ``tags`` is queued or running."""

    @dg.schedule(name=name, job=job, cron_schedule=cron, default_status=default_status, description=description)
    def tick(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        skip = skip_while_active(context.instance, tags, what)
        if skip is not None:
            return skip
        return dg.RunRequest(tags=dict(tags))

    return tick


@dataclass(frozen=True)
class Probe:
    """What a source says at a sensor tick."""

    pending: bool | None
    """True: changes wait, run now; False: nothing waits (a heartbeat run may still be due); None: cannot tell."""
    reason: str
    """The skip reason shown in the tick history when no run is requested."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Extra run tags that say what was found (bytes behind, rows pending)."""


def log_sensor(
    *,
    name: str,
    job: dg.UnresolvedAssetJobDefinition,
    interval_seconds: int,
    default_status: dg.DefaultSensorStatus,
    description: str,
    tags: Mapping[str, str],
    what: str,
    heartbeat_key: dg.AssetKey,
    heartbeat_seconds: float,
    probe: Callable[[Spec], Probe],
) -> dg.SensorDefinition:
    """The one sensor of the log patterns (CDC, binlog, outbox): skip while a run with ``tags`` is active; request a
    run (first in the queue) when ``probe`` finds changes, or when the asset is older than ``heartbeat_seconds`` so an
    idle source stays fresh; otherwise skip with the probe's reason."""

    @dg.sensor(
        name=name,
        job=job,
        minimum_interval_seconds=interval_seconds,
        default_status=default_status,
        description=description,
    )
    def tick(context: dg.SensorEvaluationContext, liberation: LiberationResource) -> dg.SensorResult | dg.SkipReason:
        skip = skip_while_active(context.instance, tags, what)
        if skip is not None:
            return skip
        found = probe(liberation.load_spec())
        if found.pending is None:
            return dg.SkipReason(found.reason)
        if not found.pending:
            last = context.instance.get_latest_materialization_event(heartbeat_key)
            if last is not None and time.time() - last.timestamp <= heartbeat_seconds:
                return dg.SkipReason(found.reason)
        reason = "pending" if found.pending else "heartbeat"
        return dg.SensorResult(
            run_requests=[dg.RunRequest(tags={**tags, **LOG_PRIORITY, **found.tags, REASON_TAG: reason})]
        )

    return tick
