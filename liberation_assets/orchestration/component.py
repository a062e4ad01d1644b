"""``LiberationComponent``: a Dagster component that loads a liberation spec file and builds its definitions.

``liberation.yaml`` is exactly what a component loads: ``defs.yaml`` names this
type, and ``dg dev`` / ``dg check defs`` find it through ``[tool.dg]`` in
pyproject.toml.  It builds the same definitions as ``build_definitions``
(``liberation_assets.definitions`` is this component, loaded from the defs folder).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg


class LiberationComponent(dg.Component, dg.Model, dg.Resolvable):
    """Every stream and outbox of a liberation spec file: assets, checks, jobs, schedules, sensors and resources."""

    spec_path: str | None = None
    """The spec file; relative paths are read from the project root.  Empty: ``$LIBERATION_SPEC`` or ``liberation.yaml``."""

    def resolved_spec_path(self, project_root: Path | None = None) -> Path:
        from liberation_assets.core.spec import default_spec_path

        if not self.spec_path:
            return default_spec_path().resolve()
        path = Path(self.spec_path).expanduser()
        return path if path.is_absolute() or project_root is None else project_root / path

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        # Imported here: `dg` reads this class's schema in its own environment, which has only dagster.
        from liberation_assets.core.spec import load_spec
        from liberation_assets.orchestration.build import build_definitions

        path = self.resolved_spec_path(getattr(context, "project_root", None))
        return build_definitions(load_spec(path), str(path))
