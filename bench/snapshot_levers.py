"""One polling-reader lever's before/after in ONE process, alternating pass by pass, on the bench data set.

    .venv/bin/python -m bench.snapshot_levers select      # text columns: a guarded converter call each vs value_converter
    .venv/bin/python -m bench.snapshot_levers events REV  # readers/rows.py of REV vs today's
    .venv/bin/python -m bench.snapshot_levers envelope    # serialize.envelope_bytes per event vs DebeziumFormat.value
    .venv/bin/python -m bench.snapshot_levers cdc_fetch   # CDC snapshot chunk: .mappings().all() vs tuples + keys
    .venv/bin/python -m bench.snapshot_levers publish REV # whole query snapshots to Kafka: readers/snapshot.py of REV vs today's

The rows are the first 20,000 of ``bench_orders`` and of the demo's ``orders`` and ``products`` (load them
with ``bench.profile`` or ``bench.compare``), in 10,000-row chunks as the snapshot reads them.  As in
``bench.levers``, both versions run in the same process on the same rows, so their ratio holds while the
machine's load moves the absolute µs.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.levers import _old_module

CHUNK = 10_000


def _setups(rows: int) -> list[tuple[Any, Any, Any, Any]]:
    from bench.specs import QUERY_STREAMS, bench_spec
    from liberation_assets.core.contract.validate import ContractValidator
    from liberation_assets.core.engine.query_pattern import QueryPattern
    from liberation_assets.core.engine.writer import StreamWriter
    from liberation_assets.stack import default_settings

    spec = bench_spec(default_settings(), "snaplev", "snaplev_ours")
    out = []
    for name in QUERY_STREAMS:
        pattern = QueryPattern(spec, name)
        identity = pattern.runtime.identity
        writer = StreamWriter(
            identity, None, "bench.positions", ContractValidator(pattern.stream.contract, pattern.stream.key)
        )  # type: ignore[arg-type]
        out.append((pattern.runtime.engine, pattern.table, identity.zone, writer))
    return out


def _chunks(engine: Any, table: Any, rows: int, *, mappings: bool = False) -> list[tuple[list[str], list[Any]]]:
    from liberation_assets.core.readers.sql import snapshot_chunk_query

    chunks: list[tuple[list[str], list[Any]]] = []
    after = None
    done = 0
    with engine.connect() as connection:
        while done < rows:
            result = connection.execute(snapshot_chunk_query(table, after_key=after, limit=CHUNK))
            keys = list(result.keys())
            fetched = result.mappings().all() if mappings else result.all()
            chunks.append((keys, fetched))
            done += len(fetched)
            if len(fetched) < CHUNK:
                break
            last = fetched[-1]
            after = (
                tuple(last[k] for k in table.tuple_labels)
                if mappings
                else tuple(last[keys.index(k)] for k in table.tuple_labels)
            )
    return chunks


def _select(rows: int) -> dict[str, Callable[[], int]]:
    from liberation_assets.core.readers import pg_types

    setups = _setups(rows)

    def version(old: bool) -> Callable[[], int]:
        tables = []
        for engine, table, _zone, _writer in setups:
            if old:  # every text column through a guarded converter, as before value_converter
                converters = {
                    col: pg_types.guarded(pg_types.converter(table.pg_types[col], _zone)) for col in table.converters
                }
                table = dataclasses.replace(table, converters=converters)
            tables.append((engine, table))

        def run() -> int:
            return sum(len(fetched) for engine, table in tables for _, fetched in _chunks(engine, table, rows))

        return run

    return {"before": version(True), "after": version(False)}


def _events(rows: int, revision: str, folder: Path) -> dict[str, Callable[[], int]]:
    import liberation_assets.core.readers.rows as rows_now
    from liberation_assets.core.events import READ

    old = _old_module(revision, "liberation_assets/core/readers/rows.py", folder)
    data = [(table, zone, _chunks(engine, table, rows)) for engine, table, zone, _ in _setups(rows)]

    def version(module: Any) -> Callable[[], int]:
        def run() -> int:
            count = 0
            for table, zone, chunks in data:
                for keys, fetched in chunks:
                    events, _ = module.events_from_rows(fetched, table, zone, READ, {"snapshot": "true"}, keys=keys)
                    count += len(events)
            return count

        return run

    return {"before": version(old), "after": version(rows_now)}


def _envelope(rows: int) -> dict[str, Callable[[], int]]:
    from liberation_assets.core.contract.debezium_format import DebeziumFormat, flink_safe
    from liberation_assets.core.contract.serialize import envelope_bytes
    from liberation_assets.core.events import READ
    from liberation_assets.core.readers.rows import events_from_rows

    batches = []
    for engine, table, zone, writer in _setups(rows):
        for keys, fetched in _chunks(engine, table, rows):
            events, _ = events_from_rows(fetched, table, zone, READ, {"snapshot": "true"}, keys=keys)
            batches.append((writer.identity.source_base(), events))
    now = DebeziumFormat("query")

    def before() -> int:
        count = 0
        for base, events in batches:
            for event in events:
                envelope_bytes(flink_safe(event, "query"), base, 1)
                count += 1
        return count

    def after() -> int:
        count = 0
        value = now.value
        for base, events in batches:
            for event in events:
                value(event, base, 1)
                count += 1
        return count

    return {"before": before, "after": after}


def _cdc_fetch(rows: int) -> dict[str, Callable[[], int]]:
    from liberation_assets.core.events import READ
    from liberation_assets.core.readers.rows import events_from_rows

    setups = _setups(rows)

    def version(mappings: bool) -> Callable[[], int]:
        def run() -> int:
            count = 0
            for engine, table, zone, _ in setups:
                for keys, fetched in _chunks(engine, table, rows, mappings=mappings):
                    source = {"snapshot": "true", "lsn": 1}
                    if mappings:
                        events, _ = events_from_rows(fetched, table, zone, READ, source)
                    else:
                        events, _ = events_from_rows(fetched, table, zone, READ, source, keys=keys)
                    count += len(events)
            return count

        return run

    return {"before": version(True), "after": version(False)}


def _publish(revision: str, folder: Path) -> dict[str, Callable[[], int]]:
    """Every table's whole query snapshot, published to Kafka (a transaction per chunk), through the
    ``snapshot_batches`` of REV's ``readers/snapshot.py`` or today's; the patterns (producers, schemas, topics)
    are set up once, so start-up is left out and what is measured is the chunks' wall time, waits included."""
    import uuid

    import liberation_assets.core.engine.query_pattern as query_pattern
    import liberation_assets.core.readers.snapshot as snapshot_now
    from bench import topics
    from bench.specs import QUERY_STREAMS, bench_spec
    from liberation_assets.stack import default_settings

    old = _old_module(revision, "liberation_assets/core/readers/snapshot.py", folder)
    prefix = f"snappub{uuid.uuid4().hex[:6]}"
    spec = bench_spec(default_settings(), prefix, f"{prefix}_ours")
    patterns = [query_pattern.QueryPattern(spec, name) for name in QUERY_STREAMS]
    for pattern in patterns:  # producer, topics, schema and table once, before any pass
        pattern.snapshot_runtime(None).positions_for("warm-up")
        _ = pattern.table
    import atexit

    atexit.register(
        lambda: ([p.close() for p in patterns], topics.delete_prefix(spec.kafka.resolved_bootstrap_servers(), prefix))
    )

    def version(module: Any) -> Callable[[], int]:
        def run() -> int:
            query_pattern.snapshot_batches = module.snapshot_batches  # type: ignore[attr-defined]
            return sum(pattern.snapshot(restart=True).result.published for pattern in patterns)

        return run

    return {"before": version(old), "after": version(snapshot_now)}


def _compare(runs: dict[str, Callable[[], int]], lever: str, passes: int) -> None:
    """``bench.levers``' alternation, also printing each version's best pass (the least disturbed by load)."""
    import os
    import statistics
    import time

    figures: dict[str, list[float]] = {"before": [], "after": []}
    for index in range(passes):
        for name in ("before", "after") if index % 2 == 0 else ("after", "before"):
            started = time.perf_counter()
            count = runs[name]()
            figures[name].append((time.perf_counter() - started) * 1e6 / count)
    ratios = [b / a for b, a in zip(figures["before"], figures["after"])]
    for name, values in figures.items():
        print(
            f"{lever} {name:6s} median {statistics.median(values):6.2f} µs/row "
            f"(min {min(values):.2f}, max {max(values):.2f})"
        )
    print(
        f"{lever} before/after: median of {passes} pair ratios {statistics.median(ratios):.2f}x "
        f"(min {min(ratios):.2f}, max {max(ratios):.2f}); best pass {min(figures['before']):.2f} -> "
        f"{min(figures['after']):.2f} = {min(figures['before']) / min(figures['after']):.2f}x; "
        f"load {os.getloadavg()[0]:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.snapshot_levers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("lever", choices=["select", "events", "envelope", "cdc_fetch", "publish"])
    parser.add_argument(
        "before",
        nargs="?",
        default="HEAD",
        help="git revision of the 'before' rows.py (events) or snapshot.py (publish)",
    )
    parser.add_argument("--rows", type=int, default=20_000, help="rows of each table (at most)")
    parser.add_argument("--passes", type=int, default=9)
    args = parser.parse_args()
    from liberation_assets.core.publish.publisher import relax_gc_for_batches

    relax_gc_for_batches()
    with tempfile.TemporaryDirectory(prefix="bench-snaplev-") as folder:
        if args.lever == "events":
            runs = _events(args.rows, args.before, Path(folder))
        elif args.lever == "publish":
            runs = _publish(args.before, Path(folder))
        else:
            runs = {"select": _select, "envelope": _envelope, "cdc_fetch": _cdc_fetch}[args.lever](args.rows)
        _compare(runs, args.lever, args.passes)


if __name__ == "__main__":
    main()
