"""One command: bring up the stack, load the data set, run every step ``--runs`` times, write the report.

    .venv/bin/python -m bench                 # the full run behind BENCHMARKS.md (1M rows, 3 runs)
    .venv/bin/python -m bench --rows 100000   # a quick pass
    .venv/bin/python -m bench --report-only   # rewrite BENCHMARKS.md and plots from bench/results/latest.json

Each headline ratio (ours ÷ Debezium, ours ÷ ceiling) is the median of the per-run ratios of figures measured
back to back in the same run, with their min–max; the machine's 1-minute load average is recorded at the end
of every step (``load.<step>`` in the results) and printed next to the figures.  Per-lever before/after
figures: ``python -m bench.compare REV`` (whole patterns), ``python -m bench.hotpath REV`` (the CDC hot path on
real pgoutput bytes) and ``python -m bench.levers walk|rows REV`` (one module, same process).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
import uuid

from bench import dataset, machine, report
from bench.context import RESULTS, BenchConfig, RunContext, Skip
from bench.stats import Samples
from bench.steps import STEPS
from liberation_assets.stack import ensure_stack

GROUPS = ("ceilings", "cdc", "outbox", "debezium", "latency", "mariadb", "formats")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="orders in the data set (default 1M)")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure; the median is reported (default 3)")
    parser.add_argument("--outbox-rows", type=int, help="outbox events relayed (default rows/4)")
    parser.add_argument("--rates", default="2000,10000", help="latency load rates, events/s (default 2000,10000)")
    parser.add_argument("--latency-seconds", type=float, default=6.0, help="seconds of load per latency point")
    parser.add_argument("--skip", action="append", default=[], choices=GROUPS, help="skip a group of steps")
    parser.add_argument("--report-only", action="store_true", help="only rewrite the report from the last results")
    parser.add_argument("--no-report", action="store_true", help="print figures, leave BENCHMARKS.md alone")
    return parser.parse_args()


def run_steps(ctx: RunContext, config: BenchConfig, samples: Samples) -> None:
    for name, group, step in STEPS:
        if group != "core" and not config.wants(group):
            continue
        step_started = time.monotonic()
        try:
            figures = step(ctx)
        except Skip as skip:
            samples.skipped.setdefault(name, str(skip))
            print(f"  {name}: skipped ({skip})", flush=True)
            continue
        except Exception as exc:  # noqa: BLE001 - one failed step must not lose the other figures
            samples.skipped[name] = f"failed: {str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__}"
            print(f"  {name}: FAILED\n{traceback.format_exc()}", flush=True)
            if name == "prepare":
                raise
            continue
        samples.add({**figures, f"load.{name}": os.getloadavg()[0]})  # the load next to the figures
        shown = ", ".join(f"{k}={v:,.1f}" for k, v in figures.items())
        print(f"  {name} ({time.monotonic() - step_started:.1f}s) {shown}", flush=True)


def main() -> None:
    args = parse()
    latest = RESULTS / "latest.json"
    if args.report_only:
        saved = json.loads(latest.read_text())
        report.write(Samples.from_dict(saved["samples"]), saved["meta"])
        return
    only = frozenset(g for g in GROUPS if g not in args.skip)
    config = BenchConfig(
        rows=args.rows,
        runs=args.runs,
        outbox_rows=args.outbox_rows or max(1, args.rows // 4),
        rates=tuple(int(r) for r in args.rates.split(",")),
        latency_seconds=args.latency_seconds,
        only=only,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks that stop Kafka Connect
    started = time.monotonic()
    stack = ensure_stack()
    print(f"loading {config.rows:,} orders into {dataset.DATABASE} ...", flush=True)
    load_seconds = dataset.recreate(stack, config.rows)
    print(f"  loaded in {load_seconds:.1f}s", flush=True)
    samples = Samples()
    token = uuid.uuid4().hex[:6]
    for run in range(config.runs):
        print(f"run {run + 1} of {config.runs}", flush=True)
        ctx = RunContext(config, stack, run, token)
        try:
            run_steps(ctx, config, samples)
        finally:
            for name in ("connect", "mariadb_connect"):
                if ctx.state.get(name) is not None:
                    ctx.state[name].stop()  # never leave a Kafka Connect worker behind, even on Ctrl-C
    meta = machine.describe(config, load_seconds, time.monotonic() - started)
    RESULTS.mkdir(parents=True, exist_ok=True)
    saved = json.dumps({"meta": meta, "samples": samples.to_dict()}, indent=1)
    (RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(saved)
    latest.write_text(saved)
    print(report.console(samples, meta), flush=True)
    if not args.no_report:
        report.write(samples, meta)


if __name__ == "__main__":
    main()
