"""Proof of liberation in Dagster: a ``<stream>/<stream>_replica`` asset per stream, checked against the source.

- ``<stream>/<stream>_replica`` catches the stream's replica up from its topic
  (read_committed, upserts and tombstones) and reports the two lags as numbers:
  source event time to publish time, and last event to now.
- ``matches_source`` (blocking) has the source server judge every replica
  value (``core.verify.server``): the differing keys, and the first differing
  values with their column and both sides, in metadata.
  It fails the step, so nothing downstream of a wrong replica runs.
- ``quarantine`` (warning) counts the stream's open quarantine, whatever
  pattern publishes it.
- ``backlog`` on each ``<outbox>/<outbox>_relay`` completes the operations view: rows
  waiting in the outbox table and the oldest one's age, failing past the
  outbox's freshness windows.  (Slot lag and retained WAL are ``cdc.py``'s
  ``slot_health``.)

The asset sits downstream of every asset that publishes the stream, as the
pattern modules define them, so a run of the main job verifies what it just
published.  The ``verify_all`` schedule starts stopped unless the spec's
``automation.schedules`` says running.
"""

from typing import Any

import dagster as dg

from liberation_assets.core.contract.quarantine import summarize
from liberation_assets.core.engine.outbox_relay import outbox_pending
from liberation_assets.core.spec import Spec
from liberation_assets.core.verify.compare import Comparison
from liberation_assets.core.verify.lag import LagReport, lag_metadata
from liberation_assets.core.verify.run import verify
from liberation_assets.orchestration import translator
from liberation_assets.orchestration.policy import schedule_status
from liberation_assets.orchestration.resources import LiberationResource
from liberation_assets.orchestration.runs import VERIFY_TAG, skipping_schedule
from liberation_assets.orchestration.translator import Materialized, asset_key

VERIFY_JOB = "verify_all"
KEYS_SHOWN = 20


def publishing_assets(spec: Spec) -> dict[str, list[dg.AssetKey]]:
    """Each stream's publishing assets (snapshot, incremental, reconcile, cdc), from the translator."""
    return {name: translator.publishing_keys(spec, name) for name in spec.streams}


def matches_source_result(comparison: Comparison, lag: LagReport | None = None) -> dg.AssetCheckResult:
    """Pass only when every row matches; counts are numbers (plotted), the first differing keys a list.
    A difference that is only documented lag (``core.verify.lag``) is a warning, so it does not block."""
    metadata: dict[str, Any] = dict(comparison.metadata())
    if lag is not None:
        metadata.update(lag_metadata(lag))
    metadata["first_different_keys"] = dg.MetadataValue.json(comparison.differing_keys[:KEYS_SHOWN])
    if comparison.details:
        metadata["first_different_values"] = dg.MetadataValue.json(
            [
                {"key": d.key, "column": d.column, "source": d.source, "published": d.published, "note": d.note}
                for d in comparison.details[:KEYS_SHOWN]
            ]
        )
    only_lag = lag is not None and lag.only_lag
    return dg.AssetCheckResult(
        check_name="matches_source",
        passed=comparison.matches,
        severity=dg.AssetCheckSeverity.WARN if only_lag else dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=lag.describe() if lag is not None else comparison.describe(),
    )


def _replica_asset(spec: Spec, name: str, deps: list[dg.AssetKey]) -> dg.AssetsDefinition:
    key = asset_key(name, "replica")

    @dg.asset(
        **translator.spec_fields(spec, name, "replica"),
        check_specs=[
            dg.AssetCheckSpec(
                "matches_source",
                asset=key,
                blocking=True,
                description="Every published value read back by the source server equals its own (key, column, both values).",
            )
        ],
        pool=f"liberation-{name}-replica",
    )
    def replica(context: dg.AssetExecutionContext, liberation: LiberationResource) -> Materialized:
        verification = verify(liberation.load_spec(), name, replica=liberation.replica_url or None)
        applied = verification.applied
        context.log.info(
            f"applied {applied.records} records ({applied.upserts} upserts, {applied.deletes} deletes) "
            f"to {verification.replica_url}; {verification.comparison.describe()}"
        )
        return dg.MaterializeResult(
            metadata={
                **translator.readable_metadata(applied.metadata()),
                "replica": dg.MetadataValue.text(verification.replica_url),
                "dagster/row_count": verification.comparison.replica_rows,
            },
            check_results=[matches_source_result(verification.comparison, verification.lag)],
        )

    return replica


def _quarantine_check(spec: Spec, name: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset_key(name, "replica"),
        name="quarantine",
        blocking=False,
        description=f"Rows of {name} held back by the contract (`liberation quarantine {name}`).",
    )
    def quarantine(liberation: LiberationResource) -> dg.AssetCheckResult:
        summary = summarize(liberation.load_spec(), name)
        return dg.AssetCheckResult(
            passed=summary.open == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=summary.metadata(),
            description=f"{summary.open} open of {summary.total} quarantined records in {summary.topic}",
        )

    return quarantine


def backlog_result(
    pending: int, oldest_age_seconds: float, warn_after: float, fail_after: float
) -> dg.AssetCheckResult:
    """Pass while the oldest waiting row is younger than the warn window; past the fail window it is an error."""
    severity = dg.AssetCheckSeverity.ERROR if oldest_age_seconds > fail_after else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(
        passed=oldest_age_seconds <= warn_after,
        severity=severity,
        metadata={"pending": pending, "oldest_pending_age_seconds": round(oldest_age_seconds, 3)},
        description=f"{pending} rows waiting, the oldest for {oldest_age_seconds:.1f}s",
    )


def _backlog_check(spec: Spec, name: str) -> dg.AssetChecksDefinition:
    freshness = spec.outboxes[name].freshness
    fail_after = freshness.fail_after.total_seconds()
    warn_after = freshness.warn_after.total_seconds() if freshness.warn_after else fail_after

    @dg.asset_check(
        asset=asset_key(name, "relay"),
        name="backlog",
        blocking=False,
        description=f"Rows waiting in {spec.outboxes[name].table}: warn after {translator.duration(freshness.warn_after or freshness.fail_after)}, "
        f"fail after {translator.duration(freshness.fail_after)}.",
    )
    def backlog(liberation: LiberationResource) -> dg.AssetCheckResult:
        pending, age = outbox_pending(liberation.load_spec(), name)
        return backlog_result(pending, age, warn_after, fail_after)

    return backlog


def definitions(spec: Spec) -> dg.Definitions:
    upstream = publishing_assets(spec)
    assets = [_replica_asset(spec, name, upstream[name]) for name in spec.streams]
    checks = [_quarantine_check(spec, name) for name in spec.streams] + [
        _backlog_check(spec, name) for name in spec.outboxes
    ]
    if not assets:
        return dg.Definitions(asset_checks=checks)
    tags = {VERIFY_TAG: VERIFY_JOB}
    job = dg.define_asset_job(
        VERIFY_JOB,
        selection=dg.AssetSelection.assets(*[asset_key(n, "replica") for n in spec.streams]),
        description="Catch every replica up from its topic and compare it with the source.",
        tags=tags,
    )
    schedule = skipping_schedule(f"{VERIFY_JOB}_schedule", job, "30 * * * *", tags, "verify", schedule_status(spec))
    return dg.Definitions(assets=assets, asset_checks=checks, jobs=[job], schedules=[schedule])
