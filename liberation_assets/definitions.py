"""The Dagster code location: ``dg dev`` (and ``dagster dev -w workspace.yaml``) load ``defs`` from here.

``defs`` is the defs folder (``liberation_assets/defs``): one ``LiberationComponent`` reading the spec file.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

defs = dg.load_from_defs_folder(project_root=Path(__file__).resolve().parents[1])
