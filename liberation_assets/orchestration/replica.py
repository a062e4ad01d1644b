"""Dagster definitions for the replica pattern (filled in by its issue)."""

from __future__ import annotations

import dagster as dg

from liberation_assets.core.spec import Spec


def definitions(spec: Spec) -> dg.Definitions:
    return dg.Definitions()
