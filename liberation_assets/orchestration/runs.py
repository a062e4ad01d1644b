"""Run tags, priorities and the one "is a run of this stream already queued or running?" question.

Every schedule and sensor asks it before requesting a run, so a slow run is
never joined by a second one of the same stream that would only wait in the
queue (or, for the exactly-once writers, be fenced by Kafka).  The tags are
also what the instance's ``tag_concurrency_limits`` (deploy/dagster.yaml)
count, one run per unique value.
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

ACTIVE_RUN_STATUSES = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
                       dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
"""A run in one of these states has not finished: a new run of the same stream would only queue behind it."""

CDC_TAG = "liberation/cdc"
BINLOG_TAG = "liberation/binlog"
OUTBOX_TAG = "liberation/outbox"
QUERY_TAG = "liberation/query"
VERIFY_TAG = "liberation/verify"
FOLLOW_TAG = "liberation/follow"
"""A continuous source's or outbox's long-lived follow run (orchestration/continuous.py), valued with its name."""
STREAM_TAGS = (CDC_TAG, BINLOG_TAG, OUTBOX_TAG, QUERY_TAG)
"""One tag per kind of run, valued with the source, outbox or stream it works on: the concurrency limits' keys."""

PRIORITY_TAG = "dagster/priority"
LOG_PRIORITY = {PRIORITY_TAG: "10"}
"""CDC and outbox runs go before query polls in the queue: they hold the low-latency promise (and the slot's WAL)."""


def active_run(instance: dg.DagsterInstance, tags: Mapping[str, str]) -> bool:
    """Whether a run with these tags is queued or running on the instance."""
    return bool(instance.get_run_records(filters=dg.RunsFilter(tags=dict(tags), statuses=ACTIVE_RUN_STATUSES), limit=1))


def skip_while_active(instance: dg.DagsterInstance, tags: Mapping[str, str], what: str) -> dg.SkipReason | None:
    """A SkipReason (shown in the tick history) when a run with these tags is still queued or running."""
    if active_run(instance, tags):
        return dg.SkipReason(f"a {what} run is already queued or running")
    return None


def skipping_schedule(name: str, job: dg.UnresolvedAssetJobDefinition, cron: str, tags: Mapping[str, str],
                      what: str, default_status: dg.DefaultScheduleStatus, description: str | None = None) -> dg.ScheduleDefinition:
    """A cron schedule that requests its job only when no run with ``tags`` is queued or running."""

    @dg.schedule(name=name, job=job, cron_schedule=cron, default_status=default_status, description=description)
    def tick(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        skip = skip_while_active(context.instance, tags, what)
        if skip is not None:
            return skip
        return dg.RunRequest(tags=dict(tags))

    return tick
