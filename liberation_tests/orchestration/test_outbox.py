"""The outbox's Dagster layer: a relay asset per outbox with freshness, numeric metadata, and a pending sensor."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import pytest

from liberation_assets.core.outbox import create_outbox_table, emit
from liberation_assets.orchestration import outbox
from liberation_assets.orchestration.resources import build_resources
from liberation_tests.core.outbox.support import CounterBumped, outbox_spec
from liberation_tests.fix_stack import spec_to_yaml

KEY = dg.AssetKey(["ob", "ob_relay"])


def test_each_outbox_gets_a_fresh_relay_asset_and_a_running_sensor(make_spec) -> None:
    spec = outbox_spec(make_spec, pg="unused", poll_every="15s", freshness={"fail_after": "5m", "warn_after": "2m"})
    defs = outbox.definitions(spec)
    [asset] = [a for a in defs.assets if isinstance(a, dg.AssetsDefinition)]
    assert asset.key == KEY
    policy = asset.specs_by_key[KEY].freshness_policy
    assert policy is not None and policy.fail_window.to_timedelta() == timedelta(minutes=5)
    assert {"kafka", "postgres", "outbox"} <= set(asset.specs_by_key[KEY].kinds)
    [sensor] = defs.sensors
    assert sensor.name == "ob_relay_sensor" and sensor.minimum_interval_seconds == 15
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED  # the spec says nothing: Dagster's default


@pytest.mark.integration
def test_sensor_requests_the_relay_when_rows_are_pending_and_metadata_plots(
    make_spec, pg_engine, pg_database, tmp_path
) -> None:
    spec = outbox_spec(make_spec, pg=pg_database)
    create_outbox_table(pg_engine, spec.outboxes["ob"])
    spec_file = tmp_path / "liberation.yaml"
    spec_file.write_text(spec_to_yaml(spec))
    defs = dg.Definitions.merge(outbox.definitions(spec), dg.Definitions(resources=build_resources(str(spec_file))))
    [sensor] = defs.sensors
    resources = build_resources(str(spec_file))
    instance = dg.DagsterInstance.ephemeral()

    def tick() -> dg.SensorResult | dg.SkipReason:
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            return sensor(context)

    first = tick()  # empty and never materialized: a heartbeat run keeps the asset fresh
    assert isinstance(first, dg.SensorResult) and first.run_requests[0].tags["liberation/pending"] == "0"
    with pg_engine.begin() as connection:
        for n in (1, 2, 3):
            emit(connection, CounterBumped(counter_id="c", n=n, writer=0))
    pending = tick()
    assert isinstance(pending, dg.SensorResult)
    assert pending.run_requests[0].tags == {
        "liberation/outbox": "ob",
        "liberation/pending": "3",
        "dagster/priority": "10",
        "liberation/reason": "pending",
    }

    result = dg.materialize(
        [a for a in defs.assets if isinstance(a, dg.AssetsDefinition)], instance=instance, resources=resources
    )

    assert result.success
    [materialization] = result.asset_materializations_for_node("ob__ob_relay")
    metadata = {key: value.value for key, value in materialization.metadata.items()}
    assert metadata["published"] == 3 and metadata["pending"] == 0
    assert isinstance(metadata["oldest_pending_age_seconds"], float)
    assert isinstance(tick(), dg.SkipReason)  # drained and freshly materialized
