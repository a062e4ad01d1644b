"""The Dagster code location: ``dagster dev -w workspace.yaml`` loads ``defs`` from here."""

from __future__ import annotations

from liberation_assets.core.spec import default_spec_path, load_spec
from liberation_assets.orchestration.build import build_definitions

defs = build_definitions(load_spec(default_spec_path()), str(default_spec_path()))
