"""Merge each pattern's definitions into the code location."""

from __future__ import annotations

import dagster as dg

from liberation_assets.core.spec import Spec
from liberation_assets.orchestration import binlog, cdc, outbox, query, replica
from liberation_assets.orchestration.resources import build_resources

PATTERN_MODULES = (query, cdc, binlog, outbox, replica)


def build_definitions(spec: Spec, spec_path: str | None = None) -> dg.Definitions:
    parts = [module.definitions(spec) for module in PATTERN_MODULES]
    return dg.Definitions.merge(*parts, dg.Definitions(resources=build_resources(spec_path)))
