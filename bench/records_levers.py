"""``StreamWriter.records`` of two revisions in ONE process, alternating pass by pass, on real CDC events.

    .venv/bin/python -m bench.records_levers HEAD~1 --messages /tmp/messages.pickle --passes 31

``bench.cdc_levers --records`` times the writer after decode and rows, so a lever of a few tenths of a µs
per event drowns in the other stages' swing on a loaded machine; here each revision's ``liberation_assets``
(``git archive``; the working tree for "after" unless ``--after``) decodes and converts the captured
pgoutput updates once, and only its ``records`` (4-column pandera contract, key, Debezium envelope;
5,000-event batches; ``--stage validate``: ``ContractValidator.validate`` alone) is timed, CPU time, both revisions alternating.  The records of the two revisions are
compared first (topic, key, value, timestamp, headers): a lever that changes a byte stops here.
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.cdc_levers import capture, decode, fresh_streams
from bench.context import REPO

BATCH = 5_000


def _writer(root: Path, messages: list[bytes], stage: str) -> tuple[Callable[[], list[Any]], int]:
    """The records of every batch under ``root``'s package (imported fresh), and the event count."""
    streams, api = fresh_streams(root)
    pg_changes, ChangeBatch = api.pg_changes, api.ChangeBatch
    changes, relations = decode(api, api.PgoutputStream(api.CdcPosition(slot="bench", lsn=0)), messages)
    for relation in relations.values():
        streams[relation.name].build_plan(relation)
    events: dict[str, list[Any]] = {name: [] for name in streams}
    for change in changes:
        target = streams[relations[change.message.relid].name]
        events[target.name].extend(pg_changes.change_events(target, change.message, change.tx, change.lsn))
    batches = [
        (streams[name].writer, ChangeBatch(events[name][start : start + BATCH], None))
        for name in streams
        for start in range(0, len(events[name]), BATCH)
    ]

    def run() -> list[Any]:
        out: list[Any] = []
        if stage == "validate":
            for writer, batch in batches:
                verdict = writer.validator.validate(batch.events)
                out.append([len(verdict.valid), verdict.rejected])
            return out
        for writer, batch in batches:
            out.append(writer.records(batch)[0])
        return out

    return run, sum(len(e) for e in events.values())


def _masked(records: list[Any]) -> list[Any]:
    """The records without the envelope's processing time (``now_ms`` differs between the two runs)."""
    import re

    tail = re.compile(rb',"ts_ms":\d+}$')
    return [[(t, k, tail.sub(b"", v) if v else v, ts, h) for t, k, v, ts, h in batch] for batch in records]


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.records_levers", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("before", help="git revision of the 'before' version")
    parser.add_argument("--after", help="git revision of the 'after' version (default: the working tree)")
    parser.add_argument("--rows", type=int, default=10_000, help="rows of each demo shape (narrow: 4x)")
    parser.add_argument("--passes", type=int, default=31)
    parser.add_argument(
        "--stage", choices=["records", "validate"], default="records", help="validate: the contract alone"
    )
    parser.add_argument("--messages", default="", help="pickled pgoutput messages (default: capture them)")
    args = parser.parse_args()
    from bench.compare import _export
    from liberation_assets.core.publish.publisher import relax_gc_for_batches

    with tempfile.TemporaryDirectory(prefix="bench-records-levers-") as folder:
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
        runs: dict[str, Callable[[], list[Any]]] = {}
        count = 0
        for name, root in roots.items():
            runs[name], count = _writer(root, messages, args.stage)
        masked = _masked if args.stage == "records" else (lambda x: x)
        if masked(runs["before"]()) != masked(runs["after"]()):
            raise SystemExit("the two revisions' records differ")
        relax_gc_for_batches()
        figures: dict[str, list[float]] = {"before": [], "after": []}
        clock = time.process_time
        for index in range(args.passes):
            for name in ("before", "after") if index % 2 == 0 else ("after", "before"):
                gc.collect()
                started = clock()
                runs[name]()
                figures[name].append((clock() - started) * 1e6 / count)
    before, after = figures["before"], figures["after"]
    ratios = [b / a for b, a in zip(before, after) if a]
    print(
        f"{args.stage} before {statistics.median(before):.3f} ({min(before):.3f}-{max(before):.3f})  "
        f"after {statistics.median(after):.3f} ({min(after):.3f}-{max(after):.3f}) µs/event over {count:,} events;  "
        f"before/after {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) over {args.passes} pairs"
    )
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
