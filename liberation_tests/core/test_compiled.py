"""The mypyc builds (``core.compiled``, ``scripts/build_compiled.py``): a second build compiles nothing, a build
is loaded only while its ``.py`` is unchanged, and ``LIBERATION_PURE_PYTHON=1`` turns every build off."""

from __future__ import annotations

import importlib.util
import logging
import shutil
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from liberation_assets.core import compiled
from liberation_assets.core.readers.pgoutput import UNCHANGED

WALK = "liberation_assets.core.readers.pgoutput.tuple_walk"


def _build_script() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "scripts" / "build_compiled.py"
    spec = importlib.util.spec_from_file_location("build_compiled", path)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


@pytest.fixture
def scratch_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The build script writing into ``tmp_path`` (not the checkout's build), with no module loaded yet."""
    monkeypatch.setattr(compiled, "BUILD_DIR", tmp_path / "_mypyc")
    monkeypatch.setattr(compiled, "MANIFEST", tmp_path / "_mypyc" / "manifest.json")
    monkeypatch.setattr(compiled, "_loaded", {})
    monkeypatch.delenv(compiled.PURE_PYTHON_ENV, raising=False)
    loaded = {name: sys.modules.pop(name) for name in (WALK, WALK + compiled.LIBRARY_SUFFIX) if name in sys.modules}
    script = _build_script()
    monkeypatch.setattr(script, "COMPILED", [WALK])
    yield script
    for name in (WALK, WALK + compiled.LIBRARY_SUFFIX):  # a build loaded here leaves with the test
        sys.modules.pop(name, None)
    sys.modules.update(loaded)


def _text_tuple(*texts: str | None) -> bytes:
    out = struct.pack(">h", len(texts))
    for text in texts:
        out += b"n" if text is None else b"t" + struct.pack(">i", len(text.encode())) + text.encode()
    return out


def test_the_build_is_idempotent_and_loaded_while_its_source_is_unchanged(
    scratch_build: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        pytest.skip("no C compiler: the pure-Python paths are what runs here")
    assert scratch_build.build() == ([WALK], [])
    files = sorted(compiled.BUILD_DIR.iterdir())
    stamps = [(path.name, path.stat().st_mtime_ns) for path in files]
    assert scratch_build.build() == ([WALK], [])  # nothing compiled, nothing rewritten
    assert [(path.name, path.stat().st_mtime_ns) for path in sorted(compiled.BUILD_DIR.iterdir())] == stamps

    native = compiled.native(WALK)
    assert native is not None and native.__file__.startswith(str(compiled.BUILD_DIR))
    native.bind(UNCHANGED)
    data = _text_tuple("a", None, "ünï €", "") + b"u"
    assert native.walk_tuple(data, 0) == (("a", None, "ünï €", ""), len(data) - 1)

    # The source changes after the build: the build is not used, and that is said once.
    changed = tmp_path / "root"
    source = compiled.source_path(WALK)
    copy = changed.joinpath(*WALK.split(".")).with_suffix(".py")
    copy.parent.mkdir(parents=True)
    copy.write_text(source.read_text() + "\n# changed\n")
    monkeypatch.setattr(compiled, "PACKAGE_ROOT", changed)
    monkeypatch.setattr(compiled, "_loaded", {})
    for name in (WALK, WALK + compiled.LIBRARY_SUFFIX):  # as in a fresh process
        sys.modules.pop(name, None)
    with caplog.at_level(logging.WARNING, logger=compiled.__name__):
        assert compiled.native(WALK) is None
        assert compiled.native(WALK) is None
    assert [r.getMessage() for r in caplog.records if "stale" in r.getMessage()] == [
        f"compiled: the build of {WALK} is stale (tuple_walk.py changed after it was compiled): using pure "
        "Python; rebuild with `.venv/bin/python scripts/build_compiled.py`"
    ]
    assert compiled.module(WALK).__file__ == str(source)  # the source, imported as usual


def test_pure_python_forced_and_no_build_give_none(scratch_build: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    assert compiled.native(WALK) is None  # no manifest in the scratch folder: no build
    monkeypatch.setattr(compiled, "BUILD_DIR", Path(compiled.__file__).parent / "_mypyc")
    monkeypatch.setattr(compiled, "MANIFEST", compiled.BUILD_DIR / "manifest.json")
    monkeypatch.setattr(compiled, "_loaded", {})
    monkeypatch.setenv(compiled.PURE_PYTHON_ENV, "1")
    assert compiled.native(WALK) is None
    assert compiled.module(WALK).__file__ == str(compiled.source_path(WALK))


def test_a_failed_build_leaves_pure_python_and_does_not_fail(
    scratch_build: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "root"
    copy = broken.joinpath(*WALK.split(".")).with_suffix(".py")
    copy.parent.mkdir(parents=True)
    copy.write_text("def walk_tuple(data: bytes) -> int:\n    return 'not an int'\n")  # mypyc refuses it
    monkeypatch.setattr(compiled, "PACKAGE_ROOT", broken)
    assert scratch_build.build() == ([], [WALK])
    assert f"compiled: {WALK} NOT compiled, it runs as pure Python" in capsys.readouterr().err
    assert compiled.native(WALK) is None
