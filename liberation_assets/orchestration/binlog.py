"""MySQL/MariaDB binlog pattern: per source, one multi-asset with a ``<stream>/<stream>_cdc`` asset per stream, and a sensor.

A run drains the source's binlog up to where the server is now (snapshotting
first when needed), exactly once into Kafka.  The sensor requests a run when
the binlog has moved past the stored position, and now and then even when it
has not, so an idle source stays fresh.  PostgreSQL sources are ``cdc.py``'s.
"""

from collections.abc import Iterator

import dagster as dg

from liberation_assets.core.engine.cdc_mysql import CdcSummary, cdc_streams, drain, log_lag
from liberation_assets.core.errors import SchemaIncompatible
from liberation_assets.core.spec import Spec
from liberation_assets.orchestration import translator
from liberation_assets.orchestration.contracts import contract_check_specs, refused_results, source_contract_results
from liberation_assets.orchestration.policy import freshness_policy, sensor_status
from liberation_assets.orchestration.resources import LiberationResource
from liberation_assets.orchestration.runs import BINLOG_TAG, Probe, log_sensor, refuse_beside_follower
from liberation_assets.orchestration.translator import Materialized, asset_key

SOURCE_FIGURES = (
    "kafka_transactions",
    "binlog_bytes_behind",
    "binlog_file_index",
    "binlog_pos",
    "snapshot_lock_ms",
    "reconciled_deletes",
    "ddl_events",
)


class BinlogRunConfig(dg.Config):
    """Run config of a source's binlog assets."""

    resnapshot: bool = False
    """Discard the stored binlog position and snapshot again: the way out of PositionLost after a purge."""


def binlog_sources(spec: Spec) -> list[str]:
    """MySQL/MariaDB sources that have CDC streams."""
    return [name for name, source in spec.sources.items() if source.dialect == "mysql" and cdc_streams(spec, name)]


def _stream_metadata(summary: CdcSummary, stream: str) -> dict[str, float | int]:
    source = summary.metadata()
    return {**summary.stream_metadata(stream), **{f"source_{k}": source[k] for k in SOURCE_FIGURES if k in source}}


def _binlog_assets(spec: Spec, source: str) -> dg.AssetsDefinition:
    names = cdc_streams(spec, source)
    specs = [
        dg.AssetSpec(
            **translator.spec_fields(spec, name, "cdc"),
            freshness_policy=freshness_policy(spec.streams[name].freshness),
        )
        for name in names
    ]

    keys = {name: asset_key(name, "cdc") for name in names}

    @dg.multi_asset(
        name=f"{source}_binlog",
        specs=specs,
        check_specs=[c for name, key in keys.items() for c in contract_check_specs(name, key)],
        description=f"Drains the binlog of {source} for {', '.join(names)}: one Kafka transaction per micro-batch.",
        pool=f"liberation-{source}-cdc",
    )
    def binlog(
        context: dg.AssetExecutionContext, config: BinlogRunConfig, liberation: LiberationResource
    ) -> Iterator[Materialized | dg.AssetCheckResult]:
        spec = liberation.load_spec()
        refuse_beside_follower(context.instance, spec, source)
        try:
            summary = drain(
                spec,
                source,
                resnapshot=config.resnapshot,
                progress=lambda stream, rows: context.log.debug(f"snapshot {stream}: {rows} rows"),
            )
        except SchemaIncompatible:
            yield from refused_results(spec, keys)
            raise
        context.log.info(f"source {source}: {summary.describe()}")
        metadata = {name: _stream_metadata(summary, name) for name in names}
        contracts = source_contract_results(spec, keys, metadata)
        for name in names:
            yield dg.MaterializeResult(
                asset_key=keys[name],
                metadata=translator.readable_metadata(metadata[name]),
                check_results=contracts[name],
            )

    return binlog


def _heartbeat_seconds(spec: Spec, source: str) -> float:
    """An idle binlog is still drained this often, so the assets stay fresh while nothing changes."""
    windows = [
        (s.freshness.warn_after or s.freshness.fail_after).total_seconds()
        for s in (spec.streams[n] for n in cdc_streams(spec, source))
    ]
    return min(windows) / 2


def _binlog_sensor(spec: Spec, source: str) -> dg.SensorDefinition:
    keys = [asset_key(name, "cdc") for name in cdc_streams(spec, source)]

    def probe(spec: Spec) -> Probe:
        lag = log_lag(spec, source)
        behind = "no position yet" if lag.stored is None else f"{lag.bytes_behind} bytes" if lag.behind else "0 bytes"
        return Probe(
            bool(lag.behind),
            f"the binlog of {source} is at the stored position {lag.current[0]}:{lag.current[1]}",
            {"liberation/behind": behind},
        )

    return log_sensor(
        name=translator.sensor_name(source, "binlog"),
        job=translator.asset_job(source, "drain", keys, f"Drain the binlog of {source}."),
        interval_seconds=max(5, int(spec.sources[source].cdc.heartbeat_every.total_seconds())),
        default_status=sensor_status(spec),
        description=f"Requests a drain of {source}'s binlog when it has moved past the stored position.",
        tags={BINLOG_TAG: source},
        what=f"binlog run of {source}",
        heartbeat_key=keys[0],
        heartbeat_seconds=_heartbeat_seconds(spec, source),
        probe=probe,
    )


def definitions(spec: Spec) -> dg.Definitions:
    sources = binlog_sources(spec)
    return dg.Definitions(
        assets=[_binlog_assets(spec, source) for source in sources],
        sensors=[_binlog_sensor(spec, source) for source in sources if source not in spec.continuous_sources()],
    )  # continuous: its follower reads the log
