"""The PostgreSQL CDC path of two revisions in ONE process, alternating pass by pass, on real pgoutput bytes.

    .venv/bin/python -m bench.cdc_levers b2b0bd4 --passes 15          # the working tree against b2b0bd4
    .venv/bin/python -m bench.cdc_levers b2b0bd4 --after HEAD --records

``bench.levers`` swaps one module; a CDC lever often spans the decoder, the row plan and ``pg_changes``, so here
each revision's whole ``liberation_assets`` (``git archive``; the working tree for "after" unless ``--after``) is
imported in turn, its functions kept, and ``sys.modules`` cleared before the next: both pipelines then run in
the same process on the same bytes, so load on the machine hits both alike.  The bytes: one
``REPLICA IDENTITY FULL`` update of every row of a ``bench_orders``-shaped table (the headline's narrow rows,
four fifths of the events) and of the demo's ``orders`` and ``products`` (``bench.hotpath``'s shapes).

Stages, µs per event, CPU time of the process (less swayed by other processes than wall time):
``decode`` (``PgoutputStream.feed``), ``rows`` (``pg_changes.change_events``), and with ``--records``
``records`` (``StreamWriter.records``, a 4-column pandera contract, key and Debezium envelope).
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench.context import REPO

_NARROW = """
DROP TABLE IF EXISTS hot_narrow;
CREATE TABLE hot_narrow (id bigint PRIMARY KEY, customer_id bigint NOT NULL, status text NOT NULL,
  total numeric(12, 2) NOT NULL, currency char(3) NOT NULL, placed_at timestamptz NOT NULL, note text,
  updated_at timestamptz NOT NULL);
ALTER TABLE hot_narrow REPLICA IDENTITY FULL;
INSERT INTO hot_narrow SELECT g, (g * 7919) % 100000, (ARRAY['placed', 'paid', 'shipped', 'delivered'])[1 + g % 4],
  round(((g * 31) % 50000) / 100.0 + 1, 2), CASE WHEN g % 3 = 0 THEN 'USD' ELSE 'EUR' END,
  timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second', left(repeat(md5(g::text), 3), 80),
  timestamptz '2024-06-01 00:00:00+00' FROM generate_series(1, %(rows)s) g;
"""
TABLES = ("hot_narrow", "hot_products", "hot_orders")


def capture(rows: int, into: Path) -> int:
    """pgoutput bytes of one update of every row: ``4 * rows`` narrow rows, ``rows`` of each demo shape."""
    from bench import dataset
    from bench.hotpath import _DDL
    from liberation_assets.stack import ensure_stack

    stack = ensure_stack(log=lambda *_: None)
    name = f"hot_{uuid.uuid4().hex[:6]}"
    with dataset.connect(stack, "liberation") as db:
        db.execute(_DDL.replace("%(rows)s", str(rows)))
        db.execute(_NARROW.replace("%(rows)s", str(4 * rows)))
        db.execute(f"CREATE PUBLICATION {name} FOR TABLE {', '.join(TABLES)}")
        db.execute(f"SELECT pg_create_logical_replication_slot('{name}', 'pgoutput')")
        try:
            db.execute("UPDATE hot_narrow SET status = 'paid', customer_id = 7, updated_at = clock_timestamp()")
            db.execute("UPDATE hot_products SET active = NOT active, updated_at = clock_timestamp()")
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
            db.execute(f"DROP TABLE {', '.join(TABLES)}")
    into.write_bytes(pickle.dumps(messages))
    return len(messages)


def fresh_streams(root: Path) -> tuple[dict[str, Any], SimpleNamespace]:
    """The bench tables' CDC streams (4-column contract each) of the ``liberation_assets`` under ``root``, imported
    fresh, and the pieces of that package a pass needs (``api``); ``bench.records_levers`` shares them."""
    for module in [m for m in sys.modules if m == "liberation_assets" or m.startswith("liberation_assets.")]:
        del sys.modules[module]
    sys.path.insert(0, str(root))
    try:
        from bench.hotpath import _table
        from liberation_assets.core.contract.validate import ContractValidator
        from liberation_assets.core.engine import pg_changes
        from liberation_assets.core.engine.writer import StreamIdentity, StreamWriter
        from liberation_assets.core.events import ChangeBatch
        from liberation_assets.core.readers.pgoutput.messages import Relation
        from liberation_assets.core.readers.pgoutput.position import CdcPosition
        from liberation_assets.core.readers.pgoutput.stream import Change, PgoutputStream
        from liberation_assets.core.readers.table import ProjectedTable
        from liberation_assets.core.spec import ColumnContract
    finally:
        sys.path.remove(str(root))
    streams: dict[str, Any] = {}
    for table in TABLES:
        rules = {
            "id": {"type": "uuid" if table == "hot_orders" else "int", "nullable": False},
            "updated_at": {"type": "datetime", "nullable": False},
            ("name" if table == "hot_products" else "status"): {"type": "str", "max_length": 200},
            ("cost" if table == "hot_products" else "total"): {"type": "decimal", "ge": 0},
        }
        writer = StreamWriter(
            StreamIdentity(table, f"bench.{table}", "cdc", "bench", "public", table),
            None,  # type: ignore[arg-type]
            "bench.positions",
            ContractValidator({name: ColumnContract(**rule) for name, rule in rules.items()}, ["id"]),
        )
        streams[table] = pg_changes.CdcStream(table, _table(ProjectedTable, table), writer, "public", None, False, None)
    api = SimpleNamespace(
        pg_changes=pg_changes,
        ChangeBatch=ChangeBatch,
        Relation=Relation,
        CdcPosition=CdcPosition,
        Change=Change,
        PgoutputStream=PgoutputStream,
    )
    return streams, api


def decode(api: SimpleNamespace, stream: Any, messages: list[bytes]) -> tuple[list[Any], dict[int, Any]]:
    """The changes of ``messages`` fed to ``stream`` (a fresh ``PgoutputStream``), and the relations by id."""
    changes: list[Any] = []
    relations: dict[int, Any] = {}
    for payload in messages:
        item = stream.feed(payload, 0)
        if item.__class__ is api.Change:
            changes.append(item)
        elif isinstance(item, api.Relation):
            relations[item.relid] = item
    return changes, relations


def _pipeline(root: Path) -> Callable[[list[bytes], bool], list[float]]:
    """The CDC path of the ``liberation_assets`` under ``root``, its modules bound now (imported fresh)."""
    streams, api = fresh_streams(root)
    pg_changes, ChangeBatch = api.pg_changes, api.ChangeBatch
    CdcPosition, PgoutputStream = api.CdcPosition, api.PgoutputStream

    def run(messages: list[bytes], with_records: bool) -> list[float]:
        clock = time.process_time
        stream = PgoutputStream(CdcPosition(slot="bench", lsn=0))
        started = clock()
        changes, relations = decode(api, stream, messages)
        decoded = clock()
        for relation in relations.values():
            streams[relation.name].build_plan(relation)
        events: dict[str, list[Any]] = {name: [] for name in streams}
        for change in changes:
            target = streams[relations[change.message.relid].name]
            events[target.name].extend(pg_changes.change_events(target, change.message, change.tx, change.lsn))
        converted = clock()
        if with_records:
            for name, target in streams.items():
                for start in range(0, len(events[name]), 5000):
                    target.writer.records(ChangeBatch(events[name][start : start + 5000], None))
        written = clock()
        count = len(changes)
        return [(b - a) * 1e6 / count for a, b in ((started, decoded), (decoded, converted), (converted, written))]

    return run


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cdc_levers", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("before", help="git revision of the 'before' version")
    parser.add_argument("--after", help="git revision of the 'after' version (default: the working tree)")
    parser.add_argument("--rows", type=int, default=10_000, help="rows of each demo shape (narrow: 4x)")
    parser.add_argument("--passes", type=int, default=15)
    parser.add_argument("--records", action="store_true", help="also time StreamWriter.records")
    parser.add_argument("--messages", default="", help="pickled pgoutput messages (default: capture them)")
    args = parser.parse_args()
    from bench.compare import _export
    from liberation_assets.core.publish.publisher import relax_gc_for_batches

    with tempfile.TemporaryDirectory(prefix="bench-cdc-levers-") as folder:
        messages_path = Path(args.messages) if args.messages else Path(folder) / "messages.pickle"
        if not args.messages:
            print(f"captured {capture(args.rows, messages_path):,} pgoutput messages", flush=True)
        messages: list[bytes] = pickle.loads(messages_path.read_bytes())
        roots = {"before": Path(folder) / "before", "after": REPO}
        if args.after:
            roots["after"] = Path(folder) / "after"
        for name, root in roots.items():
            if root != REPO:
                root.mkdir()
                _export(args.before if name == "before" else args.after, root)
        runs = {name: _pipeline(root) for name, root in roots.items()}
        relax_gc_for_batches()
        figures: dict[str, list[list[float]]] = {"before": [], "after": []}
        for index in range(args.passes):
            for name in ("before", "after") if index % 2 == 0 else ("after", "before"):
                gc.collect()
                figures[name].append(runs[name](messages, args.records))
    stages = ["decode", "rows", *(["records"] if args.records else []), "total"]
    for position, stage in enumerate(stages):
        pick: Callable[[list[float]], float] = (lambda f: sum(f)) if stage == "total" else (lambda f: f[position])
        before = [pick(f) for f in figures["before"]]
        after = [pick(f) for f in figures["after"]]
        ratios = [b / a for b, a in zip(before, after) if a]
        print(
            f"{stage:8s} before {statistics.median(before):6.2f} ({min(before):.2f}-{max(before):.2f})  "
            f"after {statistics.median(after):6.2f} ({min(after):.2f}-{max(after):.2f}) µs/event;  "
            f"before/after {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) "
            f"over {args.passes} pairs"
        )
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
