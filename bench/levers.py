"""One lever's before/after in ONE process: a module of an older revision against today's, alternating.

    .venv/bin/python -m bench.levers walk 553a2d2      # pgoutput tuple walk (decoder._tuple)
    .venv/bin/python -m bench.levers rows 553a2d2      # RowPlan conversion of both images of an update
    .venv/bin/python -m bench.levers produce -         # produce() + flush with and without a delivery callback

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

MODULES = {
    "walk": "liberation_assets/core/readers/pgoutput/decoder.py",
    "rows": "liberation_assets/core/readers/pgoutput/rows.py",
}


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


def _produce(with_callback: bool) -> Callable[[], int]:
    """50,000 records of ~300 bytes with three headers produced and flushed, to the stack's broker."""
    from confluent_kafka import Producer

    from liberation_assets.stack import ensure_stack

    stack = ensure_stack(log=lambda *_: None)
    from liberation_assets.core.publish.topics import TopicSpec, ensure_topics

    ensure_topics(stack.kafka_bootstrap, [TopicSpec("bench-levers-produce", 1)])
    producer = Producer(
        {
            "bootstrap.servers": stack.kafka_bootstrap,
            "linger.ms": 5,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "acks": "all",
            "enable.idempotence": True,
            "queue.buffering.max.messages": 500_000,
        }
    )
    headers = [("liberation.stream", b"orders"), ("liberation.pattern", b"cdc"), ("liberation.schema.version", b"1")]
    value = b'{"before":null,"after":{"id":1,"note":"' + b"n" * 240 + b'"},"op":"u"}'
    delivered: list[int] = [0]

    def on_delivery(err: object, _msg: object) -> None:
        delivered[0] += 1

    def run() -> int:
        produce = producer.produce
        for index in range(50_000):
            key = b'{"id":%d}' % index
            if with_callback:
                produce("bench-levers-produce", value, key, timestamp=0, headers=headers, on_delivery=on_delivery)
            else:
                produce("bench-levers-produce", value, key, timestamp=0, headers=headers)
            if index % 10_000 == 0:
                producer.poll(0)
        producer.flush(60)
        return 50_000

    return run


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.levers", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("lever", choices=[*sorted(MODULES), "produce"])
    parser.add_argument("before", help="git revision of the 'before' module")
    parser.add_argument(
        "--messages", default="", help="pickled pgoutput messages (default: capture 10,000 rows a table)"
    )
    parser.add_argument("--passes", type=int, default=15)
    args = parser.parse_args()
    if args.lever == "produce":
        _compare({"before": _produce(True), "after": _produce(False)}, args.lever, args.passes)
        return
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
        _compare({"before": make(old, messages), "after": make(now, messages)}, args.lever, args.passes)


def _compare(runs: dict[str, Callable[[], int]], lever: str, passes: int) -> None:
    figures: dict[str, list[float]] = {"before": [], "after": []}
    for index in range(passes):
        for name in ("before", "after") if index % 2 == 0 else ("after", "before"):
            started = time.perf_counter()
            count = runs[name]()
            figures[name].append((time.perf_counter() - started) * 1e6 / count)
    ratios = [b / a for b, a in zip(figures["before"], figures["after"])]
    for name, values in figures.items():
        print(
            f"{lever} {name:6s} median {statistics.median(values):6.2f} µs/event "
            f"(min {min(values):.2f}, max {max(values):.2f})"
        )
    print(
        f"{lever} before/after: median {statistics.median(ratios):.2f}× (min {min(ratios):.2f}, max {max(ratios):.2f}) "
        f"over {passes} back-to-back pairs"
    )


if __name__ == "__main__":
    main()
