"""The steps of one run, in order.  Each step is a small function that returns figures or raises Skip.

The order lets one set of source writes serve several readers: every slot
exists before the million updates, so pg_recvlogical, our CDC and Debezium
each drain the same WAL, one at a time, never competing for the two cores.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable

from confluent_kafka import Consumer, TopicPartition

from bench import ceilings, dataset, latency, mariadb, topics
from bench.context import WORK, RunContext, Skip
from bench.debezium import Connect
from bench.debezium import orders_topic as dbz_orders_topic
from bench.debezium import outbox_topic as dbz_outbox_topic
from bench.debezium import table_topics as dbz_table_topics
from bench.procs import peak_rss_mb, run_watched, start_worker, stop
from bench.specs import cdc_topic, cdc_topics, mariadb_topic, outbox_topic, query_topic, query_topics

Figures = dict[str, float]
Step = Callable[[RunContext], Figures]


def _require(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise Skip(f"{module} has not landed yet")


def _expect(what: str, got: int, want: int) -> None:
    if got < want:
        raise RuntimeError(f"{what}: {got} events published, expected {want}")


def prepare(ctx: RunContext) -> Figures:
    dataset.drop_slots(ctx.stack, like="bench%")
    dataset.vacuum(ctx.stack)
    if ctx.config.wants("ceilings"):
        ceilings.create_slot(ctx, ctx.slot("ceiling"))
    return {}


def ceiling_copy(ctx: RunContext) -> Figures:
    """COPY of every table of the data set, one after the other: all rows over the summed seconds."""
    counts = {dataset.ORDERS: ctx.config.rows, **dataset.demo_rows(ctx.config.rows)}
    seconds = sum(rows / ceilings.copy_binary(ctx, table, rows) for table, rows in counts.items())
    return {"ceiling.copy": sum(counts.values()) / seconds}


def ours_snapshot(ctx: RunContext) -> Figures:
    report, span = run_watched(ctx, "snapshot", query_topics(ctx.prefix))
    _expect("snapshot", report["events"], dataset.total_rows(ctx.config.rows))
    ctx.state["record_size"] = _average_value_size(ctx, query_topic(ctx.prefix))
    return {
        "ours.snapshot": span.rate(report["events"]),
        "info.ours.snapshot_with_startup": report["events"] / report["seconds"],
        "rss.ours.snapshot": report["peak_rss_mb"],
    }


def _average_value_size(ctx: RunContext, topic: str, sample: int = 2000) -> int:
    consumer = Consumer(
        {
            "bootstrap.servers": ctx.stack.kafka_bootstrap,
            "group.id": f"bench-size-{ctx.token}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        sizes: list[int] = []
        deadline = time.monotonic() + 30
        while len(sizes) < sample and time.monotonic() < deadline:
            sizes.extend(len(m.value() or b"") for m in consumer.consume(500, timeout=1) if not m.error() and m.value())
        return int(sum(sizes) / len(sizes)) if sizes else 400
    finally:
        consumer.close()


def ceiling_kafka(ctx: RunContext) -> Figures:
    size = int(ctx.state.get("record_size", 400))
    return {
        "ceiling.kafka": ceilings.kafka_producer(ctx, min(ctx.config.rows, 1_000_000), size),
        "info.record_size": size,
    }


def ours_cdc_snapshot(ctx: RunContext) -> Figures:
    """Our CDC's first drain: slot with exported snapshot, snapshot of the table, then catch up."""
    _require("liberation_assets.core.engine.cdc_postgres")
    report, span = run_watched(ctx, "cdc_drain", cdc_topics(ctx.prefix))
    _expect("CDC snapshot", report["events"], dataset.total_rows(ctx.config.rows))
    ctx.state["ours_cdc_ready"] = True
    return {
        "ours.cdc_snapshot": span.rate(report["events"]),
        "info.ours.cdc_snapshot_with_startup": report["events"] / report["seconds"],
        "rss.ours.cdc_snapshot": report["peak_rss_mb"],
    }


def dbz_snapshot(ctx: RunContext) -> Figures:
    connect = Connect(ctx)
    connect.prepare()
    ctx.state["connect"] = connect
    watch = topics.Watch(ctx.stack.kafka_bootstrap, *dbz_table_topics(ctx))
    total = dataset.total_rows(ctx.config.rows)
    try:
        started = time.monotonic()
        connect.start()
        span = connect.wait_for(watch, total, above=0, timeout=1800)
        _wait_slot(ctx, ctx.slot("dbz_outbox"))
        time.sleep(2)  # let the worker flush its offsets (also flushed on shutdown)
    finally:
        watch.close()
        connect.stop()
    ctx.state["dbz_ready"] = True
    return {"dbz.snapshot": span.rate(total), "info.dbz.snapshot_with_startup": total / (span.done - started)}


def _wait_slot(ctx: RunContext, slot: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    with dataset.connect(ctx.stack) as db:
        while time.monotonic() < deadline:
            if db.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone():
                return
            time.sleep(0.5)
    raise TimeoutError(f"slot {slot} was not created within {timeout:.0f}s")


def updates(ctx: RunContext) -> Figures:
    seconds = dataset.update_all(ctx.stack, ctx.config.rows, tag=ctx.run)
    ctx.state["updates_lsn"] = dataset.current_lsn(ctx.stack)
    return {"info.source_updates": dataset.total_rows(ctx.config.rows) / seconds}


def ceiling_recvlogical(ctx: RunContext) -> Figures:
    if not ctx.config.wants("ceilings"):
        raise Skip("ceilings skipped")
    return {
        "ceiling.recvlogical": ceilings.drain_slot(
            ctx, ctx.slot("ceiling"), ctx.state["updates_lsn"], dataset.total_rows(ctx.config.rows)
        )
    }


def ours_cdc(ctx: RunContext) -> Figures:
    if not ctx.state.get("ours_cdc_ready"):
        raise Skip("our CDC did not snapshot in this run")
    report, span = run_watched(ctx, "cdc_drain", cdc_topics(ctx.prefix))
    _expect("CDC", report["events"], dataset.total_rows(ctx.config.rows))
    return {
        "ours.cdc": span.rate(report["events"]),
        "info.ours.cdc_with_startup": report["events"] / report["seconds"],
        "rss.ours.cdc": report["peak_rss_mb"],
    }


def dbz_cdc(ctx: RunContext) -> Figures:
    connect = _connect(ctx)
    watch = topics.Watch(ctx.stack.kafka_bootstrap, *dbz_table_topics(ctx))
    total = dataset.total_rows(ctx.config.rows)
    try:
        base = watch.count()
        started = time.monotonic()
        connect.start()
        span = connect.wait_for(watch, base + total, above=base, timeout=1800)
        time.sleep(2)
    finally:
        watch.close()
        connect.stop()
    return {"dbz.cdc": span.rate(total), "info.dbz.cdc_with_startup": total / (span.done - started)}


def _connect(ctx: RunContext) -> Connect:
    if not ctx.state.get("dbz_ready"):
        raise Skip("Debezium did not snapshot in this run")
    return ctx.state["connect"]


def ours_query(ctx: RunContext) -> Figures:
    report, span = run_watched(ctx, "query", query_topics(ctx.prefix))
    _expect("query incremental", report["events"], dataset.total_rows(ctx.config.rows))
    return {
        "ours.query": span.rate(report["events"]),
        "info.ours.query_with_startup": report["events"] / report["seconds"],
        "rss.ours.query": report["peak_rss_mb"],
    }


def outbox_insert(ctx: RunContext) -> Figures:
    seconds = dataset.insert_outbox(ctx.stack, ctx.config.outbox_rows)
    ctx.state["outbox_lsn"] = dataset.current_lsn(ctx.stack)
    return {"info.outbox_inserts": ctx.config.outbox_rows / seconds}


def ceiling_outbox(ctx: RunContext) -> Figures:
    if not ctx.config.wants("ceilings"):
        raise Skip("ceilings skipped")
    count = dataset.outbox_count(ctx.stack)
    return {
        "ceiling.copy_outbox": ceilings.copy_binary(ctx, dataset.OUTBOX, count),
        "ceiling.recvlogical_outbox": ceilings.drain_slot(
            ctx, ctx.slot("ceiling"), ctx.state["outbox_lsn"], ctx.config.outbox_rows
        ),
    }


def dbz_outbox(ctx: RunContext) -> Figures:
    """Debezium drains the outbox inserts through its EventRouter, then keeps running for the latency steps."""
    connect = _connect(ctx)
    watch = topics.Watch(ctx.stack.kafka_bootstrap, dbz_outbox_topic(ctx))
    try:
        base = watch.count()
        connect.start()
        span = connect.wait_for(watch, base + ctx.config.outbox_rows, above=base, timeout=1800)
    finally:
        watch.close()
    ctx.state["dbz_running"] = True
    return {"dbz.outbox": span.rate(ctx.config.outbox_rows)}


def dbz_latency(ctx: RunContext) -> Figures:
    connect = _connect(ctx)
    figures: Figures = {}
    try:
        if not ctx.state.get("dbz_running"):
            connect.start()
        for kind, topic in (("orders", dbz_orders_topic(ctx)), ("outbox", dbz_outbox_topic(ctx))):
            for rate in ctx.config.rates:
                figures.update(_latency(ctx, "dbz", kind, topic, rate))
                connect.check()
                connect.sample_rss()
    finally:
        connect.stop()
        ctx.state["dbz_running"] = False
    return figures


def dbz_memory(ctx: RunContext) -> Figures:
    connect = _connect(ctx)
    connect.stop()
    return {"rss.dbz": connect.peak_rss_mb}


def _latency(ctx: RunContext, tool: str, kind: str, topic: str, rate: int) -> Figures:
    result = latency.measure(ctx, kind=kind, topic=topic, rate=rate)
    name = "cdc" if kind == "orders" else "outbox"
    print(
        f"    {tool} {name} @ {rate}/s: p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms "
        f"({result.received}/{result.expected} events)",
        flush=True,
    )
    return {f"lat.{tool}.{name}.{rate}.p50": result.p50_ms, f"lat.{tool}.{name}.{rate}.p99": result.p99_ms}


def ours_outbox(ctx: RunContext) -> Figures:
    _require("liberation_assets.core.engine.outbox_relay")
    report, span = run_watched(ctx, "outbox_relay", [outbox_topic(ctx.prefix)])
    _expect("outbox relay", report["events"], ctx.config.outbox_rows)
    return {
        "ours.outbox": span.rate(report["events"]),
        "info.ours.outbox_with_startup": report["events"] / report["seconds"],
        "rss.ours.outbox": report["peak_rss_mb"],
    }


def ours_cdc_latency(ctx: RunContext) -> Figures:
    if not ctx.state.get("ours_cdc_ready"):
        raise Skip("our CDC did not snapshot in this run")
    return _ours_follow(ctx, "cdc_follow", "orders", cdc_topic(ctx.prefix), "rss.ours.cdc_follow")


def ours_outbox_latency(ctx: RunContext) -> Figures:
    _require("liberation_assets.core.engine.outbox_relay")
    return _ours_follow(ctx, "outbox_follow", "outbox", outbox_topic(ctx.prefix), "rss.ours.outbox_follow")


def _ours_follow(ctx: RunContext, what: str, kind: str, topic: str, rss_key: str) -> Figures:
    log = WORK / "logs" / f"{ctx.prefix}.{what}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    process = start_worker(ctx, what, log, duration=3600)
    figures: Figures = {}
    try:
        for rate in ctx.config.rates:
            if process.poll() is not None:
                raise RuntimeError(f"{what} exited with {process.returncode}: {log.read_text()[-2000:]}")
            figures.update(_latency(ctx, "ours", kind, topic, rate))
        figures[rss_key] = peak_rss_mb(process.pid) or 0.0
    finally:
        stop(process)
    return figures


def value_formats(ctx: RunContext) -> Figures:
    """Bytes per record of each value format (``bench.formats``), once: they do not vary between runs."""
    if ctx.run != 0:
        raise Skip("measured in the first run only (the sizes do not vary)")
    from bench import formats

    figures: Figures = {}
    for value_format in formats.FORMATS:
        for stream, (mean, count, tombstones) in formats.measure(ctx.stack, value_format).items():
            figures[f"bytes.{value_format}.{stream}"] = mean
            figures[f"records.{value_format}.{stream}"] = count
            figures[f"tombstones.{value_format}.{stream}"] = tombstones
    return figures


def mariadb_load(ctx: RunContext) -> Figures:
    """The same orders in MariaDB, loaded afresh every run (a run's readers start from a clean table)."""
    return {"info.mariadb_load_seconds": mariadb.recreate(ctx.stack, ctx.config.rows)}


def ours_mariadb_snapshot(ctx: RunContext) -> Figures:
    """Our MariaDB CDC's first drain: consistent snapshot of the table, then the binlog up to now."""
    report, span = run_watched(ctx, "mariadb_cdc_drain", [mariadb_topic(ctx.prefix)])
    _expect("MariaDB CDC snapshot", report["events"], ctx.config.rows)
    ctx.state["ours_mariadb_ready"] = True
    return {
        "ours.mariadb_snapshot": span.rate(report["events"]),
        "info.ours.mariadb_snapshot_with_startup": report["events"] / report["seconds"],
        "rss.ours.mariadb_snapshot": report["peak_rss_mb"],
    }


def dbz_mariadb_snapshot(ctx: RunContext) -> Figures:
    """Debezium's MariaDB connector: its initial snapshot, which also fixes its binlog position before the updates."""
    connect = mariadb.MariaDbConnect(ctx)
    connect.prepare()
    ctx.state["mariadb_connect"] = connect
    watch = topics.Watch(ctx.stack.kafka_bootstrap, mariadb.orders_topic(ctx))
    try:
        started = time.monotonic()
        connect.start()
        span = connect.wait_for(watch, ctx.config.rows, above=0, timeout=1800)
        time.sleep(2)  # let the worker flush its offsets (also flushed on shutdown)
    finally:
        watch.close()
        connect.stop()
    ctx.state["dbz_mariadb_ready"] = True
    return {
        "dbz.mariadb_snapshot": span.rate(ctx.config.rows),
        "info.dbz.mariadb_snapshot_with_startup": ctx.config.rows / (span.done - started),
    }


def mariadb_updates(ctx: RunContext) -> Figures:
    seconds = mariadb.update_all(ctx.stack, ctx.config.rows, tag=ctx.run)
    return {"info.mariadb_source_updates": ctx.config.rows / seconds}


def ours_mariadb_cdc(ctx: RunContext) -> Figures:
    if not ctx.state.get("ours_mariadb_ready"):
        raise Skip("our MariaDB CDC did not snapshot in this run")
    report, span = run_watched(ctx, "mariadb_cdc_drain", [mariadb_topic(ctx.prefix)])
    _expect("MariaDB CDC", report["events"], ctx.config.rows)
    return {
        "ours.mariadb_cdc": span.rate(report["events"]),
        "info.ours.mariadb_cdc_with_startup": report["events"] / report["seconds"],
        "rss.ours.mariadb_cdc": report["peak_rss_mb"],
    }


def dbz_mariadb_cdc(ctx: RunContext) -> Figures:
    if not ctx.state.get("dbz_mariadb_ready"):
        raise Skip("Debezium's MariaDB connector did not snapshot in this run")
    connect = ctx.state["mariadb_connect"]
    watch = topics.Watch(ctx.stack.kafka_bootstrap, mariadb.orders_topic(ctx))
    try:
        base = watch.count()
        started = time.monotonic()
        connect.start()
        span = connect.wait_for(watch, base + ctx.config.rows, above=base, timeout=1800)
    finally:
        watch.close()
        connect.stop()
    return {
        "dbz.mariadb_cdc": span.rate(ctx.config.rows),
        "info.dbz.mariadb_cdc_with_startup": ctx.config.rows / (span.done - started),
        "rss.dbz.mariadb": connect.peak_rss_mb,
    }


def cleanup(ctx: RunContext) -> Figures:
    for name in ("connect", "mariadb_connect"):
        if ctx.state.get(name) is not None:
            ctx.state[name].stop()
    dataset.drop_slots(ctx.stack, like=f"bench{ctx.run}{ctx.token}%")
    for prefix in (ctx.prefix, f"dbz{ctx.prefix}"):
        topics.delete_prefix(ctx.stack.kafka_bootstrap, prefix)
    return {}


# (name, group, step): a group can be skipped from the command line; "core" steps always run.
STEPS: list[tuple[str, str, Step]] = [
    ("prepare", "core", prepare),
    ("ceiling: COPY binary", "ceilings", ceiling_copy),
    ("ours: snapshot", "core", ours_snapshot),
    ("ceiling: Kafka producer", "ceilings", ceiling_kafka),
    ("ours: CDC snapshot", "cdc", ours_cdc_snapshot),
    ("debezium: snapshot", "debezium", dbz_snapshot),
    ("source: 1 update per row", "core", updates),
    ("ceiling: pg_recvlogical", "ceilings", ceiling_recvlogical),
    ("ours: CDC", "cdc", ours_cdc),
    ("debezium: CDC", "debezium", dbz_cdc),
    ("ours: query incremental", "core", ours_query),
    ("source: outbox inserts", "outbox", outbox_insert),
    ("ceiling: outbox", "outbox", ceiling_outbox),
    ("debezium: outbox", "debezium", dbz_outbox),
    ("debezium: latency", "latency", dbz_latency),
    ("debezium: memory", "debezium", dbz_memory),
    ("ours: outbox relay", "outbox", ours_outbox),
    ("ours: CDC latency", "latency", ours_cdc_latency),
    ("ours: outbox latency", "latency", ours_outbox_latency),
    ("mariadb: load orders", "mariadb", mariadb_load),
    ("ours: MariaDB CDC snapshot", "mariadb", ours_mariadb_snapshot),
    ("debezium: MariaDB snapshot", "mariadb", dbz_mariadb_snapshot),
    ("mariadb: 1 update per row", "mariadb", mariadb_updates),
    ("ours: MariaDB binlog CDC", "mariadb", ours_mariadb_cdc),
    ("debezium: MariaDB binlog CDC", "mariadb", dbz_mariadb_cdc),
    ("value formats: bytes per record", "formats", value_formats),
    ("cleanup", "core", cleanup),
]
