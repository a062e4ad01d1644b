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
    assert limits == {"liberation/cdc": 1, "liberation/binlog": 1, "liberation/outbox": 1}
