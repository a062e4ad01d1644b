"""Dagster contract checks: ``contract`` with counts and a failure sample, ``schema_compatible`` on the gate,
both evaluated in the pattern asset's own step."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from liberation_assets.core.spec import load_spec
from liberation_assets.orchestration.build import build_definitions
from liberation_assets.orchestration.translator import asset_key, publishing_leaves

REPO = Path(__file__).resolve().parents[2]


def test_every_pattern_asset_declares_its_blocking_contract_and_schema_checks() -> None:
    spec = load_spec(REPO / "liberation.yaml")
    defs = build_definitions(spec)
    separate = {s.name for checks in defs.asset_checks or [] for s in checks.check_specs}
    assert not separate & {"contract", "schema_compatible"}  # no check steps of their own: each asset evaluates them
    for name in spec.streams:
        for key in [asset_key(name, leaf) for leaf in publishing_leaves(spec, name) if leaf != "reconcile"]:
            specs = {s.name: s for s in defs.resolve_assets_def(key).check_specs if s.asset_key == key}
            assert specs["contract"].blocking and specs["schema_compatible"].blocking


@pytest.mark.integration
def test_contract_check_reports_counts_and_sample_and_schema_check_shows_a_blocked_change(
    make_spec, pg_database, pg_engine, tmp_path, kafka_bootstrap
) -> None:
    import sqlalchemy as sa

    from liberation_tests.core.contract.support import PG_DDL, VALID, VIOLATIONS, insert_items, items_stream
    from liberation_tests.fix_stack import spec_to_yaml

    with pg_engine.begin() as c:
        c.execute(sa.text(PG_DDL))
    insert_items(pg_engine, VALID + [row for row, _ in VIOLATIONS.values()])
    spec = make_spec(pg=pg_database, streams={"items": items_stream(["snapshot"])})
    path = tmp_path / "spec.yaml"
    path.write_text(spec_to_yaml(spec))
    defs = build_definitions(spec, str(path))
    instance = dg.DagsterInstance.ephemeral()
    key = dg.AssetKey(["items", "items_snapshot"])

    run = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        asset_selection=[key], instance=instance, raise_on_error=False
    )
    checks = {e.check_name: e for e in run.get_asset_check_evaluations()}
    check_steps = {e.step_key for e in run.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert check_steps == {"items__items_snapshot"}  # evaluated in the asset's own step, not in steps of their own
    contract = checks["contract"]
    assert not contract.passed and contract.severity == dg.AssetCheckSeverity.WARN  # held back, the rest published
    metadata = contract.metadata
    assert (metadata["rows_in"].value, metadata["rows_published"].value, metadata["rows_quarantined"].value) == (
        8,
        2,
        6,
    )
    assert isinstance(metadata["rows_quarantined"], dg.IntMetadataValue)
    assert isinstance(metadata["pass_rate"], dg.FloatMetadataValue) and metadata["pass_rate"].value == 0.25
    assert metadata["quarantine_open"].value == 6 and metadata["open: sku: unique_key"].value == 2
    sample = metadata["failure_sample"].value
    assert len(sample) == 5 and all(s["failed_checks"] for s in sample)
    assert checks["schema_compatible"].passed

    with pg_engine.begin() as c:
        c.execute(sa.text("ALTER TABLE items ALTER COLUMN sku TYPE varchar(10)"))
    blocked = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        asset_selection=[key], instance=instance, raise_on_error=False
    )
    assert not blocked.success
    failure = next(e for e in blocked.all_events if e.event_type_value == "STEP_FAILURE")
    error = failure.event_specific_data.error
    assert error.cause.cls_name == "SchemaIncompatible" and "publishing blocked" in error.cause.message

    schema = {e.check_name: e for e in blocked.get_asset_check_evaluations()}["schema_compatible"]
    assert not schema.passed and schema.metadata["incompatibilities"].value == 1
    assert "sku: narrowed: max length from unlimited to 10" in schema.description
