"""Machine notes for the report: what the figures were measured on."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import time
from typing import Any

from bench import debezium
from bench.context import BenchConfig


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _memory_gb() -> float:
    try:
        for line in open("/proc/meminfo", encoding="utf-8"):
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def _postgres_version() -> str:
    try:
        out = subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout
        found = re.search(r"\d+\.\d+", out)
        return found.group(0) if found else "?"
    except OSError:
        return "?"


def describe(config: BenchConfig, load_seconds: float, total_seconds: float) -> dict[str, Any]:
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gb": round(_memory_gb(), 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgres": _postgres_version(),
        "kafka": "4.1.1",
        "debezium": debezium.version(),
        "rows": config.rows,
        "outbox_rows": config.outbox_rows,
        "runs": config.runs,
        "rates": list(config.rates),
        "latency_seconds": config.latency_seconds,
        "load_seconds": round(load_seconds, 1),
        "total_minutes": round(total_seconds / 60, 1),
    }
