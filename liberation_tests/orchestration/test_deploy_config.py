"""deploy/dagster.yaml is a valid Dagster instance configuration (its schema, not the plugins it names)."""

from __future__ import annotations

from pathlib import Path

from dagster._core.instance.config import dagster_instance_config

REPO = Path(__file__).resolve().parents[2]


def test_production_instance_config_validates() -> None:
    config, _ = dagster_instance_config(str(REPO / "deploy"))
    assert "postgres" in config["storage"]
    assert config["run_launcher"]["class"] == "K8sRunLauncher"
    limits = {limit["key"]: limit["limit"] for limit in config["concurrency"]["runs"]["tag_concurrency_limits"]}
    assert limits == {
        "liberation/cdc": 1,
        "liberation/binlog": 1,
        "liberation/outbox": 1,
        "liberation/query": 1,
        "liberation/poll": 1,
        "liberation/verify": 1,
        "liberation/follow": 1,
    }


def test_the_demo_instance_config_validates_with_the_same_limits() -> None:
    from liberation_assets.demo.instance import TEMPLATE

    config, _ = dagster_instance_config(str(TEMPLATE.parent), config_filename=TEMPLATE.name)
    assert "postgres" in config["storage"] and config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    demo = {limit["key"]: limit["limit"] for limit in config["concurrency"]["runs"]["tag_concurrency_limits"]}
    production, _ = dagster_instance_config(str(REPO / "deploy"))
    assert demo == {
        limit["key"]: limit["limit"] for limit in production["concurrency"]["runs"]["tag_concurrency_limits"]
    }
