"""The UI shows it: a real headless Chromium loads the Dagster UI and finds the asset graph, a freshness status and the checks.

It runs ``docs/screenshots.py`` (the script that makes the docs' screenshots)
against this test's own databases: seed, main job, ``dg dev``, then each
page is captured only once its text is on screen, or the script fails.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from liberation_assets.core.spec import load_spec
from liberation_tests.fix_stack import spec_to_yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (scripts/setup.sh installs it)")
def test_a_headless_browser_finds_the_asset_graph_freshness_and_checks(make_spec, pg_database, tmp_path) -> None:
    demo = load_spec(REPO / "liberation.yaml")
    token = pg_database.rsplit("_", 1)[-1]
    source = f"pg_{token}"  # transactional ids are cluster-wide: names of its own
    base = make_spec(pg=pg_database).model_dump(by_alias=True)
    streams = {
        f"products_{token}": {**demo.streams["products"].model_dump(by_alias=True, exclude_none=True), "source": source}
    }
    spec = type(demo).model_validate(
        {"kafka": base["kafka"], "sources": {source: base["sources"]["pg"]}, "streams": streams}
    )
    spec_file = tmp_path / "liberation.yaml"
    spec_file.write_text(spec_to_yaml(spec))
    out = tmp_path / "shots"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "docs" / "screenshots.py"),
            "--spec",
            str(spec_file),
            "--out",
            str(out),
            "--products",
            "200",
            "--rounds",
            "0",
            "--timeout",
            "240",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    print(result.stdout[result.stdout.find("asset-graph.png") :])
    assert "main job FAILED" not in result.stdout
    assert "asset-graph.png:" in result.stdout and f"shows products_{token} / products_{token}_replica" in result.stdout
    assert "freshness.png:" in result.stdout and "shows Freshness policy" in result.stdout
    for name in (
        "asset-graph.png",
        "catalog.png",
        "column-schema.png",
        "freshness.png",
        "checks.png",
        "quarantine.png",
        "automation.png",
        "lag-plots.png",
    ):
        image = (out / name).read_bytes()
        assert image.startswith(PNG) and len(image) > 20_000, name
