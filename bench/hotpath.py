"""Before/after of the CDC hot path on real pgoutput bytes, per event, in one process per version.

    .venv/bin/python -m bench.hotpath 56dfe66 --rows 20000 --rounds 7

Loads the demo's ``orders`` and ``products`` shapes (``REPLICA IDENTITY FULL``), updates every row once and
takes the slot's pgoutput messages as bytes (``pg_logical_slot_peek_binary_changes``), so no replication
connection or broker is in the measurement.  A worker then drives the project's own path over those bytes:

- ``decode``: ``PgoutputStream.feed`` (message decode, tuple walk, transaction state);
- ``rows``: ``pg_changes.change_events`` (``RowPlan`` conversion of both images, keys, events);
- ``records``: ``StreamWriter.records`` (a 4-column pandera contract, key and Debezium envelope bytes).

Each stage's figure is µs per event, best of a few passes in the worker; the versions alternate round by
round (the older one from ``git archive``, as ``bench.compare`` does), and the median and min–max over rounds
are printed, so load on the machine hits both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

STAGES = ("decode", "rows", "records")
FIGURES = (*STAGES, "total", "faults")
_DDL = """
DROP TABLE IF EXISTS hot_orders, hot_products;
CREATE TABLE hot_products (id bigint PRIMARY KEY, sku varchar(32) NOT NULL, name varchar(200) NOT NULL,
  description text, category varchar(40) NOT NULL, images jsonb, active boolean NOT NULL, cost numeric(12,2),
  supplier_notes text, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, updated_by varchar(64));
CREATE TABLE hot_orders (id uuid PRIMARY KEY, customer_id bigint NOT NULL, status varchar(16) NOT NULL,
  total numeric(12,2) NOT NULL, currency varchar(3) NOT NULL, placed_at timestamptz NOT NULL, shipping jsonb,
  note text, internal_notes text, fraud_score double precision, updated_at timestamptz NOT NULL);
ALTER TABLE hot_products REPLICA IDENTITY FULL;
ALTER TABLE hot_orders REPLICA IDENTITY FULL;
INSERT INTO hot_products SELECT g, 'SKU-' || g, 'Product number ' || g, repeat('A fine product. ', 5), 'cat' || (g % 40),
  jsonb_build_array('https://img.example/' || g || '.jpg'), g % 7 <> 0, round((g % 1000) * 1.37, 2), NULL,
  now() - interval '30 days', now(), 'seed' FROM generate_series(1, %(rows)s) g;
INSERT INTO hot_orders SELECT md5(g::text)::uuid, g % 5000, 'placed', round((g % 997) * 3.21, 2), 'EUR',
  now() - interval '1 day', jsonb_build_object('city', 'Berlin', 'zip', '10' || (g % 999)), 'leave at the door',
  NULL, (g % 100) / 100.0, now() FROM generate_series(1, %(rows)s) g;
"""


def _capture(rows: int, into: Path) -> int:
    """The pgoutput messages of one update of every row of both tables, as bytes, pickled into ``into``."""
    from bench import dataset
    from liberation_assets.stack import ensure_stack

    stack = ensure_stack(log=lambda *_: None)
    name = f"hot_{uuid.uuid4().hex[:6]}"
    with dataset.connect(stack, "liberation") as db:  # the stack's own database, no bench data set needed
        db.execute(_DDL.replace("%(rows)s", str(rows)))
        db.execute(f"CREATE PUBLICATION {name} FOR TABLE hot_products, hot_orders")
        db.execute(f"SELECT pg_create_logical_replication_slot('{name}', 'pgoutput')")
        try:
            db.execute("UPDATE hot_products SET name = name || ' v2', updated_at = clock_timestamp()")
            db.execute("UPDATE hot_orders SET status = 'shipped', updated_at = clock_timestamp()")
            messages = [
                bytes(r[0])
                for r in db.execute(
                    f"SELECT data FROM pg_logical_slot_peek_binary_changes('{name}', NULL, NULL, "
                    f"'proto_version', '1', 'publication_names', '{name}')"
                ).fetchall()
            ]
        finally:
            db.execute(f"SELECT pg_drop_replication_slot('{name}')")
            db.execute(f"DROP PUBLICATION {name}")
    into.write_bytes(pickle.dumps(messages))
    return len(messages)


def _worker(messages_path: str, passes: int) -> dict[str, float]:
    """µs per event of each stage, best of ``passes``; runs against whichever liberation_assets is first on the path."""
    import gc
    import resource

    from liberation_assets.core.contract.validate import ContractValidator
    from liberation_assets.core.engine import pg_changes
    from liberation_assets.core.engine.writer import StreamIdentity, StreamWriter
    from liberation_assets.core.events import ChangeBatch
    from liberation_assets.core.publish.publisher import relax_gc_for_batches
    from liberation_assets.core.readers.pgoutput.messages import Relation
    from liberation_assets.core.readers.pgoutput.position import CdcPosition
    from liberation_assets.core.readers.pgoutput.stream import Change, PgoutputStream
    from liberation_assets.core.readers.table import ProjectedTable
    from liberation_assets.core.spec import ColumnContract

    relax_gc_for_batches()
    messages: list[bytes] = pickle.loads(Path(messages_path).read_bytes())
    contract = {"id": {"nullable": False}, "updated_at": {"type": "datetime", "nullable": False}}
    streams: dict[str, Any] = {}
    for table, key_type in (("hot_products", "int"), ("hot_orders", "uuid")):
        contract_of = {
            **contract,
            "id": {"type": key_type, "nullable": False},
            ("name" if table == "hot_products" else "status"): {"type": "str", "max_length": 200},
            ("cost" if table == "hot_products" else "total"): {"type": "decimal", "ge": 0},
        }
        identity = StreamIdentity(table, f"bench.{table}", "cdc", "bench", "public", table)
        writer = StreamWriter(
            identity,
            None,
            "bench.positions",
            ContractValidator({name: ColumnContract(**rule) for name, rule in contract_of.items()}, ["id"]),
        )  # type: ignore[arg-type]
        streams[table] = pg_changes.CdcStream(table, _table(ProjectedTable, table), writer, "public", None, False, None)
    best = {stage: float("inf") for stage in STAGES}
    events_total = 0
    faults_before = 0
    for index in range(passes):
        if index == 1:  # page faults of the passes after the first: a long-running process's steady state
            faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        gc.collect()
        stream = PgoutputStream(CdcPosition(slot="bench", lsn=0))
        relations: dict[int, Any] = {}
        started = time.perf_counter()
        changes = []
        for payload in messages:
            item = stream.feed(payload, 0)
            if item.__class__ is Change:
                changes.append(item)
            elif isinstance(item, Relation):
                relations[item.relid] = item
        decoded = time.perf_counter()
        for relation in relations.values():
            streams[relation.name].build_plan(relation)
        by_relid = {relid: streams[r.name] for relid, r in relations.items()}
        events: dict[str, list[Any]] = {name: [] for name in streams}
        for change in changes:
            target = by_relid[change.message.relid]
            events[target.name].extend(pg_changes.change_events(target, change.message, change.tx, change.lsn))
        converted = time.perf_counter()
        count = 0
        for name, target in streams.items():
            pending = events[name]
            for start in range(0, len(pending), 5000):
                out, _ = target.writer.records(ChangeBatch(pending[start : start + 5000], None))
                count += len(out)
        written = time.perf_counter()
        events_total = len(changes)
        for stage, seconds in zip(STAGES, (decoded - started, converted - decoded, written - converted)):
            best[stage] = min(best[stage], seconds * 1e6 / events_total)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before
    return {**best, "events": events_total, "faults": faults / (events_total * max(1, passes - 1))}


def _table(cls: Any, name: str) -> Any:
    """The ``ProjectedTable`` of a bench table with every column published."""
    import sqlalchemy as sa

    table = sa.Table(name, sa.MetaData(), sa.Column("id", sa.BigInteger, primary_key=True))
    return cls(table=table, columns={"id": "id"}, key_columns=["id"], key_public=["id"], cursor_column=None)


def run_worker(module: str, root: Path, data_path: Path, passes: int) -> dict[str, float]:
    """One worker process of ``module`` (``python -m <module> --worker``) on the package at ``root``: its figures."""
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{Path(__file__).resolve().parent.parent}"}
    done = subprocess.run(
        [sys.executable, "-m", module, "--worker", str(data_path), "--passes", str(passes)],
        cwd=tempfile.gettempdir(),
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def abba_rounds(
    module: str,
    versions: dict[str, Path],
    data_path: Path,
    rounds: int,
    passes: int,
    stages: tuple[str, ...],
    figures: tuple[str, ...],
    describe: Callable[[dict[str, Any]], str],
) -> dict[tuple[str, str], list[float]]:
    """Each version's worker once per round, alternating which goes first (ABBA): (figure, version) → per round.

    ``describe(figures)`` is the round line after its ``round N version:`` prefix; ``total`` is the stages' sum."""
    results: dict[tuple[str, str], list[float]] = {}
    for round_index in range(rounds):
        order = list(versions.items())
        for name, root in order if round_index % 2 == 0 else order[::-1]:  # ABBA: neither always goes first
            measured: dict[str, Any] = run_worker(module, root, data_path, passes)
            measured["total"] = sum(measured[s] for s in stages)
            print(f"round {round_index + 1} {name}: {describe(measured)}", flush=True)
            for figure in figures:
                results.setdefault((figure, name), []).append(measured[figure])
    return results


def report_rounds(
    results: dict[tuple[str, str], list[float]],
    versions: dict[str, Path],
    figures: tuple[str, ...],
    unit: Callable[[str], str],
) -> None:
    """Median (min, max) per figure and version, and the per-round before/after ratio when there are two."""
    for figure in figures:
        for name in versions:
            values = results[(figure, name)]
            print(
                f"{figure:8s} {name:7s} median {statistics.median(values):6.2f} {unit(figure)} "
                f"(min {min(values):.2f}, max {max(values):.2f})"
            )
        if len(versions) == 2:
            ratios = [b / a for b, a in zip(results[(figure, "before")], results[(figure, "after")]) if a]
            if ratios:
                print(
                    f"{figure:8s} before/after per round: median {statistics.median(ratios):.2f}x "
                    f"(min {min(ratios):.2f}, max {max(ratios):.2f})"
                )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.hotpath", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("before", nargs="?", help="git revision of the 'before' version (the working tree is 'after')")
    parser.add_argument("--rows", type=int, default=20_000, help="rows of each table, each updated once")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--passes", type=int, default=3, help="passes per worker; its best counts")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, args.passes)))
        return
    from bench.compare import _export
    from bench.context import REPO

    with tempfile.TemporaryDirectory(prefix="bench-hotpath-") as folder:
        messages_path = Path(folder) / "messages.pickle"
        print(f"captured {_capture(args.rows, messages_path):,} pgoutput messages", flush=True)
        versions: dict[str, Path] = {"after": REPO}
        if args.before:
            before = Path(folder) / "before"
            before.mkdir()
            _export(args.before, before)
            versions = {"before": before, "after": REPO}
        results = abba_rounds(
            "bench.hotpath",
            versions,
            messages_path,
            args.rounds,
            args.passes,
            STAGES,
            FIGURES,
            lambda f: (
                ", ".join(f"{s} {f[s]:.2f}" for s in STAGES)
                + f" µs/event, {f['faults']:.2f} page faults/event (load {os.getloadavg()[0]:.2f})"
            ),
        )
    report_rounds(results, versions, FIGURES, lambda figure: "page faults/event" if figure == "faults" else "µs/event")


if __name__ == "__main__":
    main()
