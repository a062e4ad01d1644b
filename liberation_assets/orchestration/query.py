"""Query-based pattern: ``<stream>/<stream>_snapshot`` and ``<stream>/<stream>_incremental`` assets, polls and reconciliation.

Polls are requested by one sensor per source (``<source>_poll_sensor``), not
by cron schedules, which cannot tick more often than once a minute: each tick
asks which of the source's query streams are due (their ``poll_every`` has
passed since they were last requested) and requests one ``<source>_poll`` run
that materializes only those streams' incremental assets.  One run per source,
not per stream, because every run is its own process (Python, Dagster and the
code location loaded again): on two cores that start costs more than a poll.
The reconciliation keeps its per-stream cron schedule (hourly by default).
"""

import json
import math
import time
from collections.abc import Callable, Iterable, Iterator

import dagster as dg
import sqlalchemy as sa

from liberation_assets.core.engine.query_pattern import ProgressCallback, QueryPattern, RunSummary
from liberation_assets.core.errors import SchemaIncompatible, SpecError
from liberation_assets.core.spec import Spec, StreamSpec
from liberation_assets.orchestration import translator
from liberation_assets.orchestration.contracts import contract_check_specs, contract_results, refused_results
from liberation_assets.orchestration.policy import freshness_policy, schedule_status, sensor_status
from liberation_assets.orchestration.resources import LiberationResource
from liberation_assets.orchestration.runs import (
    POLL_TAG,
    QUERY_TAG,
    REASON_TAG,
    STREAMS_TAG,
    active_run,
    skip_while_active,
    skipping_schedule,
)
from liberation_assets.orchestration.translator import Materialized, asset_key


def _cron_for(seconds: float) -> str:
    """A cron schedule for a period (the reconciliation's); periods under a minute run every minute."""
    minutes = max(1, int(seconds // 60))
    if minutes < 60:
        return f"*/{minutes} * * * *" if minutes > 1 else "* * * * *"
    hours = max(1, minutes // 60)
    return f"0 */{hours} * * *" if hours < 24 else "0 0 * * *"


def _progress_logger(context: dg.AssetExecutionContext, label: str) -> ProgressCallback:
    """Log progress at most every 5%, so long snapshots show how far they are in the run log."""
    last = [-1]

    def report(done: int, total: int | None) -> None:
        percent = int(done * 100 / total) if total else -1
        if total and percent // 5 == last[0] // 5 and done < total:
            return
        last[0] = percent
        context.log.info(f"{label}: {done:,}/{total:,} rows ({percent}%)" if total else f"{label}: {done:,} rows")

    return report


def _materialize(
    summary: RunSummary,
    context: dg.AssetExecutionContext,
    checks: list[dg.AssetCheckResult] | None = None,
    *,
    row_count: bool = False,
) -> Materialized:
    """The run's figures (readable: timestamps, LSNs); a snapshot also reports ``dagster/row_count``, the rows it read."""
    r = summary.result
    context.log.info(
        f"published {r.published} events ({r.deletes} deletes, {r.quarantined} quarantined) in {r.transactions} transactions"
    )
    metadata = translator.readable_metadata(summary.metadata())
    if row_count:
        metadata["dagster/row_count"] = summary.rows_total
    return dg.MaterializeResult(metadata=metadata, check_results=checks)


def _publish_checked(
    context: dg.AssetExecutionContext,
    liberation: LiberationResource,
    name: str,
    work: Callable[[QueryPattern], RunSummary],
    *,
    row_count: bool = False,
) -> Iterator[Materialized | dg.AssetCheckResult]:
    """Run one pattern step and evaluate its contract checks in the same step, from the counters it produced."""
    spec = liberation.load_spec()
    pattern = QueryPattern(spec, name)
    try:
        summary = work(pattern)
    except SchemaIncompatible:
        yield from refused_results(spec, {name: context.asset_key})
        raise
    finally:
        pattern.close()
    yield _materialize(
        summary, context, contract_results(spec, name, context.asset_key, summary.metadata()), row_count=row_count
    )


def snapshot_partitions(stream: StreamSpec) -> dg.StaticPartitionsDefinition | None:
    """One partition per key range of ``snapshot_partitions``: a backfill snapshots the ranges in parallel."""
    if stream.snapshot_partitions is None:
        return None
    return dg.StaticPartitionsDefinition(list(stream.snapshot_partitions.ranges()))


def _snapshot_ranges(pattern: QueryPattern, partition: str | None, progress: ProgressCallback) -> RunSummary:
    """Snapshot one key range (its own position and transactional id), or every range in turn when run unpartitioned."""
    ranges = pattern.stream.snapshot_partitions.ranges() if pattern.stream.snapshot_partitions else {}
    if not ranges:
        return pattern.snapshot(progress=progress)
    if not isinstance(pattern.table.key_exprs[0].type, sa.Integer):
        raise SpecError(
            f"stream {pattern.name}: snapshot_partitions needs an integer first key column, "
            f"{pattern.table.key_columns[0]} is {pattern.table.key_exprs[0].type}"
        )
    total = RunSummary(rows_total=0)
    for part in [partition] if partition else list(ranges):
        summary = pattern.snapshot(key_range=ranges[part], part=part, progress=progress)
        total.result.add(summary.result)
        total.rows_total += summary.rows_total
    return total


def _snapshot_asset(spec: Spec, name: str) -> dg.AssetsDefinition:
    stream = spec.streams[name]

    @dg.asset(
        **translator.spec_fields(spec, name, "snapshot"),
        freshness_policy=None,
        pool=f"liberation-{name}-snapshot",
        partitions_def=snapshot_partitions(stream),
        check_specs=contract_check_specs(name, asset_key(name, "snapshot")),
    )
    def snapshot(
        context: dg.AssetExecutionContext, liberation: LiberationResource
    ) -> Iterator[Materialized | dg.AssetCheckResult]:
        partition = context.partition_key if context.has_partition_key else None
        progress = _progress_logger(context, f"snapshot {name} {partition or ''}".rstrip())
        yield from _publish_checked(
            context, liberation, name, lambda pattern: _snapshot_ranges(pattern, partition, progress), row_count=True
        )

    return snapshot


def _incremental_asset(spec: Spec, name: str) -> dg.AssetsDefinition:
    stream = spec.streams[name]

    @dg.asset(
        **translator.spec_fields(spec, name, "incremental"),
        freshness_policy=freshness_policy(stream.freshness),
        pool=f"liberation-{name}-query",
        check_specs=contract_check_specs(name, asset_key(name, "incremental")),
    )
    def incremental(
        context: dg.AssetExecutionContext, liberation: LiberationResource
    ) -> Iterator[Materialized | dg.AssetCheckResult]:
        yield from _publish_checked(context, liberation, name, lambda pattern: pattern.incremental())

    return incremental


def _reconcile_asset(spec: Spec, name: str) -> dg.AssetsDefinition:

    @dg.asset(
        **translator.spec_fields(spec, name, "reconcile"),
        pool=f"liberation-{name}-query",
    )
    def reconcile(context: dg.AssetExecutionContext, liberation: LiberationResource) -> Materialized:
        pattern = QueryPattern(liberation.load_spec(), name)
        try:
            summary = pattern.reconcile()
        finally:
            pattern.close()
        return _materialize(summary, context)

    return reconcile


def poll_sensor_interval(periods: Iterable[float]) -> int:
    """A third of the shortest poll period (5 s to 60 s): a stream held back by a run still going is asked again
    soon, not a whole period later."""
    return int(min(60.0, max(5.0, min(periods) / 3)))


def due_streams(
    periods: dict[str, float], requested_at: dict[str, float], now: float, slack: float
) -> tuple[list[str], dict[str, float]]:
    """The streams whose ``poll_every`` has passed since they were last requested (never requested: due), and the
    seconds left for the others.  ``slack`` (half a tick) keeps a tick that comes a little early from waiting a
    whole tick more."""
    due, left = [], {}
    for name, period in periods.items():
        wait = requested_at.get(name, 0.0) + period - slack - now
        if wait > 0:
            left[name] = wait
        else:
            due.append(name)
    return due, left


def _requested_at(cursor: str | None) -> dict[str, float]:
    """The sensor's cursor: stream -> when its last poll was requested (epoch seconds)."""
    try:
        found = json.loads(cursor) if cursor else {}
    except ValueError:
        return {}
    return {str(k): float(v) for k, v in found.items()} if isinstance(found, dict) else {}


def query_streams_by_source(spec: Spec) -> dict[str, list[str]]:
    """Each source's query streams, in spec order."""
    found: dict[str, list[str]] = {}
    for name, stream in spec.streams.items():
        if "query" in stream.patterns:
            found.setdefault(stream.source, []).append(name)
    return found


def _poll_sensor(spec: Spec, source: str, names: list[str]) -> dg.SensorDefinition:
    keys = {name: asset_key(name, "incremental") for name in names}
    periods = {name: spec.streams[name].poll_every.total_seconds() for name in names}
    interval = poll_sensor_interval(periods.values())
    tags = {POLL_TAG: source}
    job = translator.asset_job(
        source,
        "poll",
        list(keys.values()),
        f"Poll the query streams of {source} ({', '.join(names)}) for changes past their watermarks; "
        f"{translator.sensor_name(source, 'poll')} selects the streams that are due.",
        tags,
    )
    every = ", ".join(f"{name} every {translator.duration(spec.streams[name].poll_every)}" for name in names)

    @dg.sensor(
        name=translator.sensor_name(source, "poll"),
        job=job,
        minimum_interval_seconds=interval,
        default_status=sensor_status(spec),
        description=f"Requests a poll of the due query streams of {source} ({every}), one run at a time.",
    )
    def poll(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        skip = skip_while_active(context.instance, tags, f"{source} poll")
        if skip is not None:
            return skip
        now = time.time()
        requested_at = _requested_at(context.cursor)
        due, left = due_streams(periods, requested_at, now, interval / 2)
        waiting = [f"{name} is due in {math.ceil(seconds)}s" for name, seconds in left.items()]
        for name in list(due):  # a reconciliation (or another run) of the stream itself is still queued or running
            if active_run(context.instance, {QUERY_TAG: name}):
                due.remove(name)
                waiting.append(f"a query run of {name} is already queued or running")
        if not due:
            return dg.SkipReason("no stream to poll: " + "; ".join(waiting))
        request = dg.RunRequest(
            asset_selection=[keys[name] for name in due],
            tags={**tags, REASON_TAG: "poll_every", STREAMS_TAG: ",".join(due)},
        )
        cursor = json.dumps({**requested_at, **{name: now for name in due}}, sort_keys=True)
        return dg.SensorResult(run_requests=[request], cursor=cursor)

    return poll


def definitions(spec: Spec) -> dg.Definitions:
    assets: list[dg.AssetsDefinition] = []
    schedules: list[dg.ScheduleDefinition] = []
    sensors = [_poll_sensor(spec, source, names) for source, names in query_streams_by_source(spec).items()]
    jobs: list[dg.UnresolvedAssetJobDefinition] = []
    for name, stream in spec.streams.items():
        if "snapshot" in stream.patterns:
            assets.append(_snapshot_asset(spec, name))
            if stream.snapshot_partitions is not None:
                jobs.append(
                    translator.asset_job(
                        name,
                        "snapshot_backfill",
                        [asset_key(name, "snapshot")],
                        f"Snapshot {stream.table} by key range: backfill the partitions to run them in parallel.",
                        partitions_def=snapshot_partitions(stream),
                        executor_def=dg.multiprocess_executor,  # the one job whose steps are worth their own processes
                    )
                )
        if "query" in stream.patterns:
            assets.append(_incremental_asset(spec, name))
            # The poll and the reconcile of one stream share a transactional id: their pool
            # (liberation-<stream>-query, one at a time) serializes the two steps across runs.
            tags = {QUERY_TAG: name}
            assets.append(_reconcile_asset(spec, name))
            reconcile_job = translator.asset_job(
                name, "reconcile", [asset_key(name, "reconcile")], f"Find hard deletes in {stream.table}.", tags
            )
            schedules.append(
                skipping_schedule(
                    translator.schedule_name(name, "reconcile"),
                    reconcile_job,
                    _cron_for(stream.reconcile_every.total_seconds()),
                    tags,
                    f"query run of {name}",
                    schedule_status(spec),
                )
            )
    return dg.Definitions(assets=assets, schedules=schedules, sensors=sensors, jobs=jobs)
