"""Before/after of a change to the core: the same workers, run against two versions of liberation_assets.

    .venv/bin/python -m bench.compare 6cd66d9^ --rows 200000 --rounds 3
    .venv/bin/python -m bench.compare 3c715b8^ --patterns outbox
    .venv/bin/python -m bench.compare 0967644 --patterns mariadb --rows 100000   # MariaDB snapshot + binlog CDC

The older version is exported with ``git archive`` into a temporary folder and
put first on the workers' PYTHONPATH, so the working tree is never touched.
Versions alternate within each round, so load on the machine hits both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from bench import dataset, mariadb, topics
from bench.context import REPO
from liberation_assets.stack import StackSettings, ensure_stack


def _export(revision: str, into: Path) -> None:
    """``liberation_assets`` of ``revision`` under ``into``, with its mypyc builds when it has compiled modules
    (``scripts/build_compiled.py``, as ``scripts/setup.sh`` builds them for a checkout): otherwise an older
    revision would run as pure Python against a compiled working tree."""
    builder = "scripts/build_compiled.py"
    found = subprocess.run(["git", "cat-file", "-e", f"{revision}:{builder}"], cwd=REPO, stderr=subprocess.DEVNULL)
    has_builder = found.returncode == 0
    paths = ["liberation_assets", *([builder] if has_builder else [])]
    archive = subprocess.run(["git", "archive", revision, *paths], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    if has_builder:
        built = subprocess.run([sys.executable, str(into / builder)], capture_output=True, text=True)
        print(f"{revision}: {(built.stdout + built.stderr).strip().splitlines()[-1:]}", flush=True)


def _worker(what: str, prefix: str, package_root: Path) -> float:
    env = {
        **os.environ,
        "PYTHONPATH": f"{package_root}{os.pathsep}{REPO}",
        "LIBERATION_STACK_DIR": os.environ.get("LIBERATION_STACK_DIR", str(REPO / ".stack")),
    }
    payload = json.dumps({"what": what, "prefix": prefix, "slot": f"{prefix}_ours"})
    done = subprocess.run(
        [sys.executable, "-m", "bench.worker", payload],
        cwd=tempfile.gettempdir(),
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{done.stderr[-2000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report["events"] / report["seconds"]


def _round(
    stack: StackSettings, patterns: set[str], rows: int, round_index: int, prefix: str, root: Path
) -> dict[str, float]:
    """One version's figures for one round; the CDC figures need the slot its snapshot created."""
    figures: dict[str, float] = {}
    if "snapshot" in patterns:
        figures["snapshot"] = _worker("snapshot", prefix, root)
    if "snapshot" in patterns or "cdc" in patterns:
        figures["cdc_snapshot"] = _worker("cdc_drain", prefix, root)
    if "cdc" in patterns or "query" in patterns:
        dataset.update_all(stack, rows, tag=round_index)
    if "cdc" in patterns:
        figures["cdc"] = _worker("cdc_drain", prefix, root)
    if "query" in patterns:
        figures["query"] = _worker("query", prefix, root)
    if "outbox" in patterns:
        dataset.insert_outbox(stack, rows)
        figures["outbox"] = _worker("outbox_relay", prefix, root)
    if "mariadb" in patterns:
        figures["mariadb_snapshot"] = _worker("mariadb_cdc_drain", prefix, root)
        mariadb.update_all(stack, rows, tag=round_index)
        figures["mariadb_cdc"] = _worker("mariadb_cdc_drain", prefix, root)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.compare")
    parser.add_argument("before", help="git revision of the 'before' version (the working tree is 'after')")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--patterns",
        default="snapshot,cdc,query",
        help="comma-separated, of snapshot (also the CDC snapshot), cdc, query, outbox, mariadb",
    )
    args = parser.parse_args()
    patterns = set(args.patterns.split(","))
    if unknown := patterns - {"snapshot", "cdc", "query", "outbox", "mariadb"}:
        parser.error(f"unknown patterns: {', '.join(sorted(unknown))}")
    stack = ensure_stack(log=lambda *_: None)
    postgres = bool(patterns - {"mariadb"})
    if postgres:
        dataset.recreate(stack, args.rows)
    if "mariadb" in patterns:
        mariadb.recreate(stack, args.rows)
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-before-") as folder:
        _export(args.before, Path(folder))
        versions = {"before": Path(folder), "after": REPO}
        for round_index in range(args.rounds):
            for name, root in versions.items():
                prefix = f"cmp{uuid.uuid4().hex[:6]}"
                try:
                    figures = _round(stack, patterns, args.rows, round_index, prefix, root)
                finally:
                    if postgres:
                        dataset.drop_slots(stack, like=f"{prefix}%")
                    topics.delete_prefix(stack.kafka_bootstrap, prefix)
                print(name, {k: round(v) for k, v in figures.items()}, flush=True)
                for key, value in figures.items():
                    results.setdefault((key, name), []).append(value)
    for (key, name), values in sorted(results.items()):
        print(
            f"{key:14s} {name:7s} median {statistics.median(values):9,.0f}/s  "
            f"min {min(values):9,.0f}  max {max(values):9,.0f}"
        )


if __name__ == "__main__":
    main()
