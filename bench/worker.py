"""Runs one of our patterns in its own process and prints one JSON line: seconds, events, peak RSS.

A process of its own per measurement gives an honest peak RSS and keeps the
harness's threads (load generator, consumers) off the measured interpreter.
Usage: ``python -m bench.worker '{"what": "snapshot", "prefix": "...", "slot": "..."}'``.
"""

from __future__ import annotations

import importlib
import json
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.specs import MARIA_SOURCE, OUTBOX_NAME, QUERY_STREAMS, SOURCE, bench_spec
from liberation_assets.core.spec import Spec
from liberation_assets.stack import default_settings


def _snapshot(spec: Spec, _args: dict[str, Any]) -> int:
    """The query pattern's snapshot of every table of the data set, one stream after the other."""
    from liberation_assets.core.engine.query_pattern import QueryPattern

    total = 0
    for stream in QUERY_STREAMS:
        pattern = QueryPattern(spec, stream)
        try:
            total += pattern.snapshot().result.published
        finally:
            pattern.close()
    return total


def _query(spec: Spec, _args: dict[str, Any]) -> int:
    from liberation_assets.core.engine.query_pattern import QueryPattern

    total = 0
    for stream in QUERY_STREAMS:
        pattern = QueryPattern(spec, stream)
        try:
            total += pattern.incremental().result.published
        finally:
            pattern.close()
    return total


def _cdc_drain(spec: Spec, _args: dict[str, Any]) -> int:
    cdc = importlib.import_module("liberation_assets.core.engine.cdc_postgres")
    return _published(cdc.drain(spec, SOURCE))


def _cdc_follow(spec: Spec, args: dict[str, Any]) -> int:
    cdc = importlib.import_module("liberation_assets.core.engine.cdc_postgres")
    return _published(cdc.follow(spec, SOURCE, duration=float(args["duration"])))


def _mariadb_cdc_drain(spec: Spec, _args: dict[str, Any]) -> int:
    cdc = importlib.import_module("liberation_assets.core.engine.cdc_mysql")
    return int(cdc.drain(spec, MARIA_SOURCE).metadata()["published"])


def _outbox_relay(spec: Spec, _args: dict[str, Any]) -> int:
    relay = importlib.import_module("liberation_assets.core.engine.outbox_relay")
    total = 0
    while True:
        done = _published(relay.relay_once(spec, OUTBOX_NAME, budget_seconds=3600))
        if not done:
            return total
        total += done


def _outbox_follow(spec: Spec, args: dict[str, Any]) -> int:
    relay = importlib.import_module("liberation_assets.core.engine.outbox_relay")
    return _published(relay.follow(spec, OUTBOX_NAME, duration=float(args["duration"])))


def _published(summary: Any) -> int:
    """Events published, from whichever summary shape a pattern returns."""
    if summary is None:
        return 0
    if isinstance(summary, int):
        return summary
    result = getattr(summary, "result", summary)
    for name in ("published", "events", "relayed"):
        if isinstance(getattr(result, name, None), int):
            return int(getattr(result, name))
    raise TypeError(f"cannot count events in {type(summary).__name__}")


COMMANDS: dict[str, Callable[[Spec, dict[str, Any]], int]] = {
    "snapshot": _snapshot,
    "query": _query,
    "cdc_drain": _cdc_drain,
    "cdc_follow": _cdc_follow,
    "mariadb_cdc_drain": _mariadb_cdc_drain,
    "outbox_relay": _outbox_relay,
    "outbox_follow": _outbox_follow,
}


def main() -> None:
    args = json.loads(sys.argv[1])
    spec = bench_spec(default_settings(), args["prefix"], args["slot"])
    command = COMMANDS[args["what"]]
    started = time.monotonic()
    events = command(spec, args)
    seconds = time.monotonic() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "events": events, "peak_rss_mb": peak_mb}), flush=True)


if __name__ == "__main__":
    main()
