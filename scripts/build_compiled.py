"""Compile the modules of ``COMPILED`` with mypyc into ``liberation_assets/core/_mypyc/`` (issue 18).

    .venv/bin/python scripts/build_compiled.py          # build what is missing or stale (scripts/setup.sh runs it)
    .venv/bin/python scripts/build_compiled.py --force  # rebuild everything
    .venv/bin/python scripts/build_compiled.py --clean  # remove the builds: pure Python everywhere

Each module is compiled on its own (its extension and mypyc's library for it, ``<name>__mypyc``) from its
``.py`` where it is (its imports of the package resolve; only it is compiled), built in a temporary folder, and recorded in the manifest with the SHA-256 of that ``.py``;
``liberation_assets.core.compiled.native`` loads a build only while the source still has that hash.  A module
whose build is up to date is skipped, so a second run compiles nothing.  A failed build never fails the
caller: the module then runs as pure Python, and the exit status stays 0 (``--strict`` makes it 1).

To compile another module: add its dotted name to ``COMPILED``, keep it mypyc-compatible (annotated, no
``exec``; objects of other modules it keeps, such as a marker compared with ``is``, handed in by a ``bind``
function rather than imported, so that a re-imported package never meets the first import's objects), and load
it with ``compiled.native(name)``, keeping a pure-Python path for None.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from liberation_assets.core import compiled  # noqa: E402

COMPILED = [
    "liberation_assets.core.readers.pgoutput.tuple_walk",
    "liberation_assets.core.readers.binlog.images",
]
"""The modules compiled with mypyc: the lead adds a module here (see the docstring)."""


_SETUP = """
import sys
from mypyc.build import mypycify
from setuptools import setup

source = sys.argv.pop(1)
setup(
    name="liberation_compiled",
    ext_modules=mypycify([source, "--ignore-missing-imports", "--follow-imports=silent"], opt_level="3", target_dir="c"),
)
"""
"""mypyc from the module's own place in the checkout, so that its imports of the package resolve; the modules it
imports are read for their types (errors there silent), only the listed one is compiled; output in the scratch
folder, never next to the source."""


def _build_one(name: str, digest: str) -> list[str]:
    """Compile ``name`` in a scratch folder; the file names of its extensions in ``compiled.BUILD_DIR`` (the
    module's own first, then mypyc's library for it)."""
    with tempfile.TemporaryDirectory(prefix="liberation-mypyc-") as scratch:
        (Path(scratch) / "setup.py").write_text(_SETUP)
        command = [
            sys.executable,
            "setup.py",
            str(compiled.source_path(name)),
            "-q",
            "build_ext",
            "-b",
            "out",
            "-t",
            "tmp",
        ]
        done = subprocess.run(command, cwd=scratch, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError((done.stdout + done.stderr).strip()[-2000:])
        parts = name.split(".")
        folder = Path(scratch, "out").joinpath(*parts[:-1])
        targets = []
        for stem in (parts[-1], parts[-1] + compiled.LIBRARY_SUFFIX):
            built = [p for p in folder.glob(f"{stem}.*") if p.suffix in (".so", ".pyd")]
            if len(built) != 1:
                if stem != parts[-1]:
                    continue  # mypyc versions that put the runtime in the module itself
                raise RuntimeError(f"expected one extension {stem} for {name}, found {[p.name for p in built]}")
            target = f"{name}{stem[len(parts[-1]) :]}.{digest[:12]}{''.join(built[0].suffixes)}"
            compiled.BUILD_DIR.mkdir(exist_ok=True)
            partial = compiled.BUILD_DIR / f".{target}.partial"
            shutil.copyfile(built[0], partial)
            partial.replace(compiled.BUILD_DIR / target)  # a new file: a process that has the old one mapped keeps it
            targets.append(target)
        return targets


def build(force: bool = False) -> tuple[list[str], list[str]]:
    """(built or up to date, failed) module names."""
    manifest = compiled.read_manifest()
    recorded = json.dumps(manifest, sort_keys=True)
    ok, failed = [], []
    for name in COMPILED:
        digest = compiled.source_digest(compiled.source_path(name))
        entry = manifest.get(name, {})
        current = (
            entry.get("source_sha256") == digest
            and entry.get("abi") == compiled.abi_tag()
            and all((compiled.BUILD_DIR / str(file)).is_file() for file in entry.get("files") or [""])
        )
        if current and not force:
            ok.append(name)
            continue
        started = time.monotonic()
        try:
            targets = _build_one(name, digest)
        except (RuntimeError, OSError) as exc:
            for old in manifest.pop(name, {}).get("files") or []:  # no stale build left behind
                (compiled.BUILD_DIR / str(old)).unlink(missing_ok=True)
            print(f"compiled: {name} NOT compiled, it runs as pure Python: {exc}", file=sys.stderr)
            failed.append(name)
            continue
        for old in set(entry.get("files") or []) - set(targets):
            (compiled.BUILD_DIR / str(old)).unlink(missing_ok=True)
        manifest[name] = {"source_sha256": digest, "abi": compiled.abi_tag(), "files": targets}
        print(f"compiled: {name} built in {time.monotonic() - started:.1f} s")
        ok.append(name)
    for name in set(manifest) - set(COMPILED):  # taken off the list: its build goes too
        for old in manifest.pop(name).get("files") or []:
            (compiled.BUILD_DIR / str(old)).unlink(missing_ok=True)
    if json.dumps(manifest, sort_keys=True) != recorded or (manifest and not compiled.MANIFEST.exists()):
        compiled.BUILD_DIR.mkdir(exist_ok=True)
        partial_manifest = compiled.MANIFEST.with_suffix(".partial")
        partial_manifest.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        partial_manifest.replace(compiled.MANIFEST)
    print(
        f"compiled: {len(ok)} of {len(COMPILED)} module(s) compiled and up to date"
        + (f", {len(failed)} left to pure Python" if failed else "")
    )
    return ok, failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force", action="store_true", help="rebuild modules that are up to date")
    parser.add_argument("--clean", action="store_true", help="remove every build")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a module fails to compile")
    args = parser.parse_args()
    if args.clean:
        shutil.rmtree(compiled.BUILD_DIR, ignore_errors=True)
        print("compiled: builds removed, pure Python everywhere")
        return 0
    _, failed = build(force=args.force)
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
