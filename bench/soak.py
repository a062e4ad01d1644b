"""A soak you can rerun: the demo deployment for N minutes under its write load, sampled through GraphQL.

    python -m bench.soak --minutes 20 --port 47300            # starts `liberation demo --port 47300` itself
    python -m bench.soak --minutes 60 --port 3000 --attach    # samples a demo that is already serving
    python -m bench.soak --minutes 40 --quiet-after 15 --quiet-minutes 15   # writes stop from minute 15 to 30

Every ``--interval`` seconds it asks the webserver's GraphQL API for the queue
(queued and running runs), the failed runs, every asset's Dagster freshness
status, every publishing asset's latest ``data_fresh`` check and each stream's
``event_to_publish_lag_seconds`` (from its latest materialization).  Continuous
streams (``mode: continuous``: their follow runs report a window every ~20 s,
metadata ``pattern: continuous``) are reported apart, from every window's
largest lag, against their own target (p99 under 2 s).  ``--quiet-after`` and
``--quiet-minutes`` stop the demo's write load for a while (the file
``demo-writes.paused`` in the stack folder) and count the samples of that
quiet period in which every asset stayed fresh.  It writes
``docs/soak.md`` (the command, a summary table per stream, the samples) and
``docs/img/soak.png`` (queue, failures, lag over time).  Needs the bench extra
(matplotlib).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WARMUP_SECONDS = 300
"""The issue's "after the first 5 minutes": samples before this are shown but not judged."""
PUBLISHING_LEAVES = ("incremental", "cdc", "relay")
CONTINUOUS_TARGET_SECONDS = 2.0
MICRO_BATCH_TARGET_SECONDS = 60.0

RUNS_AND_ASSETS = """
query Soak {
  queued: runsOrError(filter: {statuses: [QUEUED]}) { ... on Runs { count } }
  running: runsOrError(filter: {statuses: [STARTING, STARTED]}) { ... on Runs { count } }
  failed: runsOrError(filter: {statuses: [FAILURE]}) { ... on Runs { count } }
  assetNodes {
    assetKey { path }
    freshnessStatusInfo { freshnessStatus }
    assetMaterializations(limit: 6) {
      timestamp
      metadataEntries { label ... on FloatMetadataEntry { floatValue } ... on IntMetadataEntry { intValue }
                        ... on TextMetadataEntry { text } }
    }
  }
}
"""
CHECK = """c{n}: assetCheckExecutions(assetKey: {{path: {path}}}, checkName: "data_fresh", limit: 3) {{
  timestamp evaluation {{ success severity }} }}"""


def graphql(port: int, query: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.loads(response.read())
    if body.get("errors"):
        raise RuntimeError(body["errors"][0].get("message"))
    return body["data"]


@dataclass
class Sample:
    t: float
    queued: int
    running: int
    failed: int
    dagster_freshness: dict[str, str]
    data_fresh: dict[str, str]
    lag: dict[str, float] = field(default_factory=dict)
    windows: dict[str, dict[str, float]] = field(default_factory=dict)
    """Continuous streams: the largest lag of each reported window, by the window's timestamp (deduplicated later)."""
    quiet: bool = False


def _metadata_value(entries: list[dict[str, Any]], label: str) -> float | None:
    for entry in entries:
        if entry.get("label") == label:
            value = entry.get("floatValue", entry.get("intValue"))
            return float(value) if value is not None else None
    return None


def _publishing(path: list[str]) -> bool:
    """A stream's publishing asset: the translator names it ``<stream>/<stream>_<leaf>``."""
    return any(path[-1] == leaf or path[-1].endswith(f"_{leaf}") for leaf in PUBLISHING_LEAVES)


def _is_continuous(entries: list[dict[str, Any]]) -> bool:
    return any(e.get("label") == "pattern" and e.get("text") == "continuous" for e in entries)


def sample(port: int, started: float, quiet: bool = False) -> Sample:
    data = graphql(port, RUNS_AND_ASSETS)
    nodes = data["assetNodes"]
    dagster_freshness, lag, windows = {}, {}, {}
    publishing = []
    for node in nodes:
        name = "/".join(node["assetKey"]["path"])
        status = (node.get("freshnessStatusInfo") or {}).get("freshnessStatus")
        if status and status != "NOT_APPLICABLE":
            dagster_freshness[name] = status
        if _publishing(node["assetKey"]["path"]):
            publishing.append(node["assetKey"]["path"])
            materializations = node.get("assetMaterializations") or []
            if materializations:
                value = _metadata_value(materializations[0]["metadataEntries"], "event_to_publish_lag_seconds")
                if value is not None:
                    lag[name] = value
                if _is_continuous(materializations[0]["metadataEntries"]):  # keyed by the window's time in the soak
                    windows[name] = {
                        f"{float(m['timestamp']) / 1000 - started:.3f}": v
                        for m in materializations
                        if _is_continuous(m["metadataEntries"])
                        and (v := _metadata_value(m["metadataEntries"], "event_to_publish_lag_seconds")) is not None
                    }
    data_fresh = {}
    if publishing:
        checks = graphql(
            port,
            "query Checks {\n"
            + "\n".join(CHECK.format(n=i, path=json.dumps(path)) for i, path in enumerate(publishing))
            + "\n}",
        )
        for i, path in enumerate(publishing):
            executions = checks.get(f"c{i}") or []  # the latest evaluated one: a poll run's own is planned first
            evaluation = next((e["evaluation"] for e in executions if e.get("evaluation") is not None), None)
            if evaluation is not None:
                state = "PASS" if evaluation["success"] else ("WARN" if evaluation["severity"] == "WARN" else "FAIL")
                data_fresh["/".join(path)] = state
    return Sample(
        time.time() - started,
        data["queued"]["count"],
        data["running"]["count"],
        data["failed"]["count"],
        dagster_freshness,
        data_fresh,
        lag,
        windows,
        quiet,
    )


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _all_fresh(states: dict[str, str], good: str) -> bool:
    return bool(states) and all(v == good for v in states.values())


def _windows(samples: list[Sample], name: str, after: float) -> list[float]:
    """Each reported window's largest lag once (a window is seen by several samples), for windows ending after ``after``."""
    seen: dict[str, float] = {}
    for s in samples:
        seen.update(s.windows.get(name, {}))
    return [lag for at, lag in seen.items() if float(at) >= after]


def report(
    samples: list[Sample], command: str, minutes: float, out: Path, image: Path, warmup_seconds: float = WARMUP_SECONDS
) -> str:
    judged = [s for s in samples if s.t >= warmup_seconds] or samples
    continuous = sorted({k for s in samples for k in s.windows})
    quiet = [s for s in samples if s.quiet]
    failed_runs = max((s.failed for s in samples), default=0) - (samples[0].failed if samples else 0)
    streams = sorted({k for s in samples for k in s.lag} | {k for s in samples for k in s.data_fresh})
    lines = [
        "# Soak: the demo deployment under its write load",
        "",
        f"Made by `{command}` ({minutes:g} minutes, {len(samples)} samples through the webserver's GraphQL API,"
        f" judged after the first {warmup_seconds / 60:g} minutes). Rerun it to refresh this page.",
        "",
        f"- longest queue: **{max((s.queued for s in samples), default=0)}** runs "
        f"(after warm-up: {max((s.queued for s in judged), default=0)}); streams: {len(streams)}",
        f"- runs failed during the soak: **{failed_runs}**",
        f"- samples with every asset's `data_fresh` passing after warm-up: "
        f"{sum(all(v == 'PASS' for v in s.data_fresh.values()) for s in judged)}/{len(judged)}",
        f"- samples with every Dagster freshness policy passing after warm-up: "
        f"{sum(all(v == 'HEALTHY' for v in s.dagster_freshness.values()) for s in judged)}/{len(judged)}",
        "",
    ]
    if quiet:
        lines += [
            f"- quiet period (no writes, {len(quiet)} samples from {quiet[0].t / 60:.1f} to {quiet[-1].t / 60:.1f} min): "
            f"every asset's `data_fresh` passing in {sum(_all_fresh(s.data_fresh, 'PASS') for s in quiet)}/{len(quiet)}, "
            f"every Dagster freshness policy healthy in "
            f"{sum(_all_fresh(s.dagster_freshness, 'HEALTHY') for s in quiet)}/{len(quiet)}"
        ]
    lines += [""]
    if continuous:
        lines += [
            f"Continuous streams (`mode: continuous`, target p99 < {CONTINUOUS_TARGET_SECONDS:g} s): the largest "
            "event-to-publish lag of every window their follow run reported (~20 s each), after warm-up.",
            "",
            "| asset | windows | lag p50 (s) | lag p99 (s) | lag max (s) | target met | data_fresh passing |",
            "|---|---|---|---|---|---|---|",
        ]
        for name in continuous:
            values = _windows(samples, name, warmup_seconds if any(s.t >= warmup_seconds for s in samples) else 0)
            fresh = [s.data_fresh[name] for s in judged if name in s.data_fresh]
            if values:
                p99 = _percentile(values, 0.99)
                lines.append(
                    f"| `{name}` | {len(values)} | {_percentile(values, 0.5):.3f} | {p99:.3f} | {max(values):.3f} | "
                    f"{'yes' if p99 < CONTINUOUS_TARGET_SECONDS else '**no**'} | "
                    + (f"{sum(v == 'PASS' for v in fresh)}/{len(fresh)} |" if fresh else "– |")
                )
            else:
                lines.append(f"| `{name}` | 0 | – | – | – | – | – |")
        lines += ["", f"Micro-batch streams (target p99 < {MICRO_BATCH_TARGET_SECONDS:g} s):", ""]
    lines += [
        "| asset | lag p50 (s) | lag p99 (s) | lag max (s) | data_fresh passing | Dagster freshness healthy |",
        "|---|---|---|---|---|---|",
    ]
    for name in streams:
        if name in continuous:
            continue
        lags = [s.lag[name] for s in judged if name in s.lag]
        fresh = [s.data_fresh[name] for s in judged if name in s.data_fresh]
        policy = [s.dagster_freshness[name] for s in judged if name in s.dagster_freshness]
        cell = (lambda q: f"{_percentile(lags, q):.1f}") if lags else (lambda q: "–")
        lines.append(
            f"| `{name}` | {cell(0.5)} | {cell(0.99)} | {max(lags):.1f} | " if lags else f"| `{name}` | – | – | – | "
        )
        lines[-1] += f"{sum(v == 'PASS' for v in fresh)}/{len(fresh)} | " if fresh else "– | "
        lines[-1] += f"{sum(v == 'HEALTHY' for v in policy)}/{len(policy)} |" if policy else "– |"
    lines += [
        "",
        "The lag is each stream's `event_to_publish_lag_seconds` as its latest materialization reported it "
        "(the largest in that run), sampled every interval.",
        "",
        f"![queue, failed runs and lag over the soak](img/{image.name})",
        "",
        "| t (s) | queued | running | failed | data_fresh not passing | Dagster freshness not healthy |",
        "|---|---|---|---|---|---|",
    ]
    for s in samples:
        stale = ", ".join(f"{k} {v}" for k, v in sorted(s.data_fresh.items()) if v != "PASS") or "–"
        unhealthy = ", ".join(f"{k} {v}" for k, v in sorted(s.dagster_freshness.items()) if v != "HEALTHY") or "–"
        lines.append(
            f"| {s.t:.0f}{' (quiet)' if s.quiet else ''} | {s.queued} | {s.running} | {s.failed} | {stale} | "
            f"{unhealthy} |"
        )
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    _plot(samples, streams, image)
    return text


def _plot(samples: list[Sample], streams: list[str], image: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s.t / 60 for s in samples]
    figure, (runs, lags) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    runs.plot(minutes, [s.queued for s in samples], label="queued")
    runs.plot(minutes, [s.running for s in samples], label="running")
    runs.plot(minutes, [s.failed - samples[0].failed for s in samples], label="failed (since start)")
    runs.set_ylabel("runs")
    runs.legend(loc="upper left")
    for name in streams:
        points = [(s.t / 60, s.lag[name]) for s in samples if name in s.lag]
        if points:
            lags.plot(*zip(*points), label=name)
    lags.set_ylabel("event-to-publish lag (s)")
    lags.set_xlabel("minutes")
    lags.legend(loc="upper left", fontsize="small", ncol=2)
    figure.tight_layout()
    figure.savefig(image, dpi=110)


def replay(raw: Path, started: float, interval: float) -> list[Sample]:
    """Re-judge a finished soak from the Dagster instance's event log ($DAGSTER_HOME, the stack's PostgreSQL).

    The queue and run counts come from the raw samples; each sample's lag, continuous windows and ``data_fresh``
    state are read again from the materializations and check evaluations recorded up to that sample's time, so
    a soak whose sampler missed them (it once looked for the asset keys' old names) still gets its figures."""
    import dagster as dg
    from dagster._core.definitions.asset_checks.asset_check_spec import AssetCheckKey

    from liberation_assets import stack
    from liberation_assets.demo.instance import storage_environment

    for name, value in storage_environment(stack.default_settings()).items():
        os.environ.setdefault(name, value)
    instance = dg.DagsterInstance.get()
    samples = [Sample(**s) for s in json.loads(raw.read_text())]
    names = sorted({k for s in samples for k in s.dagster_freshness if _publishing(k.split("/"))})
    for name in names:
        key = dg.AssetKey(name.split("/"))
        found = instance.fetch_materializations(key, limit=10_000).records
        materialized = sorted(
            (r.timestamp, r.asset_materialization.metadata)
            for r in found
            if r.timestamp >= started and r.asset_materialization is not None
        )
        checks = []
        for record in instance.event_log_storage.get_asset_check_execution_history(
            AssetCheckKey(key, "data_fresh"), limit=10_000
        ):
            evaluation = (
                record.event.dagster_event.event_specific_data if record.event and record.event.dagster_event else None
            )
            if evaluation is None or record.event is None or record.event.timestamp < started:
                continue
            state = "PASS" if evaluation.passed else ("WARN" if evaluation.severity.value == "WARN" else "FAIL")
            checks.append((record.event.timestamp, state))
        checks.sort()
        for s in samples:
            at = started + s.t
            before = [(t, m) for t, m in materialized if t <= at]
            if before:
                lag = before[-1][1].get("event_to_publish_lag_seconds")
                if lag is not None:
                    s.lag[name] = float(lag.value)
                windows = {
                    f"{t - started:.3f}": float(m["event_to_publish_lag_seconds"].value)
                    for t, m in before
                    if t > at - interval
                    and getattr(m.get("pattern"), "value", None) == "continuous"
                    and "event_to_publish_lag_seconds" in m
                }
                if windows:
                    s.windows[name] = windows
            states = [state for t, state in checks if t <= at]
            if states:
                s.data_fresh[name] = states[-1]
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--interval", type=float, default=30)
    parser.add_argument("--attach", action="store_true", help="sample a demo that is already serving on --port")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "soak.md")
    parser.add_argument(
        "--warmup",
        type=float,
        default=WARMUP_SECONDS / 60,
        metavar="MINUTES",
        help="samples before this are shown but not judged",
    )
    parser.add_argument(
        "--quiet-after",
        type=float,
        default=None,
        metavar="MINUTES",
        help="stop the demo's write load this many minutes into the soak",
    )
    parser.add_argument("--quiet-minutes", type=float, default=15, help="for this long (with --quiet-after)")
    parser.add_argument(
        "--replay",
        type=Path,
        metavar="SOAK_JSON",
        help="re-judge a finished soak's raw samples from the Dagster instance's event log (with --started)",
    )
    parser.add_argument("--started", type=float, help="with --replay: the soak's first sample, seconds since the epoch")
    args = parser.parse_args(argv)
    command = "python -m bench.soak " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.replay is not None:
        if args.started is None:
            parser.error("--replay needs --started")
        samples = replay(args.replay, args.started, args.interval)
        image = args.out.parent / "img" / "soak.png"
        image.parent.mkdir(parents=True, exist_ok=True)
        print(report(samples, command, args.minutes, args.out, image, args.warmup * 60))
        return 0
    demo = None
    if not args.attach:
        demo = subprocess.Popen(
            [str(Path(sys.executable).parent / "liberation"), "demo", "--port", str(args.port)],
            cwd=REPO,
            start_new_session=True,
        )
    try:
        deadline = time.time() + 1800
        while True:  # the demo seeds, runs the main job, then serves the UI
            try:
                graphql(args.port, "{ version }")
                break
            except Exception:
                if time.time() > deadline or (demo is not None and demo.poll() is not None):
                    raise SystemExit("the demo's webserver never answered")
                time.sleep(5)
        from liberation_assets.demo.cli import writes_paused_file

        paused = writes_paused_file()
        started = time.time()
        samples: list[Sample] = []
        while time.time() - started < args.minutes * 60:
            minute = (time.time() - started) / 60
            quiet = args.quiet_after is not None and args.quiet_after <= minute < args.quiet_after + args.quiet_minutes
            if quiet and not paused.exists():
                paused.write_text("bench.soak quiet period\n")
                print(f"quiet: the write load stops for {args.quiet_minutes:g} min", flush=True)
            elif not quiet and paused.exists():
                paused.unlink()
                print("quiet period over: the write load resumes", flush=True)
            try:
                samples.append(sample(args.port, started, quiet=quiet and minute >= args.quiet_after + 0.5))
                s = samples[-1]
                print(
                    f"{s.t:7.0f}s queued={s.queued} running={s.running} failed={s.failed} "
                    f"stale={[k for k, v in s.data_fresh.items() if v != 'PASS']}",
                    flush=True,
                )
            except Exception as exc:  # a slow answer is a figure too: note it and go on
                print(f"sample failed: {exc}", flush=True)
            time.sleep(args.interval)
        image = args.out.parent / "img" / "soak.png"
        image.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps([vars(s) for s in samples]))  # the raw samples, to re-judge
        print(report(samples, command, args.minutes, args.out, image, args.warmup * 60))
    finally:
        from liberation_assets.demo.cli import writes_paused_file

        writes_paused_file().unlink(missing_ok=True)
        if demo is not None:
            os.killpg(demo.pid, signal.SIGINT)
            try:
                demo.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(demo.pid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
