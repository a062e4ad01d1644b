"""Child processes of the harness: our workers, and the peak RSS of any process we started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import topics
from bench.context import REPO, RunContext


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM: the process's peak resident set so far."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _command(ctx: RunContext, what: str, args: dict[str, Any]) -> list[str]:
    payload = {"what": what, "prefix": ctx.prefix, "slot": ctx.slot("ours"), **args}
    return [sys.executable, "-m", "bench.worker", json.dumps(payload)]


def run_watched(
    ctx: RunContext, what: str, watched: list[str], *, timeout: float = 1800, **args: Any
) -> tuple[dict[str, Any], topics.Span]:
    """Run a worker to completion: its JSON report (seconds, events, peak_rss_mb) and the span in which the
    harness saw ``watched`` fill up, watched as Debezium's topics are, so ``Span.rate`` gives our rate measured
    exactly as Debezium's is; the report's ``seconds`` include start-up."""
    watch = topics.Watch(ctx.stack.kafka_bootstrap, *watched)
    try:
        base = watch.count()
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            process = subprocess.Popen(_command(ctx, what, args), cwd=REPO, stdout=out, stderr=err)
            try:
                span = watch.follow(base, lambda _seen: process.poll() is not None, timeout=timeout)
            finally:
                stop(process, grace=5)
            out.seek(0)
            err.seek(0)
            if process.returncode != 0:
                raise RuntimeError(f"worker {what} failed ({process.returncode}):\n{err.read().decode()[-3000:]}")
            report: dict[str, Any] = json.loads(out.read().decode().strip().splitlines()[-1])
    finally:
        watch.close()
    return report, span


def start_worker(ctx: RunContext, what: str, log: Path, **args: Any) -> subprocess.Popen[bytes]:
    """Start a long-running worker (a follower); stop it with ``stop``."""
    with log.open("wb") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(_command(ctx, what, args), cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[Any], *, grace: float = 30) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds: only the process we started, by its pid."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
