"""Continuous mode: one long-lived Dagster run per continuous source or outbox, kept alive by a sensor.

A source (its cdc streams) or an outbox with ``mode: continuous`` gets

- a job ``<name>_follow``: its one op runs the follower in the run's own
  process, the same function ``liberation follow <name>`` calls, so the log
  streams with sub-second latency and no run per micro-batch.  A thread beside
  it watches the follower's topics in Kafka (``core.progress``) and every
  ``report_every_seconds`` logs, for each of its assets, an
  ``AssetMaterialization`` with the window's figures (published, quarantined,
  ``event_to_publish_lag_seconds``, the position as ``0/…`` text) when the
  follower is current (it committed a position in the window, or the source
  holds nothing unpublished), an ``AssetObservation`` otherwise; and the
  asset's ``data_fresh`` evaluation.
- a sensor ``<name>_follow_sensor`` that requests the job whenever no run
  of it is queued or running: a follower that dies (its run fails) is started
  again at the next tick; a run whose process vanished without ending (the
  machine or the daemon restarted) is marked failed once it has been silent for
  ``STALE_AFTER_SECONDS``, then replaced.

The micro-batch sensors of such a source are not created (cdc, binlog and outbox skip them):
one reader per slot, binlog position or outbox lease.  For the same reason the main job
``liberate_all`` leaves its assets out (``build.main_job_selection``); the catch-up job
``<source>_drain`` (``<outbox>_relay`` for an outbox) materializes them once, while no follower
runs: the demo runs it for the first snapshot before the daemon starts the followers, and the
supervisor waits while one is queued or running.
"""

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dagster as dg

from liberation_assets.core.spec import Spec
from liberation_assets.orchestration import freshness
from liberation_assets.orchestration.policy import sensor_status
from liberation_assets.orchestration.resources import LiberationResource
from liberation_assets.orchestration.runs import (
    ACTIVE_RUN_STATUSES,
    BINLOG_TAG,
    CDC_TAG,
    FOLLOW_TAG,
    LOG_PRIORITY,
    OUTBOX_TAG,
    active_run,
)
from liberation_assets.orchestration.translator import asset_job, asset_key, job_name, sensor_name

REPORT_EVERY_SECONDS = 20.0
SUPERVISE_EVERY_SECONDS = 15
STALE_AFTER_SECONDS = 120.0
"""A started follow run that logged nothing for this long has lost its process: it is marked failed and replaced."""
BACKOFF_AFTER_FAILURE_SECONDS = 30.0
"""A follow run that failed is not replaced before this, so a permanent error does not loop at the sensor's pace."""


@dataclass(frozen=True)
class Follower:
    """One continuous follower: what it reads, the assets it publishes, the position key it commits."""

    name: str
    kind: str
    """``postgresql``, ``mysql`` (a source's log) or ``outbox``."""
    keys: dict[str, dg.AssetKey]
    """Stream (or outbox) name to its publishing asset."""
    topics: dict[str, str]
    """Topic to the stream it carries; an outbox's routed topics come from ``route_pattern``."""
    position_key: str
    route_pattern: re.Pattern[str] | None = None

    @property
    def job_name(self) -> str:
        return job_name(self.name, "follow")

    @property
    def tags(self) -> dict[str, str]:
        return {FOLLOW_TAG: self.name, **LOG_PRIORITY}

    @property
    def catch_up_action(self) -> str:
        return "relay" if self.kind == "outbox" else "drain"

    @property
    def catch_up_job_name(self) -> str:
        """The micro-batch job of the same assets: ``<source>_drain``, ``<outbox>_relay``."""
        return job_name(self.name, self.catch_up_action)

    @property
    def catch_up_tags(self) -> dict[str, str]:
        """The micro-batch run's tag (the instance's limits keep one run per value)."""
        tag = {"postgresql": CDC_TAG, "mysql": BINLOG_TAG, "outbox": OUTBOX_TAG}[self.kind]
        return {tag: self.name}


def followers(spec: Spec) -> list[Follower]:
    """Every source and outbox of the spec with ``mode: continuous``."""
    from liberation_assets.core.engine.runtime import cdc_streams, source_position_key
    from liberation_assets.core.outbox.relay import position_key as outbox_position_key

    found = []
    for name, source in spec.sources.items():
        if source.mode != "continuous" or source.dialect not in ("postgresql", "mysql"):
            continue
        streams = cdc_streams(spec, name)
        found.append(
            Follower(
                name,
                source.dialect,
                {s: asset_key(s, "cdc") for s in streams},
                {spec.topic_for(s): s for s in streams},
                source_position_key(name),
            )
        )
    for name, outbox in spec.outboxes.items():
        if outbox.mode == "continuous":
            route = outbox.route.format(aggregatetype="\0", topic_prefix=spec.kafka.topic_prefix, outbox=name)
            pattern = re.compile(re.escape(route).replace("\0", "[A-Za-z0-9._-]+"))
            found.append(
                Follower(name, "outbox", {name: asset_key(name, "relay")}, {}, outbox_position_key(name), pattern)
            )
    return found


def continuous_keys(spec: Spec) -> set[dg.AssetKey]:
    return {key for follower in followers(spec) for key in follower.keys.values()}


def run_follower(spec: Spec, follower: Follower, duration: float | None) -> int:
    """The follower ``liberation follow <name>`` runs (its public entry point), until ``duration`` or SIGTERM."""
    from liberation_assets.core.failures import involve

    if follower.kind == "outbox":
        from liberation_assets.core.engine import outbox_relay

        involve(spec, spec.outboxes[follower.name].source)
        return outbox_relay.follow(spec, follower.name, duration=duration) or 0
    involve(spec, follower.name)
    if follower.kind == "postgresql":
        from liberation_assets.core.engine import cdc_postgres

        return cdc_postgres.follow(spec, follower.name, duration=duration) or 0
    from liberation_assets.core.engine import cdc_mysql

    return cdc_mysql.follow(spec, follower.name, duration=duration) or 0


def _freshness_targets(spec: Spec, follower: Follower) -> list[freshness.Target]:
    keys = set(follower.keys.values())
    return [target for target in freshness.targets(spec) if target.key in keys]


class Reporter(threading.Thread):
    """Logs the follower's progress into its run every ``every`` seconds, from what Kafka shows."""

    def __init__(
        self,
        log_event: Callable[[object], None],
        instance: dg.DagsterInstance,
        spec: Spec,
        follower: Follower,
        every: float,
    ):
        super().__init__(name=f"{follower.name}-reporter", daemon=True)
        from liberation_assets.core.progress import ProgressProbe

        self.log_event, self.instance, self.spec, self.follower, self.every = log_event, instance, spec, follower, every
        self.stopping = threading.Event()
        self.targets = _freshness_targets(spec, follower)
        self.probe = ProgressProbe(
            spec.kafka.resolved_bootstrap_servers(),
            follower.topics,
            spec.kafka.positions_topic,
            follower.position_key,
            follower.route_pattern,
            follower.name if follower.kind == "outbox" else None,
        )
        self.reports = 0

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                deadline = time.monotonic() + self.every
                while not self.stopping.is_set() and (left := deadline - time.monotonic()) > 0:
                    self.probe.poll(min(1.0, left))  # a stop is seen within a second, then the last window is reported
                self.report()
        finally:
            self.probe.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=self.every + 30)

    def _pending(self) -> freshness.Pending | None:
        if not self.targets:
            return None
        try:
            return self.targets[0].pending(self.spec)
        except Exception:  # noqa: BLE001 - a source away: the follower reconnects; report without it
            return None

    def report(self) -> None:
        window = self.probe.take()
        self.probe.assign_new()
        pending = self._pending()
        current = window.positions_committed > 0 or (pending is not None and pending.changes is False)
        now = time.time()
        for stream, key in self.follower.keys.items():
            figures = window.topics.get(stream)
            metadata: dict[str, Any] = {
                **(figures.metadata() if figures else {}),
                "positions_committed": window.positions_committed,
                "window_seconds": round(window.seconds, 1),
                "pattern": "continuous",
            }
            if window.position is not None:
                metadata["position"] = window.position
            if current:
                self.log_event(
                    dg.AssetMaterialization(
                        asset_key=key, metadata=metadata, description="published by the continuous follower"
                    )
                )
            else:
                self.log_event(
                    dg.AssetObservation(
                        asset_key=key, metadata=metadata, description="the follower committed nothing in this window"
                    )
                )
        if pending is not None:
            for target in self.targets:
                self.log_event(
                    freshness.freshness_evaluation(
                        target.key, target.freshness, pending, freshness.complete_since(self.instance, target.key), now
                    )
                )
        self.reports += 1


class FollowConfig(dg.Config):
    """Run config of a follow run."""

    duration_seconds: float | None = None
    """Stop after this long (None: until the run is terminated, the follower's SIGTERM ends it cleanly)."""
    report_every_seconds: float = REPORT_EVERY_SECONDS


def follow_job(spec: Spec, follower: Follower) -> dg.JobDefinition:
    kind = {"postgresql": "PostgreSQL slot", "mysql": "binlog", "outbox": "outbox"}[follower.kind]

    @dg.op(
        name=f"{follower.name}_follower",
        description=f"Streams the {kind} of {follower.name} continuously (liberation follow {follower.name}), "
        f"reporting {', '.join(k.to_user_string() for k in follower.keys.values())} as it goes.",
    )
    def follow_op(context: dg.OpExecutionContext, config: FollowConfig, liberation: LiberationResource) -> None:
        spec = liberation.load_spec()
        reporter = Reporter(context.log_event, context.instance, spec, follower, config.report_every_seconds)  # type: ignore[arg-type]
        reporter.start()
        try:
            run_follower(spec, follower, config.duration_seconds)
        except dg.DagsterExecutionInterruptedError:
            # Terminated from the UI or Dagster shutting down: a stop, not a failure. A transaction in flight was
            # aborted (never half-published); the next follower reads it again from the stored position.
            context.log.info(f"follower of {follower.name} interrupted: stopped")
        finally:
            reporter.stop()
        context.log.info(f"follower of {follower.name} stopped after {reporter.reports} reports")

    @dg.job(
        name=follower.job_name,
        tags=follower.tags,
        executor_def=dg.in_process_executor,
        description=f"The long-lived follower of {follower.name} (mode: continuous); "
        f"{sensor_name(follower.name, 'follow')} keeps one running.",
    )
    def job() -> None:
        follow_op()

    return job


def catch_up_job(follower: Follower) -> "dg.UnresolvedAssetJobDefinition":
    """Materialize the follower's assets once (snapshot if needed, then up to now), while no follower runs."""
    return asset_job(
        follower.name,
        follower.catch_up_action,
        list(follower.keys.values()),
        f"Catch {follower.name} up once, while its follower is stopped (the first snapshot; the demo runs it before "
        f"the daemon starts {follower.job_name}); {sensor_name(follower.name, 'follow')} waits until it ends.",
        {**follower.catch_up_tags, **LOG_PRIORITY},
    )


def _last_event_time(instance: dg.DagsterInstance, run_id: str) -> float | None:
    records = instance.get_records_for_run(run_id, limit=1, ascending=False).records
    return records[0].timestamp if records else None


def supervisor(spec: Spec, follower: Follower, job: dg.JobDefinition) -> dg.SensorDefinition:
    @dg.sensor(
        name=sensor_name(follower.name, "follow"),
        job=job,
        minimum_interval_seconds=SUPERVISE_EVERY_SECONDS,
        default_status=sensor_status(spec),
        description=f"Keeps one {follower.job_name} run going: starts it when none is queued or running.",
    )
    def supervise(context: dg.SensorEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        instance, tags = context.instance, {FOLLOW_TAG: follower.name}
        if active_run(instance, follower.catch_up_tags):
            return dg.SkipReason(f"a {follower.catch_up_job_name} run is queued or running: the follower waits for it")
        active = instance.get_run_records(filters=dg.RunsFilter(tags=tags, statuses=ACTIVE_RUN_STATUSES), limit=1)
        if active:
            run = active[0].dagster_run
            if run.status == dg.DagsterRunStatus.STARTED:
                last = _last_event_time(instance, run.run_id) or active[0].start_time or time.time()
                if time.time() - last > STALE_AFTER_SECONDS:
                    instance.report_run_failed(
                        run, f"no event for {STALE_AFTER_SECONDS:.0f}s: the run's process is gone"
                    )
                    return dg.SkipReason(f"marked the silent run {run.run_id} failed; a new one starts next tick")
            return dg.SkipReason(f"the follower run {run.run_id} is {run.status.value.lower()}")
        last_runs = instance.get_run_records(filters=dg.RunsFilter(tags=tags), limit=1)
        if (
            last_runs
            and last_runs[0].dagster_run.status == dg.DagsterRunStatus.FAILURE
            and last_runs[0].end_time
            and time.time() - last_runs[0].end_time < BACKOFF_AFTER_FAILURE_SECONDS
        ):
            return dg.SkipReason(
                f"the follower run {last_runs[0].dagster_run.run_id} failed; restarting after "
                f"{BACKOFF_AFTER_FAILURE_SECONDS:.0f}s"
            )
        return dg.RunRequest(tags=follower.tags)

    return supervise


def definitions(spec: Spec) -> dg.Definitions:
    jobs: "list[dg.JobDefinition | dg.UnresolvedAssetJobDefinition]" = []
    sensors = []
    for follower in followers(spec):
        job = follow_job(spec, follower)
        jobs.append(job)
        if follower.keys:
            jobs.append(catch_up_job(follower))
        sensors.append(supervisor(spec, follower, job))
    return dg.Definitions(jobs=jobs, sensors=sensors)
