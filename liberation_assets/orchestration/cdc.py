"""CDC pattern (PostgreSQL): per source, one multi-asset with a ``<stream>/<stream>_cdc`` asset per stream,
a sensor that requests a run when the slot holds changes, and a check on the slot's lag and retained WAL.

All streams of a source share one slot, so one run drains them all: the
multi-asset is the unit of work, and each asset reports its own event count.
For latency below the sensor's interval, run ``liberation follow <source>``
instead; the sensor then skips, because the slot is in use.
"""

from collections.abc import Iterator

import dagster as dg

from liberation_assets.core.engine.cdc_postgres import CdcSummary, cdc_streams, drain, slot_status
from liberation_assets.core.errors import SchemaIncompatible
from liberation_assets.core.readers.pg_slot import SlotInfo, SlotNames
from liberation_assets.core.spec import Spec
from liberation_assets.orchestration import translator
from liberation_assets.orchestration.contracts import contract_check_specs, refused_results, source_contract_results
from liberation_assets.orchestration.policy import freshness_policy, sensor_status
from liberation_assets.orchestration.resources import LiberationResource
from liberation_assets.orchestration.runs import CDC_TAG, Probe, log_sensor, refuse_beside_follower
from liberation_assets.orchestration.translator import Materialized, asset_key

RETAINED_WAL_WARN_BYTES = 1024**3
"""A slot holding more WAL than this is reported (WARN): the disk of the source is at stake."""
SENSOR_INTERVAL_SECONDS = 30


def postgres_sources(spec: Spec) -> list[str]:
    return [name for name, source in spec.sources.items() if source.dialect == "postgresql" and cdc_streams(spec, name)]


def slot_check(
    info: SlotInfo | None, summary: CdcSummary | None = None, key: dg.AssetKey | None = None
) -> dg.AssetCheckResult:
    """Fails when the slot lost WAL; warns when it retains more than ``RETAINED_WAL_WARN_BYTES``."""
    check_name = "slot_health" if key else None
    if info is None:
        return dg.AssetCheckResult(
            passed=False, description="the replication slot does not exist", asset_key=key, check_name=check_name
        )
    figures: dict[str, float | int] = {**info.metadata()}
    if summary is not None and summary.last_commit_ms is not None:
        figures["lag_seconds"] = summary.metadata()["lag_seconds"]
    metadata = translator.readable_metadata(figures)  # LSNs as PostgreSQL prints them
    if info.wal_status in ("lost", "unreserved"):
        return dg.AssetCheckResult(
            passed=False,
            metadata=metadata,
            description=f"slot WAL status is {info.wal_status}: changes are or will be lost",
            asset_key=key,
            check_name=check_name,
        )
    if info.retained_wal_bytes > RETAINED_WAL_WARN_BYTES:
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=metadata,
            description=f"slot retains {info.retained_wal_bytes / 1024**2:.0f} MB of WAL",
            asset_key=key,
            check_name=check_name,
        )
    return dg.AssetCheckResult(passed=True, metadata=metadata, asset_key=key, check_name=check_name)


def _source_assets(spec: Spec, source: str) -> dg.AssetsDefinition:
    names = cdc_streams(spec, source)
    slot = SlotNames.for_source(source, spec.sources[source])
    specs = [
        dg.AssetSpec(
            **translator.spec_fields(spec, name, "cdc"),
            freshness_policy=freshness_policy(spec.streams[name].freshness),
        )
        for name in names
    ]
    check = dg.AssetCheckSpec(
        "slot_health",
        asset=asset_key(names[0], "cdc"),
        description="The slot's lag and retained WAL (warn above 1 GiB, fail when WAL was lost).",
    )

    keys = {name: asset_key(name, "cdc") for name in names}
    contract_specs = [c for name, key in keys.items() for c in contract_check_specs(name, key)]

    @dg.multi_asset(
        name=f"{source}_cdc",
        specs=specs,
        check_specs=[check, *contract_specs],
        can_subset=False,
        pool=f"liberation-{source}-cdc",
        description=f"Drains replication slot {slot.slot} of source {source} up to the current LSN.",
    )
    def cdc(
        context: dg.AssetExecutionContext, liberation: LiberationResource
    ) -> Iterator[Materialized | dg.AssetCheckResult]:
        spec = liberation.load_spec()
        refuse_beside_follower(context.instance, spec, source)
        try:
            summary = drain(spec, source)
        except SchemaIncompatible:
            yield from refused_results(spec, keys)
            raise
        context.log.info(f"source {source}: {summary.describe()}")
        contracts = source_contract_results(spec, keys, {name: summary.metadata(name) for name in names})
        for index, name in enumerate(names):
            checks = (
                [slot_check(summary.slot, summary, keys[name]), *contracts[name]] if index == 0 else contracts[name]
            )
            yield dg.MaterializeResult(
                asset_key=keys[name],
                metadata=translator.readable_metadata(summary.metadata(name)),
                check_results=checks,
            )

    return cdc


def _pending_sensor(spec: Spec, source: str, assets: dg.AssetsDefinition) -> dg.SensorDefinition:
    names = cdc_streams(spec, source)
    # Quiet sources still run this often, so the assets stay fresh and heartbeats move the slot on.
    heartbeat = (
        min(
            (spec.streams[n].freshness.warn_after or spec.streams[n].freshness.fail_after).total_seconds()
            for n in names
        )
        / 2
    )

    def probe(spec: Spec) -> Probe:
        status = slot_status(spec, source)
        if status.pending is None:
            return Probe(None, "the slot is in use by another reader (liberation follow)")
        return Probe(bool(status.pending), "no unread changes in the slot")

    return log_sensor(
        name=translator.sensor_name(source, "cdc"),
        job=translator.asset_job(source, "drain", list(assets.keys), f"Drain the replication slot of {source}."),
        interval_seconds=SENSOR_INTERVAL_SECONDS,
        default_status=sensor_status(spec),
        description=f"Requests a {source} CDC run when its replication slot holds unread changes.",
        tags={CDC_TAG: source},
        what=f"CDC run of {source}",
        heartbeat_key=asset_key(names[0], "cdc"),
        heartbeat_seconds=heartbeat,
        probe=probe,
    )


def definitions(spec: Spec) -> dg.Definitions:
    assets, sensors = [], []
    for source in postgres_sources(spec):
        source_assets = _source_assets(spec, source)
        assets.append(source_assets)
        if source not in spec.continuous_sources():  # a continuous source's follower reads the slot, not micro-batches
            sensors.append(_pending_sensor(spec, source, source_assets))
    return dg.Definitions(assets=assets, sensors=sensors)
