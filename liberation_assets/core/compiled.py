"""Modules compiled with mypyc (issue 18), loaded only while they match their source.

``scripts/build_compiled.py`` (run by ``scripts/setup.sh``) compiles each module of its ``COMPILED`` list into
``liberation_assets/core/_mypyc/`` (git-ignored), next to a manifest holding the SHA-256 of the ``.py`` it was
built from.  The build is never on the import path, so a plain ``import`` always gets the source; a caller asks
for the compiled module with ``native(name)`` and keeps its pure-Python path for None, which it gets when:

- ``LIBERATION_PURE_PYTHON=1`` forces pure Python (tests compare both paths);
- there is no build (a fresh clone without a compiler, a failed build);
- the build is stale: the ``.py`` changed after it was compiled (a warning is logged once per module), or it
  was built for another Python (ABI).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys
import sysconfig
from pathlib import Path
from types import ModuleType
from typing import Any

BUILD_DIR = Path(__file__).resolve().parent / "_mypyc"
MANIFEST = BUILD_DIR / "manifest.json"
PURE_PYTHON_ENV = "LIBERATION_PURE_PYTHON"
LIBRARY_SUFFIX = "__mypyc"
"""mypyc puts a module's code in a library ``<name>__mypyc`` that the module's own extension imports."""
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
"""The folder holding ``liberation_assets``: module names map to source files under it."""

_log = logging.getLogger(__name__)
_loaded: dict[str, ModuleType | None] = {}


def pure_python_forced() -> bool:
    return os.environ.get(PURE_PYTHON_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def source_path(name: str) -> Path:
    """The ``.py`` a module name stands for (``liberation_assets.core.x`` -> ``<root>/liberation_assets/core/x.py``)."""
    return PACKAGE_ROOT.joinpath(*name.split(".")).with_suffix(".py")


def source_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def abi_tag() -> str:
    """What a build must match to be loaded: the interpreter's extension ABI."""
    return str(sysconfig.get_config_var("SOABI") or sys.implementation.cache_tag)


def read_manifest() -> dict[str, dict[str, Any]]:
    try:
        manifest = json.loads(MANIFEST.read_text())
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def native(name: str) -> ModuleType | None:
    """The compiled build of module ``name`` when it exists and matches its source, else None (see above)."""
    if name not in _loaded:
        _loaded[name] = None if pure_python_forced() else _load(name)
    return _loaded[name]


def module(name: str) -> ModuleType:
    """The compiled build of ``name`` if usable, else its source imported as usual."""
    return native(name) or importlib.import_module(name)


def source(name: str) -> ModuleType:
    """Module ``name`` run from its ``.py`` as a fresh module object (not in ``sys.modules``): the pure-Python
    reference a test compares the compiled build with."""
    spec = importlib.util.spec_from_file_location(name, source_path(name))
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def _load(name: str) -> ModuleType | None:
    entry = read_manifest().get(name)
    if not isinstance(entry, dict):
        _log.debug("compiled: no build of %s, using pure Python", name)
        return None
    path = source_path(name)
    try:
        current = source_digest(path)
    except OSError:
        return None
    if entry.get("source_sha256") != current:
        _log.warning(
            "compiled: the build of %s is stale (%s changed after it was compiled): using pure Python; "
            "rebuild with `.venv/bin/python scripts/build_compiled.py`",
            name,
            path.name,
        )
        return None
    if entry.get("abi") != abi_tag():
        _log.warning(
            "compiled: the build of %s is for %s, not %s: using pure Python", name, entry.get("abi"), abi_tag()
        )
        return None
    files = [BUILD_DIR / str(file) for file in entry.get("files") or []]
    if not files or not all(file.is_file() for file in files):
        _log.warning("compiled: the build of %s is incomplete: using pure Python", name)
        return None
    try:
        library = None
        if len(files) > 1:  # mypyc's library first, found by the module's extension in sys.modules
            library = _extension(name + LIBRARY_SUFFIX, files[1])
            sys.modules[library.__name__] = library
        return _extension(name, files[0])
    except ImportError as exc:
        if library is not None:
            sys.modules.pop(library.__name__, None)
        _log.warning("compiled: the build of %s does not load (%s): using pure Python", name, exc)
        return None


def _extension(name: str, path: Path) -> ModuleType:
    loader = importlib.machinery.ExtensionFileLoader(name, str(path))
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    if spec is None:
        raise ImportError(f"no module spec for {path.name}")
    loaded = importlib.util.module_from_spec(spec)
    loader.exec_module(loaded)
    return loaded
