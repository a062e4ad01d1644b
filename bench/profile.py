"""Profile the core's per-event path: one pattern, in this process, under cProfile.

    .venv/bin/python -m bench.profile snapshot --rows 200000
    .venv/bin/python -m bench.profile cdc --rows 200000      # snapshot via the slot, then 1 update per row
    .venv/bin/python -m bench.profile query|outbox --rows 200000
    .venv/bin/python -m bench.profile mariadb --rows 100000  # MariaDB CDC snapshot, then 1 update per row

Prints the functions with the most own time, per event, so the biggest
per-event Python costs stand out.  Loads the data set when its size differs.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
import uuid
from collections.abc import Callable

from bench import dataset, topics
from bench.specs import OUTBOX_NAME, QUERY_STREAM, SOURCE, bench_spec
from liberation_assets.stack import ensure_stack


def _rows_loaded(stack: object) -> int:
    try:
        with dataset.connect(stack) as db:  # type: ignore[arg-type]
            return int(db.execute(f"SELECT count(*) FROM {dataset.ORDERS}").fetchone()[0])  # type: ignore[index]
    except Exception:  # noqa: BLE001 - no database yet
        return -1


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("pattern", choices=["snapshot", "query", "cdc", "outbox", "mariadb"])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    stack = ensure_stack(log=lambda *_: None)
    if args.pattern != "mariadb" and _rows_loaded(stack) != args.rows:
        print(f"loading {args.rows:,} rows ...", flush=True)
        dataset.recreate(stack, args.rows)
    prefix = f"prof{uuid.uuid4().hex[:6]}"
    slot = f"{prefix}_ours"
    spec = bench_spec(stack, prefix, slot)
    try:
        events, seconds, stats = _profiled(_prepare(args.pattern, spec, stack, args.rows))
        print(f"{args.pattern}: {events:,} events in {seconds:.2f}s = {events / seconds:,.0f}/s under cProfile")
        out = io.StringIO()
        pstats.Stats(stats, stream=out).sort_stats("tottime").print_stats(args.top)
        print(out.getvalue())
    finally:
        if args.pattern != "mariadb":
            dataset.drop_slots(stack, like=f"{prefix}%")
        topics.delete_prefix(stack.kafka_bootstrap, prefix)


def _prepare(pattern: str, spec: object, stack: object, rows: int) -> Callable[[], int]:
    """Set the pattern up outside the profile; return the call whose per-event cost we want."""
    from liberation_assets.core.engine import cdc_mysql, cdc_postgres, outbox_relay
    from liberation_assets.core.engine.query_pattern import QueryPattern

    if pattern == "snapshot":
        return lambda: QueryPattern(spec, QUERY_STREAM).snapshot().result.published  # type: ignore[arg-type]
    if pattern == "query":
        QueryPattern(spec, QUERY_STREAM).snapshot()  # type: ignore[arg-type]
        dataset.update_all(stack, rows, tag=1)  # type: ignore[arg-type]
        return lambda: QueryPattern(spec, QUERY_STREAM).incremental().result.published  # type: ignore[arg-type]
    if pattern == "cdc":
        cdc_postgres.drain(spec, SOURCE)  # type: ignore[arg-type]
        dataset.update_all(stack, rows, tag=1)  # type: ignore[arg-type]
        return lambda: cdc_postgres.drain(spec, SOURCE).result.published  # type: ignore[arg-type]
    if pattern == "mariadb":
        from bench import mariadb
        from bench.specs import MARIA_SOURCE

        mariadb.recreate(stack, rows)  # type: ignore[arg-type]
        cdc_mysql.drain(spec, MARIA_SOURCE)  # type: ignore[arg-type]
        mariadb.update_all(stack, rows, tag=1)  # type: ignore[arg-type]

        def mariadb_drain() -> int:
            summary = cdc_mysql.drain(spec, MARIA_SOURCE)  # type: ignore[arg-type]
            print(f"{summary.transactions} Kafka transactions", flush=True)
            return int(summary.metadata()["published"])

        return mariadb_drain
    dataset.insert_outbox(stack, rows)  # type: ignore[arg-type]
    return lambda: outbox_relay.relay_once(spec, OUTBOX_NAME, budget_seconds=3600).relayed  # type: ignore[arg-type]


def _profiled(call: Callable[[], int]) -> tuple[int, float, cProfile.Profile]:
    profiler = cProfile.Profile()
    started = time.monotonic()
    profiler.enable()
    events = call()
    profiler.disable()
    return events, time.monotonic() - started, profiler


if __name__ == "__main__":
    main()
