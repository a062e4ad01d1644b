"""The code location: it loads, its assets follow the spec, and the webserver reports it LOADED."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import orjson
import pytest

from liberation_assets.core.spec import load_spec
from liberation_assets.orchestration.build import MAIN_JOB, build_definitions

REPO = Path(__file__).resolve().parents[2]


def test_definitions_load_from_the_demo_spec() -> None:
    from liberation_assets.definitions import defs

    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    spec = load_spec(REPO / "liberation.yaml")
    for name, stream in spec.streams.items():
        if "snapshot" in stream.patterns:
            assert f"{name}/{name}_snapshot" in keys
        if "query" in stream.patterns:
            assert f"{name}/{name}_incremental" in keys
    assert defs.resolve_job_def(MAIN_JOB)


def test_query_assets_carry_freshness_kinds_and_one_group_per_source() -> None:
    spec = load_spec(REPO / "liberation.yaml")
    defs = build_definitions(spec)
    graph = defs.resolve_asset_graph()
    node = graph.get(dg.AssetKey(["products", "products_incremental"]))
    policy = node.freshness_policy
    assert policy is not None and policy.fail_window.to_timedelta() == spec.streams["products"].freshness.fail_after
    assert {"kafka", "postgres", "query"} <= set(node.kinds)
    assert node.group_name == "shop"
    assert graph.get(dg.AssetKey(["inventory_maria", "inventory_maria_incremental"])).group_name == "shop_maria"
    sensors = {s.name: s for s in defs.sensors}
    assert {"shop_poll_sensor", "shop_maria_poll_sensor"} <= set(sensors)  # one poll sensor per source
    assert sensors["shop_poll_sensor"].minimum_interval_seconds < 60  # sub-minute poll_every is honoured
    assert sensors["shop_poll_sensor"].default_status == dg.DefaultSensorStatus.RUNNING  # demo: automation on
    schedules = {s.name: s for s in defs.schedules}
    assert "products_poll_schedule" not in schedules
    assert schedules["products_reconcile_schedule"].cron_schedule == "0 */1 * * *"


def test_schedules_and_sensors_start_stopped_unless_the_spec_says_otherwise() -> None:
    spec = load_spec(REPO / "liberation.yaml")
    quiet = spec.model_copy(update={"automation": type(spec.automation)()})
    defs = build_definitions(quiet)
    assert {s.default_status for s in defs.schedules} == {dg.DefaultScheduleStatus.STOPPED}
    assert {s.default_status for s in defs.sensors} == {dg.DefaultSensorStatus.STOPPED}
    demo = build_definitions(spec)
    assert {s.default_status for s in demo.schedules} == {dg.DefaultScheduleStatus.RUNNING}
    assert {s.default_status for s in demo.sensors} == {dg.DefaultSensorStatus.RUNNING}


@pytest.mark.integration
def test_materializing_query_assets_publishes_and_reports_numeric_metadata(
    make_spec, pg_database, pg_engine, tmp_path, kafka_bootstrap
) -> None:
    import sqlalchemy as sa

    from liberation_tests.fix_kafka import consume_all
    from liberation_tests.fix_stack import spec_to_yaml

    with pg_engine.begin() as c:
        c.execute(
            sa.text(
                "CREATE TABLE items (id int PRIMARY KEY, name text, cost numeric, updated_at timestamptz NOT NULL DEFAULT now())"
            )
        )
        c.execute(
            sa.text("INSERT INTO items (id, name, cost) SELECT i, 'item ' || i, i FROM generate_series(1, 250) i")
        )
    spec = make_spec(
        pg=pg_database,
        streams={
            "items": {"source": "pg", "table": "items", "key": ["id"], "projection": ["id", "name", "updated_at"]}
        },
    )
    path = tmp_path / "spec.yaml"
    path.write_text(spec_to_yaml(spec))
    defs = build_definitions(spec, str(path))
    result = dg.materialize(
        [
            defs.resolve_assets_def(dg.AssetKey(["items", "items_snapshot"])),
            defs.resolve_assets_def(dg.AssetKey(["items", "items_incremental"])),
        ],
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    snapshot = result.asset_materializations_for_node("items__items_snapshot")[0].metadata
    assert snapshot["published"].value == 250 and snapshot["dagster/row_count"].value == 250
    assert isinstance(snapshot["published"], dg.IntMetadataValue)
    incremental = result.asset_materializations_for_node("items__items_incremental")[0].metadata
    assert isinstance(incremental["ceiling_lag_seconds"], dg.FloatMetadataValue)
    assert len(consume_all(kafka_bootstrap, spec.topic_for("items"))) == 250


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.integration
def test_webserver_reports_the_code_location_loaded(tmp_path) -> None:
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "LIBERATION_SPEC": str(REPO / "liberation.yaml")}
    (tmp_path / "dagster.yaml").touch()
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-webserver"),
            "-w",
            str(REPO / "workspace.yaml"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"webserver did not start: {process.stderr.read().decode()[-3000:]}")
                time.sleep(1)
        query = b'{"query": "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"}'
        while True:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/graphql", data=query, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                entries = orjson.loads(response.read())["data"]["workspaceOrError"]["locationEntries"]
            if entries and entries[0]["loadStatus"] == "LOADED" or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert entries[0]["name"] == "liberation"
        assert entries[0]["loadStatus"] == "LOADED"
        assert entries[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation", entries
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
