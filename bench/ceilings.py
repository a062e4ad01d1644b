"""The physical ceilings: how fast PostgreSQL can hand rows and changes out, and Kafka take records in.

No Python on the measured path: psql, pg_recvlogical and Kafka's own
ProducerPerformance, each writing to /dev/null or an unprocessed topic.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from bench import topics
from bench.context import RunContext, Skip
from bench.dataset import CEILING_PUBLICATION, DATABASE, ORDERS
from liberation_assets.stack.kafka import _find_java

PG_RECVLOGICAL = "/usr/lib/postgresql/15/bin/pg_recvlogical"


def kafka_libs(ctx: RunContext) -> Path:
    """The jars of the stack's own Kafka (under its LIBERATION_STACK_DIR), which the Connect workers and tools run on."""
    return ctx.stack.root / "kafka" / "libs"


def _pg_env(ctx: RunContext) -> dict[str, str]:
    return {**os.environ, "PGPASSWORD": ctx.stack.pg_password}


def _pg_args(ctx: RunContext) -> list[str]:
    return ["-h", ctx.stack.pg_host, "-p", str(ctx.stack.pg_port), "-U", ctx.stack.pg_user, "-d", DATABASE]


def copy_binary(ctx: RunContext, table: str = ORDERS, rows: int | None = None) -> float:
    """Rows/s of ``COPY table TO STDOUT (FORMAT binary)`` through psql into /dev/null."""
    psql = shutil.which("psql")
    if psql is None:
        raise Skip("psql not found")
    started = time.monotonic()
    with open(os.devnull, "wb") as sink:
        subprocess.run(
            [psql, *_pg_args(ctx), "-X", "-q", "-c", f"COPY {table} TO STDOUT (FORMAT binary)"],
            stdout=sink,
            env=_pg_env(ctx),
            check=True,
        )
    return (rows if rows is not None else ctx.config.rows) / (time.monotonic() - started)


def create_slot(ctx: RunContext, slot: str) -> None:
    if not os.path.exists(PG_RECVLOGICAL):
        raise Skip(f"{PG_RECVLOGICAL} not found")
    subprocess.run(
        [PG_RECVLOGICAL, *_pg_args(ctx), "--slot", slot, "--create-slot", "-P", "pgoutput"],
        env=_pg_env(ctx),
        check=True,
        capture_output=True,
    )


def drain_slot(ctx: RunContext, slot: str, end_lsn: str, events: int) -> float:
    """Events/s of ``pg_recvlogical`` (pgoutput, proto 1) streaming a slot up to ``end_lsn`` into /dev/null."""
    started = time.monotonic()
    subprocess.run(
        [
            PG_RECVLOGICAL,
            *_pg_args(ctx),
            "--slot",
            slot,
            "--start",
            "-f",
            os.devnull,
            "--no-loop",
            "-E",
            end_lsn,
            "-o",
            "proto_version=1",
            "-o",
            f"publication_names={CEILING_PUBLICATION}",
        ],
        env=_pg_env(ctx),
        check=True,
        capture_output=True,
        timeout=1800,
    )
    return events / (time.monotonic() - started)


def kafka_producer(ctx: RunContext, records: int, record_size: int) -> float:
    """Records/s of Kafka's ProducerPerformance with our producer settings (acks=all, lz4, linger 5 ms)."""
    java = _find_java()
    if java is None or not kafka_libs(ctx).is_dir():
        raise Skip("java 17 or the stack's Kafka libs not found")
    topic = f"{ctx.prefix}.ceiling.kafka"
    topics.create(ctx.stack.kafka_bootstrap, [topic])
    done = subprocess.run(
        [
            java,
            "-Xmx512m",
            "-cp",
            f"{kafka_libs(ctx)}/*",
            "org.apache.kafka.tools.ProducerPerformance",
            "--topic",
            topic,
            "--num-records",
            str(records),
            "--record-size",
            str(record_size),
            "--throughput",
            "-1",
            "--producer-props",
            f"bootstrap.servers={ctx.stack.kafka_bootstrap}",
            "acks=all",
            "linger.ms=5",
            "batch.size=1000000",
            "compression.type=lz4",
            "enable.idempotence=true",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    match = re.search(r"(\d+) records sent, ([\d.]+) records/sec", done.stdout.strip().splitlines()[-1])
    if not match:
        raise RuntimeError(f"unexpected ProducerPerformance output: {done.stdout[-500:]}")
    return float(match.group(2))
