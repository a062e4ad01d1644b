"""Where a checkout keeps its local data: the repository root and the stack's folder (``.stack``).

In the core so that ``verify`` (default replica files) and ``stack`` (the local services) read one answer,
and the core never imports ``stack``.
"""

from __future__ import annotations

import os
from pathlib import Path

STACK_DIR_ENV = "LIBERATION_STACK_DIR"


def repo_root() -> Path:
    """The checkout this package sits in (nearest ancestor with .git or pyproject.toml)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / ".git").exists() or (parent / "pyproject.toml").exists():
            return parent
    return here.parents[2]


def stack_dir() -> Path:
    """$LIBERATION_STACK_DIR, else ``<repo>/.stack``; read when called (not at import time)."""
    return Path(os.environ.get(STACK_DIR_ENV) or repo_root() / ".stack").resolve()
