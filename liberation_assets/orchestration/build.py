"""Merge each pattern's definitions into the code location."""

from __future__ import annotations

import dagster as dg

from liberation_assets.core.spec import Spec
from liberation_assets.orchestration import (
    binlog,
    cdc,
    continuous,
    contracts,
    freshness,
    outbox,
    query,
    replica,
    translator,
)
from liberation_assets.orchestration.resources import build_resources

PATTERN_MODULES = (query, cdc, binlog, outbox, replica, contracts, freshness, continuous)
MAIN_JOB = "liberate_all"


def main_job_selection(spec: Spec) -> dg.AssetSelection:
    """Every asset but those a continuous follower publishes: a drain beside the follower would fence it (one reader
    per slot, binlog position and outbox lease).  Their first snapshot is their catch-up job's (``continuous.py``)."""
    return dg.AssetSelection.all() - dg.AssetSelection.assets(*continuous.continuous_keys(spec))


def build_definitions(spec: Spec, spec_path: str | None = None) -> dg.Definitions:
    parts = [module.definitions(spec) for module in PATTERN_MODULES]
    main_job = dg.define_asset_job(
        MAIN_JOB,
        selection=main_job_selection(spec),
        description="The main job: every stream of the spec, through every pattern it declares, but the assets of "
        "continuous sources and outboxes, which their long-lived followers publish (<name>_follow).",
    )
    lineage = dg.Definitions(assets=translator.external_assets(spec))
    # Every job runs its steps in the run's own process: a step costs its work, not a Python start and imports.
    # (The partitioned snapshot backfill job names the multiprocess executor itself.)
    defs = dg.Definitions.merge(
        *parts,
        lineage,
        dg.Definitions(jobs=[main_job], resources=build_resources(spec_path), executor=dg.in_process_executor),
    )
    return translator.with_code_references(defs, spec, spec_path)
