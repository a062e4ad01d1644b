"""The dg component builds the same definitions as ``build_definitions``, from the spec file it is given."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import yaml

from liberation_assets.core.spec import load_spec
from liberation_assets.orchestration.build import build_definitions
from liberation_assets.orchestration.component import LiberationComponent

REPO = Path(__file__).resolve().parents[2]


def _shape(defs: dg.Definitions) -> tuple[set[str], set[str], set[str], set[str]]:
    graph = defs.resolve_asset_graph()
    return (
        {k.to_user_string() for k in graph.get_all_asset_keys()},
        {f"{k.asset_key.to_user_string()}:{k.name}" for k in graph.asset_check_keys},
        {j.name for j in defs.resolve_all_job_defs()},
        {s.name for s in [*defs.schedules, *defs.sensors]},
    )


def test_the_defs_folder_loads_the_spec_named_by_the_environment(tmp_path, monkeypatch) -> None:
    spec = yaml.safe_load((REPO / "liberation.yaml").read_text())
    del spec["streams"]["payments"]
    path = tmp_path / "liberation.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    monkeypatch.setenv("LIBERATION_SPEC", str(path))
    loaded = dg.load_from_defs_folder(project_root=REPO)
    assert _shape(loaded) == _shape(build_definitions(load_spec(path), str(path)))
    assert "payments/payments_snapshot" not in _shape(loaded)[0] and "products/products_snapshot" in _shape(loaded)[0]


def test_a_relative_spec_path_is_read_from_the_project_root(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LIBERATION_SPEC", "/nonexistent.yaml")
    assert (
        LiberationComponent(spec_path="specs/shop.yaml").resolved_spec_path(tmp_path)
        == tmp_path / "specs" / "shop.yaml"
    )
    assert (
        LiberationComponent(spec_path=str(REPO / "liberation.yaml")).resolved_spec_path(tmp_path)
        == REPO / "liberation.yaml"
    )
    assert LiberationComponent().resolved_spec_path(tmp_path) == Path("/nonexistent.yaml")
