"""Freshness of the data, not of the runs: a ``data_fresh`` check per publishing asset, reported by one sensor.

Dagster 1.13's ``FreshnessPolicy.time_window`` is evaluated by the freshness
daemon from the asset's last *materialization* time alone (observations do
not count, and a reported state is overwritten at the next evaluation), so it
can only say that a run succeeded recently.  A run that succeeded while
changes still wait in the source, or a relay that found the lease held
elsewhere, resets it all the same.

``data_fresh`` measures the data instead: how long the source has held a
change that is not published yet.

- The source says whether it holds unpublished changes: the slot's pending
  changes (PostgreSQL), the binlog past the stored position (MariaDB), the
  oldest row waiting in the outbox table (its age is exact).  A query stream
  is always taken to have some, rows may arrive past its cursor at any time.
- When it holds none, the stream is fresh whatever the time of the last run
  (a quiet source, whose heartbeats keep the position moving, stays fresh).
- When it does, the published stream is complete up to the start of the last
  run that materialized the asset (a drain reads up to where the log was when
  it started, a poll up to its ceiling then), or up to the follower's last
  position while ``liberation follow`` holds the slot: the staleness is the
  time since then.

The check warns past the spec's ``warn_after`` and fails past ``fail_after``:
the same windows as the Dagster freshness policy, on the data's own clock.
The sensor ``liberation_freshness_sensor`` reports it every 30 s without a run
(``report_runless_asset_event``); the check is also evaluated in every run
that selects its asset.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import dagster as dg

from liberation_assets.core.spec import FreshnessSpec, Spec
from liberation_assets.orchestration import translator
from liberation_assets.orchestration.policy import sensor_status
from liberation_assets.orchestration.resources import LiberationResource
from liberation_assets.orchestration.runs import FOLLOW_TAG
from liberation_assets.orchestration.translator import asset_key

CHECK_NAME = "data_fresh"
SENSOR_NAME = translator.sensor_name("liberation", "freshness")
SENSOR_INTERVAL_SECONDS = 30


@dataclass(frozen=True)
class Pending:
    """What the source holds that is not published yet."""

    changes: bool | None
    """True/False as the source says; None when it cannot say (a follower holds the slot)."""
    oldest_age_seconds: float | None = None
    """The age of the oldest unpublished change, when the source knows it (the outbox table)."""


@dataclass(frozen=True)
class Target:
    """One publishing asset whose data freshness is checked."""

    key: dg.AssetKey
    freshness: FreshnessSpec
    source: str
    """What ``pending`` asks (one source's log, one outbox): asked once per evaluation for all its assets."""
    pending: Callable[[Spec], Pending]


def staleness_seconds(pending: Pending, complete_since: float | None, now: float) -> float | None:
    """How long the source has held a change that is not published: 0 when it holds none, None when unknown."""
    if pending.changes is False:
        return 0.0
    if pending.oldest_age_seconds is not None and pending.changes:
        return max(0.0, pending.oldest_age_seconds)
    if complete_since is None:
        return None
    return max(0.0, now - complete_since)


def _seconds(value: float) -> str:
    """``3m20s`` rather than ``200s``: as the spec writes the windows."""
    return translator.duration(timedelta(seconds=round(value)))


def freshness_evaluation(
    key: dg.AssetKey, freshness: FreshnessSpec, pending: Pending, complete_since: float | None, now: float
) -> dg.AssetCheckEvaluation:
    """Pass under ``warn_after``; WARN past it; ERROR past ``fail_after`` (or when nothing was ever published)."""
    stale = staleness_seconds(pending, complete_since, now)
    fail_after = freshness.fail_after.total_seconds()
    warn_after = freshness.warn_after.total_seconds() if freshness.warn_after else fail_after
    metadata: dict[str, float | bool | str] = {
        "staleness_seconds": round(stale, 3) if stale is not None else -1.0,
        "source_has_unpublished_changes": "unknown" if pending.changes is None else bool(pending.changes),
        "warn_after_seconds": warn_after,
        "fail_after_seconds": fail_after,
    }
    if stale is None:
        return dg.AssetCheckEvaluation(
            asset_key=key,
            check_name=CHECK_NAME,
            passed=False,
            metadata=metadata,
            severity=dg.AssetCheckSeverity.ERROR,
            description="nothing published yet while the source has changes",
        )
    if stale >= fail_after:
        severity, passed = dg.AssetCheckSeverity.ERROR, False
    elif stale >= warn_after:
        severity, passed = dg.AssetCheckSeverity.WARN, False
    else:
        severity, passed = dg.AssetCheckSeverity.WARN, True
    description = (
        "the source holds no unpublished change"
        if stale == 0.0
        else f"the source has held unpublished changes for {_seconds(stale)} "
        f"(warn after {_seconds(warn_after)}, fail after {_seconds(fail_after)})"
    )
    return dg.AssetCheckEvaluation(
        asset_key=key,
        check_name=CHECK_NAME,
        passed=passed,
        metadata=metadata,
        severity=severity,
        description=description,
    )


def complete_since(instance: dg.DagsterInstance, key: dg.AssetKey) -> float | None:
    """When the published stream was last known complete: the start of the run behind the latest materialization."""
    event = instance.get_latest_materialization_event(key)
    if event is None:
        return None
    if event.run_id:
        record = instance.get_run_record_by_id(event.run_id)
        if record is not None and record.dagster_run.tags.get(FOLLOW_TAG):
            return event.timestamp  # a follower reports as it goes: complete when it reported (continuous.py)
        if record is not None and record.start_time is not None:
            return record.start_time
    return event.timestamp


FOLLOWER_CURRENT_BYTES = 16 * 1024**2
"""A follower (``liberation follow``) holding the slot is taken as current while the WAL it has not confirmed is under this."""


def _pg_pending(source: str) -> Callable[[Spec], Pending]:
    def pending(spec: Spec) -> Pending:
        from liberation_assets.core.engine.cdc_postgres import slot_status

        status = slot_status(spec, source)
        if status.pending is None and status.info is not None:  # a follower holds the slot: is it keeping up?
            return Pending(status.info.lag_bytes > FOLLOWER_CURRENT_BYTES)
        return Pending(status.pending)

    return pending


def _binlog_pending(source: str) -> Callable[[Spec], Pending]:
    def pending(spec: Spec) -> Pending:
        from liberation_assets.core.engine.cdc_mysql import log_lag

        return Pending(log_lag(spec, source).behind)

    return pending


def _outbox_pending(name: str) -> Callable[[Spec], Pending]:
    def pending(spec: Spec) -> Pending:
        from liberation_assets.core.engine.outbox_relay import outbox_pending

        count, age = outbox_pending(spec, name)
        return Pending(bool(count), age if count and age else None)

    return pending


def _query_pending(spec: Spec) -> Pending:
    return Pending(None)  # rows may pass the cursor at any time: judged by the last poll's start


def targets(spec: Spec) -> list[Target]:
    """Every publishing asset with a freshness window: ``<stream>_incremental``, ``<stream>_cdc``, ``<outbox>/<outbox>_relay``."""
    from liberation_assets.core.engine.cdc_mysql import cdc_streams as mysql_streams
    from liberation_assets.core.engine.cdc_postgres import cdc_streams as pg_streams

    found: list[Target] = []
    for name, stream in spec.streams.items():
        if "query" in stream.patterns:
            found.append(Target(asset_key(name, "incremental"), stream.freshness, f"query:{name}", _query_pending))
    for source_name, source in spec.sources.items():
        if source.dialect == "postgresql":
            found += [
                Target(asset_key(n, "cdc"), spec.streams[n].freshness, f"slot:{source_name}", _pg_pending(source_name))
                for n in pg_streams(spec, source_name)
            ]
        elif source.dialect == "mysql":
            found += [
                Target(
                    asset_key(n, "cdc"),
                    spec.streams[n].freshness,
                    f"binlog:{source_name}",
                    _binlog_pending(source_name),
                )
                for n in mysql_streams(spec, source_name)
            ]
    found += [
        Target(asset_key(name, "relay"), outbox.freshness, f"outbox:{name}", _outbox_pending(name))
        for name, outbox in spec.outboxes.items()
    ]
    return found


def evaluate_all(spec: Spec, instance: dg.DagsterInstance, now: float | None = None) -> list[dg.AssetCheckEvaluation]:
    """The ``data_fresh`` evaluation of every target, asking each source once."""
    now = time.time() if now is None else now
    asked: dict[str, Pending] = {}
    evaluations = []
    for target in targets(spec):
        if target.source not in asked:
            asked[target.source] = target.pending(spec)
        evaluations.append(
            freshness_evaluation(
                target.key, target.freshness, asked[target.source], complete_since(instance, target.key), now
            )
        )
    return evaluations


def _check(spec: Spec, target: Target) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=target.key,
        name=CHECK_NAME,
        blocking=False,
        description="How long the source has held changes not yet published: warn past warn_after, "
        "fail past fail_after (the data's clock, not the runs').",
    )
    def data_fresh(context: dg.AssetCheckExecutionContext, liberation: LiberationResource) -> dg.AssetCheckResult:
        evaluation = freshness_evaluation(
            target.key,
            target.freshness,
            target.pending(liberation.load_spec()),
            complete_since(context.instance, target.key),
            time.time(),
        )
        return dg.AssetCheckResult(
            passed=evaluation.passed,
            severity=evaluation.severity,
            metadata=evaluation.metadata,
            description=evaluation.description,
        )

    return data_fresh


def _sensor(spec: Spec) -> dg.SensorDefinition:
    @dg.sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
        default_status=sensor_status(spec),
        description="Reports every stream's data_fresh check from its source, without a run.",
    )
    def data_freshness(context: dg.SensorEvaluationContext, liberation: LiberationResource) -> dg.SkipReason:
        evaluations = evaluate_all(liberation.load_spec(), context.instance)
        for evaluation in evaluations:
            context.instance.report_runless_asset_event(evaluation)
        stale = [e.asset_key.to_user_string() for e in evaluations if not e.passed]
        return dg.SkipReason(f"reported {len(evaluations)} data_fresh checks; stale: {', '.join(stale) or 'none'}")

    return data_freshness


def definitions(spec: Spec) -> dg.Definitions:
    found = targets(spec)
    if not found:
        return dg.Definitions()
    return dg.Definitions(asset_checks=[_check(spec, t) for t in found], sensors=[_sensor(spec)])
