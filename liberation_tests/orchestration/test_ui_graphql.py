"""What the UI shows, read through the webserver's GraphQL API: table metadata, lineage, readable names, owners and tags.

A real ``dagster-webserver`` serves the code location (the dg component) for a
temporary copy of the demo spec; nothing here needs the databases or Kafka,
since definitions load without them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import yaml

from liberation_assets.demo.cli import stop_tree

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "docs"))
from screenshots import _loaded, _wait, free_port  # noqa: E402  (the screenshots' harness: same wait for LOADED)

ASSET_NODES = """
{ assetNodes {
    assetKey { path } groupName isMaterializable isObservable kinds
    dependencyKeys { path } dependedByKeys { path }
    owners { __typename ... on TeamAssetOwner { team } ... on UserAssetOwner { email } }
    tags { key value }
    metadataEntries {
      label __typename
      ... on TextMetadataEntry { text }
      ... on TableSchemaMetadataEntry { schema { columns { name type constraints { nullable unique other } } } }
      ... on TableColumnLineageMetadataEntry { lineage { columnName columnDeps { assetKey { path } columnName } } }
    }
} }
"""


def _post(base: str, query: str) -> dict:
    request = urllib.request.Request(
        f"{base}/graphql", data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.loads(response.read())
    assert "errors" not in body, body["errors"]
    return body["data"]


@pytest.fixture(scope="module")
def nodes(tmp_path_factory) -> dict[str, dict]:
    """Asset nodes by key (``a/b``) from a webserver on a copy of the demo spec, one stream with owners and tags of its own."""
    home = tmp_path_factory.mktemp("dagster-home")
    (home / "dagster.yaml").write_text("")
    spec = yaml.safe_load((REPO / "liberation.yaml").read_text())
    spec["streams"]["payments"].update(
        owners=["payments@example.com", "team:billing"], tags={"domain": "billing", "tier": "gold"}
    )
    spec_file = home / "liberation.yaml"
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "LIBERATION_SPEC": str(spec_file)}
    log = open(home / "webserver.log", "wb")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-webserver"),
            "-m",
            "liberation_assets.definitions",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: process.poll() is None and _loaded(base), 180, "the Dagster webserver")
        data = _post(base, ASSET_NODES)
    finally:
        stop_tree(process.pid)  # the webserver's code server ignores SIGTERM: killed by PID
        process.wait()
        log.close()
    return {"/".join(node["assetKey"]["path"]): node for node in data["assetNodes"]}


def _stream_assets(nodes: dict[str, dict]) -> dict[str, dict]:
    """The assets that publish a stream (snapshot, incremental, reconcile, cdc)."""
    return {
        key: node
        for key, node in nodes.items()
        if node["isMaterializable"] and key.rsplit("_", 1)[-1] in ("snapshot", "incremental", "reconcile", "cdc")
    }


def _entries(node: dict) -> dict[str, dict]:
    return {entry["label"]: entry for entry in node["metadataEntries"]}


def test_every_stream_asset_has_a_column_schema_with_constraints_and_a_table_name(nodes) -> None:
    streams = _stream_assets(nodes)
    assert len(streams) >= 12
    for key, node in streams.items():
        entries = _entries(node)
        columns = {c["name"]: c for c in entries["dagster/column_schema"]["schema"]["columns"]}
        assert columns, key
        assert entries["dagster/table_name"]["text"].count(".") >= 1, key
    snapshot = _entries(nodes["products/products_snapshot"])
    columns = {c["name"]: c for c in snapshot["dagster/column_schema"]["schema"]["columns"]}
    assert columns["id"]["constraints"] == {"nullable": False, "unique": True, "other": ["primary key", ">= 1"]}
    assert columns["sku"]["type"] == "str" and "max length 32" in columns["sku"]["constraints"]["other"]
    assert (
        "in [garden, kitchen, tools, toys, books, outdoor, bath, office]" in columns["category"]["constraints"]["other"]
    )
    assert columns["description"]["constraints"]["nullable"] is True
    assert snapshot["dagster/table_name"]["text"] == "shop.products"
    lineage = {c["columnName"]: c["columnDeps"] for c in snapshot["dagster/column_lineage"]["lineage"]}
    assert lineage["sku"] == [{"assetKey": {"path": ["shop", "products"]}, "columnName": "sku"}]
    prices = _entries(nodes["prices/prices_incremental"])
    lineage = {c["columnName"]: c["columnDeps"] for c in prices["dagster/column_lineage"]["lineage"]}
    assert lineage["price"] == [{"assetKey": {"path": ["shop", "prices"]}, "columnName": "amount"}]  # public ← source


def test_lineage_runs_from_the_source_table_through_the_topic_to_the_replica(nodes) -> None:
    for key, node in _stream_assets(nodes).items():
        stream = key.split("/")[0]
        upstream = {"/".join(k["path"]) for k in node["dependencyKeys"]}
        tables = [k for k in upstream if k in nodes and "table" in nodes[k]["kinds"]]
        assert tables and all(not nodes[t]["isMaterializable"] for t in tables), (key, upstream)
        downstream = {"/".join(k["path"]) for k in node["dependedByKeys"]}
        assert f"{stream}/{stream}_replica" in downstream and f"{stream}/{stream}_topic" in downstream, (
            key,
            downstream,
        )
    replica = nodes["orders/orders_replica"]
    assert {"/".join(k["path"]) for k in replica["dependencyKeys"]} == {"orders/orders_cdc", "orders/orders_topic"}
    assert set(replica["kinds"]) == {"sqlite", "replica"}
    topic = nodes["orders/orders_topic"]
    assert not topic["isMaterializable"] and "kafka" in topic["kinds"]
    assert {"kafka", "mariadb", "cdc"} == set(nodes["products_maria/products_maria_cdc"]["kinds"])
    assert "relay" in nodes["shop_outbox/shop_outbox_relay"]["assetKey"]["path"][-1]
    assert {"/".join(k["path"]) for k in nodes["shop_outbox/shop_outbox_relay"]["dependencyKeys"]} == {"shop/outbox"}


def test_no_two_nodes_of_a_group_share_a_display_name(nodes) -> None:
    names = Counter((node["groupName"], node["assetKey"]["path"][-1]) for node in nodes.values())
    assert [name for name, count in names.items() if count > 1] == []
    assert ("shop_maria", "products_maria_cdc") in names and ("shop_maria", "orders_maria_cdc") in names


def test_owners_and_tags_from_the_spec_appear(nodes) -> None:
    for leaf in ("snapshot", "incremental", "reconcile", "replica"):
        node = nodes[f"payments/payments_{leaf}"]
        owners = {o.get("team") or o.get("email") for o in node["owners"]}
        assert owners == {"payments@example.com", "billing"}, (leaf, node["owners"])
        tags = {t["key"]: t["value"] for t in node["tags"]}
        assert tags["domain"] == "billing" and tags["tier"] == "gold", tags
    products = nodes["products/products_incremental"]
    assert [o["team"] for o in products["owners"]] == ["catalog"]
