"""The core never imports dagster: it must run from the CLI and tests without it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import liberation_assets.core

CORE = Path(liberation_assets.core.__file__).parent


def test_no_core_module_imports_dagster() -> None:
    offenders = [
        str(p.relative_to(CORE))
        for p in CORE.rglob("*.py")
        if any(line.strip().startswith(("import dagster", "from dagster")) for line in p.read_text().splitlines())
    ]
    assert offenders == []


def test_importing_every_core_module_loads_no_dagster() -> None:
    modules = [
        ".".join(("liberation_assets", "core", *p.relative_to(CORE).with_suffix("").parts))
        for p in CORE.rglob("*.py")
        if p.name != "__init__.py"
    ]
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "print(any(m.split('.')[0] == 'dagster' for m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
