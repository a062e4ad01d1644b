"""Before/after of the polling readers' per-row path, per row, in one process per version (ABBA rounds).

    .venv/bin/python -m bench.snapshot_hotpath b2b0bd4 --rounds 6

On the bench data set (``bench_orders`` and the demo's ``orders`` and ``products``, loaded by ``bench.profile``
or ``bench.compare``), a worker drives the project's own snapshot path over the first ``--rows`` rows of each
table, in 10,000-row chunks, with no broker in the measurement:

- ``fetch``: ``snapshot_chunk_query`` executed and its rows fetched (the database's work included);
- ``events``: ``rows.events_from_rows`` (row dicts, keys, ``ChangeEvent``s);
- ``records``: ``StreamWriter.records`` (the bench contract validated by pandera, key and Debezium envelope bytes).

Each stage's figure is µs per row, best of a few passes in the worker; the versions alternate ABBA (the older
one from ``git archive``, as ``bench.hotpath`` does), so load on the machine hits both alike.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

STAGES = ("fetch", "events", "records")
CHUNK = 10_000


def _worker(rows_per_table: int, passes: int) -> dict[str, float]:
    """µs per row of each stage, best of ``passes``, with whichever liberation_assets is first on the path."""
    import inspect

    from bench.specs import QUERY_STREAMS, bench_spec
    from liberation_assets.core.contract.validate import ContractValidator
    from liberation_assets.core.engine.query_pattern import QueryPattern
    from liberation_assets.core.engine.writer import StreamWriter
    from liberation_assets.core.events import READ, ChangeBatch
    from liberation_assets.core.publish.publisher import relax_gc_for_batches
    from liberation_assets.core.readers.rows import events_from_rows
    from liberation_assets.core.readers.sql import snapshot_chunk_query
    from liberation_assets.stack import default_settings

    relax_gc_for_batches()
    spec = bench_spec(default_settings(), "snaphot", "snaphot_ours")
    takes_keys = "keys" in inspect.signature(events_from_rows).parameters
    setups = []
    for name in QUERY_STREAMS:
        pattern = QueryPattern(spec, name)
        identity = pattern.runtime.identity
        validator = ContractValidator(pattern.stream.contract, pattern.stream.key)
        writer = StreamWriter(identity, None, "bench.positions", validator)  # type: ignore[arg-type]
        setups.append((pattern.runtime.engine, pattern.table, identity.zone, writer))
    best = {stage: float("inf") for stage in STAGES}
    for _ in range(passes):
        spent = dict.fromkeys(STAGES, 0.0)
        count = 0
        for engine, table, zone, writer in setups:
            after_key = None
            done = 0
            while done < rows_per_table:
                started = time.perf_counter()
                query = snapshot_chunk_query(table, after_key=after_key, limit=CHUNK)
                with engine.connect() as connection:
                    result = connection.execute(query)
                    keys, rows = list(result.keys()), result.all()
                fetched = time.perf_counter()
                extra = {"keys": keys} if takes_keys else {}
                events, tuples = events_from_rows(rows, table, zone, READ, {"snapshot": "true"}, **extra)
                built = time.perf_counter()
                writer.records(ChangeBatch(events, None), unique_key=True)
                written = time.perf_counter()
                spent["fetch"] += fetched - started
                spent["events"] += built - fetched
                spent["records"] += written - built
                count += len(rows)
                done += len(rows)
                if len(rows) < CHUNK:
                    break
                after_key = tuples[-1][1:]
        for stage in STAGES:
            best[stage] = min(best[stage], spent[stage] * 1e6 / count)
    return {**best, "rows": count}


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.snapshot_hotpath",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("before", nargs="?", help="git revision of the 'before' version (the working tree is 'after')")
    parser.add_argument("--after", help="git revision of the 'after' version (default: the working tree)")
    parser.add_argument("--rows", type=int, default=40_000, help="rows of each table (at most), per pass")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--passes", type=int, default=3, help="passes per worker; its best counts")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import json

        print(json.dumps(_worker(int(args.worker), args.passes)))
        return
    from bench.compare import _export
    from bench.context import REPO
    from bench.hotpath import abba_rounds, report_rounds

    with tempfile.TemporaryDirectory(prefix="bench-snaphot-") as folder:
        versions: dict[str, Path] = {"after": REPO}
        if args.before:
            before = Path(folder) / "before"
            before.mkdir()
            _export(args.before, before)
            versions = {"before": before, "after": REPO}
        if args.after:
            after = Path(folder) / "after"
            after.mkdir()
            _export(args.after, after)
            versions["after"] = after
        figures = (*STAGES, "total")
        results = abba_rounds(
            "bench.snapshot_hotpath",
            versions,
            Path(str(args.rows)),
            args.rounds,
            args.passes,
            STAGES,
            figures,
            lambda f: (
                ", ".join(f"{s} {f[s]:.2f}" for s in figures)
                + f" µs/row over {f['rows']:,} rows (load {os.getloadavg()[0]:.2f})"
            ),
        )
    report_rounds(results, versions, figures, lambda _figure: "µs/row")


if __name__ == "__main__":
    main()
