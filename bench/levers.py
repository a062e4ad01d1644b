"""One lever's before/after in ONE process: a module of an older revision against today's, alternating.

    .venv/bin/python -m bench.levers walk 553a2d2      # pgoutput tuple walk (decoder._tuple)
    .venv/bin/python -m bench.levers rows 553a2d2      # RowPlan conversion of both images of an update

On a shared two-core machine separate processes see different load; here both versions run in the same
process, pass after pass, on the same real pgoutput bytes (``bench.hotpath`` captures them), so the ratio of
their medians holds even when the absolute figures move.  The older module is loaded from ``git show
REV:path`` under another name; it imports the rest of the package as it is today.
"""

from __future__ import annotations

import argparse
import importlib.util
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from bench.context import REPO

MODULES = {"walk": "liberation_assets/core/readers/pgoutput/decoder.py",
           "rows": "liberation_assets/core/readers/pgoutput/rows.py"}


def _old_module(revision: str, path: str, folder: Path) -> ModuleType:
    source = subprocess.run(["git", "show", f"{revision}:{path}"], cwd=REPO, capture_output=True, check=True).stdout
    file = folder / f"old_{Path(path).name}"
    file.write_bytes(source)
    spec = importlib.util.spec_from_file_location(f"old_{Path(path).stem}", file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _walk(module: ModuleType, messages: list[bytes]) -> Callable[[], int]:
    updates = [m for m in messages if m[0] == 0x55]  # 'U' with the old image: two tuples each
    walk = module._tuple

    def run() -> int:
        for data in updates:
            _, offset = walk(data, 6)
            walk(data, offset + 1)
        return len(updates)

    return run


def _rows(module: ModuleType, messages: list[bytes]) -> Callable[[], int]:
    from liberation_assets.core.readers.pgoutput.decoder import decode_message
    from liberation_assets.core.readers.pgoutput.messages import Relation, Update

    decoded = [decode_message(m) for m in messages if m[0] in (0x52, 0x55)]
    plans = {m.relid: module.RowPlan.build(m, None, ["id"], ["id"]) for m in decoded if isinstance(m, Relation)}
    updates = [(plans[m.relid], m) for m in decoded if isinstance(m, Update)]

    def run() -> int:
        for plan, update in updates:
            plan.row(update.new, [])
            plan.row(update.old, [])
            plan.key_of(update.old, [])
        return len(updates)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.levers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lever", choices=sorted(MODULES))
    parser.add_argument("before", help="git revision of the 'before' module")
    parser.add_argument("--messages", default="", help="pickled pgoutput messages (default: capture 10,000 rows a table)")
    parser.add_argument("--passes", type=int, default=15)
    args = parser.parse_args()
    import liberation_assets.core.readers.pgoutput.decoder as decoder_now
    import liberation_assets.core.readers.pgoutput.rows as rows_now

    now = {"walk": decoder_now, "rows": rows_now}[args.lever]
    with tempfile.TemporaryDirectory(prefix="bench-levers-") as folder:
        messages_path = Path(args.messages) if args.messages else Path(folder) / "messages.pickle"
        if not args.messages:
            from bench.hotpath import _capture

            _capture(10_000, messages_path)
        messages: list[bytes] = pickle.loads(messages_path.read_bytes())
        old = _old_module(args.before, MODULES[args.lever], Path(folder))
        make = {"walk": _walk, "rows": _rows}[args.lever]
        runs = {"before": make(old, messages), "after": make(now, messages)}
        figures: dict[str, list[float]] = {"before": [], "after": []}
        for index in range(args.passes):
            for name in (("before", "after") if index % 2 == 0 else ("after", "before")):
                started = time.perf_counter()
                count = runs[name]()
                figures[name].append((time.perf_counter() - started) * 1e6 / count)
    ratios = [b / a for b, a in zip(figures["before"], figures["after"])]
    for name, values in figures.items():
        print(f"{args.lever} {name:6s} median {statistics.median(values):6.2f} µs/event "
              f"(min {min(values):.2f}, max {max(values):.2f})")
    print(f"{args.lever} before/after: median {statistics.median(ratios):.2f}× (min {min(ratios):.2f}, max {max(ratios):.2f}) "
          f"over {args.passes} back-to-back pairs")


if __name__ == "__main__":
    main()
