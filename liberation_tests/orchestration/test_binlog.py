"""The binlog pattern in Dagster: a multi-asset per MySQL source, ``<stream>/cdc`` assets, and the sensor."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from liberation_assets.core.spec import Spec, load_spec
from liberation_assets.orchestration import binlog
from liberation_assets.orchestration.build import build_definitions
from liberation_assets.orchestration.resources import build_resources
from liberation_tests.core.readers.binlog.cdc_support import cdc_spec, source_of, write_spec

REPO = Path(__file__).resolve().parents[2]
ITEMS = "CREATE TABLE items (id INT PRIMARY KEY, v INT, updated_at DATETIME(6) NOT NULL DEFAULT NOW(6))"


def test_demo_spec_has_cdc_assets_for_the_mariadb_streams() -> None:
    spec = load_spec(REPO / "liberation.yaml")
    defs = build_definitions(spec)
    graph = defs.resolve_asset_graph()
    for name in ("products_maria", "orders_maria"):
        node = graph.get(dg.AssetKey([name, f"{name}_cdc"]))
        assert node.freshness_policy is not None
        assert node.freshness_policy.fail_window.to_timedelta() == spec.streams[name].freshness.fail_after
        assert {"kafka", "mariadb", "cdc"} <= set(node.kinds) and node.group_name == "shop_maria"
    sensors = {
        s.name: s for s in defs.sensors
    }  # the demo's shop_maria is continuous: a follower, no micro-batch sensor
    assert "shop_maria_binlog_sensor" not in sensors
    assert sensors["shop_maria_follow_sensor"].default_status == dg.DefaultSensorStatus.RUNNING  # automation on


def test_only_mysql_sources_are_handled_here() -> None:
    spec = Spec.model_validate(
        {
            "sources": {
                "pg": {"url": "postgresql+psycopg://u:${P:-x}@h/db"},
                "my": {"url": "mysql+pymysql://u:${P:-x}@h/db"},
            },
            "streams": {
                "a": {"source": "pg", "table": "a", "key": ["id"], "patterns": ["cdc"]},
                "b": {"source": "my", "table": "b", "key": ["id"], "patterns": ["cdc"]},
                "c": {"source": "my", "table": "c", "key": ["id"], "patterns": ["snapshot", "query"]},
            },
        }
    )
    defs = dg.Definitions.merge(binlog.definitions(spec), dg.Definitions(resources=build_resources()))
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).is_materializable}
    assert keys == {"b/b_cdc"}


@pytest.mark.integration
def test_sensor_requests_runs_and_the_run_reports_numeric_metadata(
    make_spec, mysql_database, mysql_engine, tmp_path
) -> None:
    with mysql_engine.begin() as connection:
        connection.exec_driver_sql(ITEMS)
        connection.exec_driver_sql("INSERT INTO items (id, v) SELECT seq, seq FROM seq_1_to_120")
    spec = cdc_spec(make_spec, mysql_database, {"items": {"table": "items", "key": ["id"]}})
    source, path = source_of(spec), write_spec(spec, tmp_path)
    defs = build_definitions(spec, str(path))
    sensor = {s.name: s for s in defs.sensors}[f"{source}_binlog_sensor"]
    instance = dg.DagsterInstance.ephemeral()

    def tick() -> dg.SensorResult | dg.SkipReason:
        with dg.build_sensor_context(instance=instance, resources=build_resources(str(path))) as context:
            return sensor(context)

    first = tick()
    assert isinstance(first, dg.SensorResult) and first.run_requests  # nothing stored yet: snapshot
    result = dg.materialize([defs.resolve_assets_def(dg.AssetKey(["items", "items_cdc"]))], instance=instance)
    assert result.success
    metadata = result.asset_materializations_for_node(f"{source}_binlog")[0].metadata
    assert metadata["snapshot_rows"].value == 120 and isinstance(metadata["snapshot_rows"], dg.IntMetadataValue)
    assert isinstance(metadata["source_binlog_bytes_behind"], dg.IntMetadataValue)
    assert isinstance(tick(), dg.SkipReason)  # caught up, and just materialized

    with mysql_engine.begin() as connection:
        connection.exec_driver_sql("UPDATE items SET v = 0 WHERE id = 7")
    moved = tick()
    assert isinstance(moved, dg.SensorResult) and moved.run_requests
    result = dg.materialize([defs.resolve_assets_def(dg.AssetKey(["items", "items_cdc"]))], instance=instance)
    assert result.asset_materializations_for_node(f"{source}_binlog")[0].metadata["published"].value == 1


@pytest.mark.integration
def test_resnapshot_run_config(make_spec, mysql_database, mysql_engine, tmp_path) -> None:
    with mysql_engine.begin() as connection:
        connection.exec_driver_sql(ITEMS)
        connection.exec_driver_sql("INSERT INTO items (id, v) VALUES (1, 1), (2, 2)")
    spec = cdc_spec(make_spec, mysql_database, {"items": {"table": "items", "key": ["id"]}})
    source, path = source_of(spec), write_spec(spec, tmp_path)
    assets = build_definitions(spec, str(path)).resolve_assets_def(dg.AssetKey(["items", "items_cdc"]))
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([assets], instance=instance).success
    again = dg.materialize(
        [assets], instance=instance, run_config={"ops": {f"{source}_binlog": {"config": {"resnapshot": True}}}}
    )
    assert again.asset_materializations_for_node(f"{source}_binlog")[0].metadata["snapshot_rows"].value == 2
