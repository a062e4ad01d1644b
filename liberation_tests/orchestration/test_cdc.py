"""The CDC Dagster layer: per-source multi-asset, slot check, pending sensor; materialized against the real stack."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from liberation_assets.core.readers.pg_slot import SlotInfo
from liberation_assets.core.spec import load_spec
from liberation_assets.orchestration import cdc
from liberation_assets.orchestration.build import build_definitions
from liberation_assets.orchestration.resources import build_resources
from liberation_tests.core.engine.cdc_postgres_support import cdc_spec, envelopes, source_name, write_spec

REPO = Path(__file__).resolve().parents[2]


def test_demo_spec_has_one_cdc_multi_asset_per_postgres_source() -> None:
    spec = load_spec(REPO / "liberation.yaml")
    defs = cdc.definitions(spec)
    (assets,) = defs.assets
    assert {k.to_user_string() for k in assets.keys} == {"inventory/inventory_cdc", "orders/orders_cdc"}
    graph = build_definitions(spec).resolve_asset_graph()
    node = graph.get(dg.AssetKey(["orders", "orders_cdc"]))
    assert node.freshness_policy is not None
    assert node.freshness_policy.fail_window.to_timedelta() == spec.streams["orders"].freshness.fail_after
    assert {"kafka", "postgres", "cdc"} <= set(node.kinds) and node.group_name == "shop"
    assert sorted(c.name for c in assets.check_specs) == [
        "contract",
        "contract",
        "schema_compatible",
        "schema_compatible",
        "slot_health",
    ]  # the contract checks of both streams, in the same step
    assert not defs.sensors  # the demo's shop is continuous: its follower reads the slot, no micro-batch sensor
    micro_batch = spec.model_copy(
        update={"sources": {**spec.sources, "shop": spec.sources["shop"].model_copy(update={"mode": "micro_batch"})}}
    )
    (sensor,) = cdc.definitions(micro_batch).sensors
    assert sensor.name == "shop_cdc_sensor" and sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_slot_check_fails_on_lost_wal_and_warns_on_bloat() -> None:
    healthy = SlotInfo("s", "pgoutput", "db", None, 100, 150, "reserved", 200)
    assert cdc.slot_check(healthy).passed
    assert cdc.slot_check(healthy).metadata["retained_wal_bytes"].value == 100
    lost = cdc.slot_check(SlotInfo("s", "pgoutput", "db", None, 100, 150, "lost", 200))
    assert not lost.passed and lost.severity == dg.AssetCheckSeverity.ERROR
    bloated = cdc.slot_check(SlotInfo("s", "pgoutput", "db", None, 0, 0, "extended", 2 * 1024**3))
    assert not bloated.passed and bloated.severity == dg.AssetCheckSeverity.WARN
    assert not cdc.slot_check(None).passed


@pytest.mark.integration
def test_sensor_and_materialization_drain_the_slot(make_spec, pg_database, pg_engine, tmp_path) -> None:
    with pg_engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE a (id int PRIMARY KEY, v text)")
        connection.exec_driver_sql("CREATE TABLE b (id int PRIMARY KEY, v text)")
        connection.exec_driver_sql("INSERT INTO a SELECT g, 'a' FROM generate_series(1, 30) g")
    spec = cdc_spec(make_spec, pg_database, {"a": {"table": "a", "key": ["id"]}, "b": {"table": "b", "key": ["id"]}})
    path = write_spec(spec, tmp_path)
    defs = build_definitions(spec, str(path))
    source = source_name(spec)
    (sensor,) = [s for s in defs.sensors if s.name == f"{source}_cdc_sensor"]
    instance = dg.DagsterInstance.ephemeral()
    resources = build_resources(str(path))

    def evaluate() -> dg.SensorResult | dg.SkipReason:
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            return sensor(context)

    first = evaluate()
    assert isinstance(first, dg.SensorResult) and first.run_requests, "no slot yet: the first run creates it"

    def materialize() -> dg.ExecuteInProcessResult:
        result = dg.materialize([defs.resolve_assets_def(dg.AssetKey(["a", "a_cdc"]))], instance=instance)
        assert result.success
        return result

    result = materialize()
    materializations = [e.materialization for e in result.get_asset_materialization_events()]
    metadata = {m.asset_key.to_user_string(): m.metadata for m in materializations}
    assert metadata["a/a_cdc"]["published"].value == 30 and metadata["b/b_cdc"]["published"].value == 0
    for name in ("published", "lag_bytes", "retained_wal_bytes"):
        assert isinstance(metadata["a/a_cdc"][name], dg.IntMetadataValue), name
    assert (
        isinstance(metadata["a/a_cdc"]["lsn"], dg.TextMetadataValue) and "/" in metadata["a/a_cdc"]["lsn"].value
    )  # as PostgreSQL prints it
    checks = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}
    assert sorted(checks) == [
        ("a/a_cdc", "contract"),
        ("a/a_cdc", "schema_compatible"),
        ("a/a_cdc", "slot_health"),
        ("b/b_cdc", "contract"),
        ("b/b_cdc", "schema_compatible"),
    ]
    assert all(check.passed for check in checks.values())

    assert isinstance(evaluate(), dg.SkipReason), "nothing pending after the drain"
    with pg_engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO b VALUES (1, 'b')"))
    pending = evaluate()
    assert isinstance(pending, dg.SensorResult) and pending.run_requests
    materialize()
    assert [e["op"] for e in envelopes(spec, "b")] == ["c"]
