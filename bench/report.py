"""Turn samples into the tables of BENCHMARKS.md, a console summary, and PNG plots.

Only the part of BENCHMARKS.md between the ``bench:begin`` and ``bench:end``
markers is generated; the rest (method, profile before/after) is written by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.context import PLOTS, REPO
from bench.stats import Samples, ratio

BENCHMARKS = REPO / "BENCHMARKS.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


@dataclass(frozen=True)
class Row:
    """One throughput line: our figure, Debezium's, and the ceilings that bound it."""

    label: str
    short: str
    ours: str
    debezium: str | None
    source_ceiling: str
    unit: str


THROUGHPUT = [
    Row(
        "Snapshot (query pattern, keyset chunks)",
        "Snapshot\n(query)",
        "ours.snapshot",
        "dbz.snapshot",
        "ceiling.copy",
        "rows/s",
    ),
    Row(
        "Snapshot (CDC, exported slot snapshot)",
        "Snapshot\n(CDC)",
        "ours.cdc_snapshot",
        "dbz.snapshot",
        "ceiling.copy",
        "rows/s",
    ),
    Row("CDC, one update per row", "CDC\n(updates)", "ours.cdc", "dbz.cdc", "ceiling.recvlogical", "events/s"),
    Row("Outbox relay", "Outbox\nrelay", "ours.outbox", "dbz.outbox", "ceiling.copy_outbox", "events/s"),
    Row(
        "MariaDB snapshot (CDC, consistent snapshot)",
        "MariaDB\nsnapshot",
        "ours.mariadb_snapshot",
        "dbz.mariadb_snapshot",
        "ceiling.mariadb",
        "rows/s",
    ),
    Row(
        "MariaDB binlog CDC, one update per row",
        "MariaDB\nbinlog CDC",
        "ours.mariadb_cdc",
        "dbz.mariadb_cdc",
        "ceiling.mariadb",
        "events/s",
    ),
    Row("Query incremental (all rows changed)", "Query\nincremental", "ours.query", None, "ceiling.copy", "rows/s"),
]

CEILINGS = [
    ("ceiling.copy", "`COPY bench_orders TO STDOUT (FORMAT binary)` via psql to /dev/null", "rows/s"),
    ("ceiling.recvlogical", "`pg_recvlogical` pgoutput (proto 1) to /dev/null, the same updates", "events/s"),
    ("ceiling.copy_outbox", "`COPY bench_outbox TO STDOUT (FORMAT binary)` to /dev/null", "rows/s"),
    ("ceiling.recvlogical_outbox", "`pg_recvlogical` of the outbox inserts", "events/s"),
    ("ceiling.kafka", "Kafka `ProducerPerformance`, acks=all, lz4, linger 5 ms, record size as ours", "records/s"),
]

MEMORY = [
    ("rss.ours.snapshot", "ours: query snapshot"),
    ("rss.ours.cdc_snapshot", "ours: CDC snapshot + catch-up"),
    ("rss.ours.cdc", "ours: CDC drain of the updates"),
    ("rss.ours.query", "ours: query incremental"),
    ("rss.ours.outbox", "ours: outbox relay"),
    ("rss.ours.cdc_follow", "ours: CDC follow (latency runs)"),
    ("rss.ours.outbox_follow", "ours: outbox follow (latency runs)"),
    ("rss.ours.mariadb_snapshot", "ours: MariaDB CDC snapshot + catch-up"),
    ("rss.ours.mariadb_cdc", "ours: MariaDB CDC drain of the updates"),
    ("rss.dbz", "Debezium: Kafka Connect JVM (-Xmx512m), whole run"),
    ("rss.dbz.mariadb", "Debezium: Kafka Connect JVM with the MariaDB connector (-Xmx512m)"),
]


def _ceiling(samples: Samples, key: str) -> tuple[float | None, str]:
    """The binding ceiling: the lower of the source's and Kafka's, and which one it is."""
    source, kafka = samples.median(key), samples.median("ceiling.kafka")
    candidates = [(v, n) for v, n in ((source, "source"), (kafka, "Kafka")) if v]
    if not candidates:
        return None, ""
    return min(candidates)


def _binding_key(samples: Samples, key: str) -> str:
    """The key of the binding ceiling (source or Kafka), for per-run ratios."""
    _, which = _ceiling(samples, key)
    return "ceiling.kafka" if which == "Kafka" else key


def _k(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value / 1000:,.1f}k" if value >= 10_000 else f"{value:,.0f}"


def _spread(samples: Samples, key: str | None) -> str:
    if key is None:
        return "n/a"
    found = samples.summary(key)
    if found is None:
        return "–"
    if found.runs == 1:
        return _k(found.median)
    return f"**{_k(found.median)}** ({_k(found.low)}–{_k(found.high)})"


def _ratio(value: float | None) -> str:
    return f"{value:.2f}×" if value is not None else "–"


def _run_ratio(samples: Samples, numerator: str, denominator: str) -> str:
    """Median of the per-run ratios (both measured back to back in each run), min–max in brackets."""
    found = samples.ratios(numerator, denominator)
    if found is None:
        return "–"
    if found.runs == 1:
        return _ratio(found.median)
    return f"**{found.median:.2f}×** ({found.low:.2f}–{found.high:.2f})"


def _load_line(samples: Samples) -> str:
    """The machine's 1-minute load average at the end of every step, over all runs."""
    loads = [v for key, values in samples.values.items() if key.startswith("load.") for v in values]
    if not loads:
        return ""
    return (
        f"Load average (1 min) at the end of each step: median {sorted(loads)[len(loads) // 2]:.2f}, "
        f"min {min(loads):.2f}, max {max(loads):.2f}, on {{cpus}} vCPU (per step: `bench/results/latest.json`, "
        f"`load.<step>`). "
    )


def _ms(samples: Samples, key: str) -> str:
    found = samples.summary(key)
    if found is None:
        return "–"
    if found.runs == 1:
        return f"{found.median:,.0f}"
    return f"**{found.median:,.0f}** ({found.low:,.0f}–{found.high:,.0f})"


def tables(samples: Samples, meta: dict[str, Any]) -> str:
    lines = [
        f"Measured {meta['date']} on {meta['cpus']} vCPU ({meta['cpu']}), {meta['memory_gb']} GB RAM, "
        f"shared by Kafka {meta['kafka']}, PostgreSQL {meta['postgres']} and the tools under test. "
        f"Data set: {meta['rows']:,} orders (8 columns, 80-character note), beside them the demo shop's orders "
        f"({max(1, meta['rows'] // 5):,}; uuid key, jsonb, 11 columns) and products ({max(1, meta['rows'] // 20):,}; 12 columns), "
        f"read together by the snapshot, CDC and query incremental headlines (the MariaDB rows: the 8-column orders only); "
        f"{meta['outbox_rows']:,} outbox events. "
        + (
            f"Every figure is the median of {meta['runs']} runs, with min–max in brackets. "
            if meta["runs"] > 1
            else "A single run: not enough for a median. "
        )
        + f"Debezium {meta['debezium']} on Kafka Connect {meta['kafka']} standalone. "
        + _load_line(samples).replace("{cpus}", str(meta["cpus"]))
        + f"The whole run took {meta['total_minutes']} minutes.",
        "",
        "### Throughput",
        "",
        "Counted only once Kafka has acknowledged the records (ours: the Kafka transaction committed), from the first "
        "of a tool's records visible in Kafka to the last, the same way for every tool (start-up excluded; "
        "see Reading the table). "
        "The ratios are the median of the per-run ratios (ours and Debezium measured back to back in the same run), "
        "min–max in brackets, not a ratio of two independent medians.",
        "",
        "| pattern | unit | ours | Debezium | ceiling (binding) | ours ÷ Debezium | ours ÷ ceiling |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in THROUGHPUT:
        ceiling, which = _ceiling(samples, row.source_ceiling)
        lines.append(
            f"| {row.label} | {row.unit} | {_spread(samples, row.ours)} | {_spread(samples, row.debezium)} | "
            f"{_k(ceiling)} ({which}) | {_run_ratio(samples, row.ours, row.debezium) if row.debezium else 'n/a'} | "
            f"{_run_ratio(samples, row.ours, _binding_key(samples, row.source_ceiling))} |"
        )
    lines += ["", "### Ceilings", "", "| ceiling | unit | per second |", "|---|---|---|"]
    for key, label, unit in CEILINGS:
        lines.append(f"| {label} | {unit} | {_spread(samples, key)} |")
    lines += [
        "",
        "### Commit-to-Kafka latency",
        "",
        f"Milliseconds from the source COMMIT returning to the change being visible to a read_committed "
        f"consumer, at a fixed rate ({meta['latency_seconds']:.0f} s of load per point, 100 transactions a second).",
        "",
        "The p99 ratio is the median of the per-run ratios (ours and Debezium measured in the same run), "
        "min–max in brackets, as for throughput.",
        "",
        "| pattern | rate (events/s) | ours p50 | ours p99 | Debezium p50 | Debezium p99 | p99 ours ÷ Debezium |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, label in (("cdc", "CDC"), ("outbox", "Outbox")):
        for rate in meta["rates"]:
            ours, dbz = f"lat.ours.{name}.{rate}", f"lat.dbz.{name}.{rate}"
            lines.append(
                f"| {label} | {rate:,} | {_ms(samples, f'{ours}.p50')} | {_ms(samples, f'{ours}.p99')} "
                f"| {_ms(samples, f'{dbz}.p50')} | {_ms(samples, f'{dbz}.p99')} "
                f"| {_run_ratio(samples, f'{ours}.p99', f'{dbz}.p99')} |"
            )
    if any(key.startswith("bytes.") for key in samples.values):
        lines += [
            "",
            "### Value formats: bytes per record",
            "",
            "Key + value bytes of every record with a value, on the mixed-types table of the consumer tests "
            "(`python -m bench.formats`; tombstones counted apart).",
            "",
            "| format | query pattern | PostgreSQL CDC | MariaDB CDC |",
            "|---|---|---|---|",
        ]
        for value_format in ("debezium", "connect-json", "flat"):
            cells = []
            for stream in ("q_mixed", "pg_mixed", "my_mixed"):
                mean = samples.median(f"bytes.{value_format}.{stream}")
                count = samples.median(f"records.{value_format}.{stream}")
                tombstones = samples.median(f"tombstones.{value_format}.{stream}")
                cells.append(
                    "–"
                    if mean is None
                    else f"{mean:,.0f} B ({count or 0:.0f} records, {tombstones or 0:.0f} tombstones)"
                )
            lines.append(f"| `{value_format}` | " + " | ".join(cells) + " |")
    lines += ["", "### Peak memory (RSS, MB)", "", "| process | peak RSS |", "|---|---|"]
    for key, label in MEMORY:
        lines.append(f"| {label} | {_ms(samples, key)} |")
    if samples.skipped:
        lines += ["", "### Not measured in this run", ""]
        lines += [f"- {name}: {why}" for name, why in sorted(samples.skipped.items())]
    lines += [
        "",
        "![throughput](bench/plots/throughput.png)",
        "![latency](bench/plots/latency.png)",
        "![memory](bench/plots/memory.png)",
    ]
    return "\n".join(lines)


def console(samples: Samples, meta: dict[str, Any]) -> str:
    out = [f"\nresults ({meta['runs']} runs, {meta['rows']:,} rows, {meta['total_minutes']} min):"]
    for key in sorted(samples.values):
        found = samples.summary(key)
        if found:
            out.append(f"  {key:40s} {found.text(1)}")
    for row in THROUGHPUT:
        ours = samples.median(row.ours)
        ceiling, which = _ceiling(samples, row.source_ceiling)
        dbz = samples.median(row.debezium) if row.debezium else None
        per_run = _run_ratio(samples, row.ours, row.debezium).replace("**", "") if row.debezium else "n/a"
        out.append(
            f"  {row.label}: ours/Debezium {per_run} (per-run), of medians {_ratio(ratio(ours, dbz))}, "
            f"ours/ceiling({which}) {_ratio(ratio(ours, ceiling))}"
        )
    for name, why in sorted(samples.skipped.items()):
        out.append(f"  not measured: {name}: {why}")
    return "\n".join(out)


def write(samples: Samples, meta: dict[str, Any]) -> None:
    """Replace the generated part of BENCHMARKS.md and redraw the plots."""
    generated = f"{BEGIN}\n{tables(samples, meta)}\n{END}"
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    BENCHMARKS.write_text(head + generated + tail)
    plots(samples, meta)
    print(f"wrote {BENCHMARKS} and {PLOTS}/*.png")


def plots(samples: Samples, meta: dict[str, Any]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is missing (pip install -e '.[bench]'): no plots")
        return
    PLOTS.mkdir(parents=True, exist_ok=True)
    _throughput_plot(plt, samples, meta, PLOTS / "throughput.png")
    _latency_plot(plt, samples, meta, PLOTS / "latency.png")
    _memory_plot(plt, samples, PLOTS / "memory.png")


def _bar(ax: Any, x: float, samples: Samples, key: str | None, width: float, label: str, color: str) -> None:
    found = samples.summary(key) if key else None
    if found is None:
        return
    ax.bar(
        x,
        found.median,
        width,
        color=color,
        label=label,
        yerr=[[found.median - found.low], [found.high - found.median]],
        capsize=3,
    )


def _throughput_plot(plt: Any, samples: Samples, meta: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(10, 4.8))
    width = 0.27
    seen: set[str] = set()
    for index, row in enumerate(THROUGHPUT):
        ceiling, _ = _ceiling(samples, row.source_ceiling)
        for offset, key, label, color in (
            (-width, row.ours, "liberation", "#2a7ab9"),
            (0.0, row.debezium, f"Debezium {meta['debezium']}", "#d9822b"),
        ):
            _bar(ax, index + offset, samples, key, width, label if label not in seen else "_", color)
            seen.add(label)
        if ceiling:
            ax.bar(index + width, ceiling, width, color="#9aa5b1", label="ceiling" if "ceiling" not in seen else "_")
            seen.add("ceiling")
    ax.set_xticks(range(len(THROUGHPUT)), [r.short for r in THROUGHPUT])
    ax.set_ylabel("rows or events per second")
    ax.set_title(f"Throughput, {meta['rows']:,} rows, median of {meta['runs']} runs (bars: min–max)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _latency_plot(plt: Any, samples: Samples, meta: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(10, 4.8))
    groups = [(name, rate) for name in ("cdc", "outbox") for rate in meta["rates"]]
    width = 0.2
    seen: set[str] = set()
    for index, (name, rate) in enumerate(groups):
        for offset, tool, pct, color in (
            (-1.5, "ours", "p50", "#2a7ab9"),
            (-0.5, "ours", "p99", "#8cc2ea"),
            (0.5, "dbz", "p50", "#d9822b"),
            (1.5, "dbz", "p99", "#f2c08f"),
        ):
            label = f"{'liberation' if tool == 'ours' else 'Debezium'} {pct}"
            _bar(
                ax,
                index + offset * width,
                samples,
                f"lat.{tool}.{name}.{rate}.{pct}",
                width,
                label if label not in seen else "_",
                color,
            )
            seen.add(label)
    ax.set_xticks(range(len(groups)), [f"{n.upper() if n == 'cdc' else 'Outbox'} @ {r:,}/s" for n, r in groups])
    ax.set_ylabel("commit → visible in Kafka, ms")
    ax.set_title("Commit-to-Kafka latency at fixed rates")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _memory_plot(plt: Any, samples: Samples, path: Path) -> None:
    present = [(key, label, found) for key, label in MEMORY if (found := samples.summary(key)) is not None]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(present) + 1.2))
    for index, (key, _label, found) in enumerate(present):
        ax.barh(
            index,
            found.median,
            0.6,
            color="#d9822b" if key == "rss.dbz" else "#2a7ab9",
            xerr=[[found.median - found.low], [found.high - found.median]],
            capsize=3,
        )
    ax.set_yticks(range(len(present)), [label for _, label, _ in present], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("peak RSS, MB")
    ax.set_title("Peak memory (median, bars: min–max)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
