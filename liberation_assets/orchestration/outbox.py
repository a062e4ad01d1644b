"""Outbox pattern: a ``<outbox>/<outbox>_relay`` asset per outbox table, and a sensor that requests it when rows are pending."""

import dagster as dg

from liberation_assets.core.engine.outbox_relay import outbox_pending, relay_once
from liberation_assets.core.spec import Spec
from liberation_assets.orchestration import translator
from liberation_assets.orchestration.policy import freshness_policy, sensor_status
from liberation_assets.orchestration.resources import LiberationResource
from liberation_assets.orchestration.runs import OUTBOX_TAG, Probe, log_sensor
from liberation_assets.orchestration.translator import Materialized, asset_key


def _relay_asset(spec: Spec, name: str) -> dg.AssetsDefinition:
    outbox = spec.outboxes[name]

    @dg.asset(
        **translator.outbox_fields(spec, name),
        freshness_policy=freshness_policy(outbox.freshness),
        pool=f"liberation-outbox-{name}",
    )
    def relay(context: dg.AssetExecutionContext, liberation: LiberationResource) -> Materialized:
        summary = relay_once(liberation.load_spec(), name)
        if summary.lease_acquired:
            context.log.info(
                f"relayed {summary.relayed} events in {summary.transactions} transactions; "
                f"{summary.pending} pending, oldest {summary.oldest_pending_age_seconds:.1f}s"
            )
        else:
            context.log.info(
                f"another relay (e.g. `liberation follow {name}`) holds the lease; {summary.pending} pending"
            )
        return dg.MaterializeResult(metadata=translator.readable_metadata(summary.metadata()))

    return relay


def _heartbeat_seconds(spec: Spec, name: str) -> float:
    """An empty outbox is still checked this often, so the asset stays fresh while there is nothing to relay."""
    freshness = spec.outboxes[name].freshness
    return (freshness.warn_after or freshness.fail_after).total_seconds() / 2


def _pending_sensor(spec: Spec, name: str) -> dg.SensorDefinition:
    outbox = spec.outboxes[name]
    key = asset_key(name, "relay")

    def probe(spec: Spec) -> Probe:
        count, _age = outbox_pending(spec, name)
        return Probe(bool(count), f"outbox {outbox.table} is empty", {"liberation/pending": str(count)})

    return log_sensor(
        name=translator.sensor_name(name, "relay"),
        job=translator.asset_job(name, "relay", [key], f"Relay the pending rows of {outbox.table}."),
        interval_seconds=max(1, int(outbox.poll_every.total_seconds())),
        default_status=sensor_status(spec),
        description=f"Requests {name}_relay when {outbox.table} has pending rows (checked every {translator.duration(outbox.poll_every)}).",
        tags={OUTBOX_TAG: name},
        what=f"relay run of {name}",
        heartbeat_key=key,
        heartbeat_seconds=_heartbeat_seconds(spec, name),
        probe=probe,
    )


def definitions(spec: Spec) -> dg.Definitions:
    assets = [_relay_asset(spec, name) for name in spec.outboxes]
    sensors = [
        _pending_sensor(spec, name) for name in spec.outboxes if name not in spec.continuous_sources()
    ]  # continuous: its follower relays, not micro-batch runs
    return dg.Definitions(assets=assets, sensors=sensors)
