"""The one ``follow`` loop for every log-based pattern: PostgreSQL CDC, MariaDB CDC, both outbox relays.

Each pattern is a ``LogSource``: ``open`` connects, fences a crashed run and
snapshots when needed; ``stream`` publishes changes (one Kafka transaction per
flush of the one ``FlushPolicy``, the source confirmed only after the commit)
until told to stop; ``close`` lets go of every connection.  The coordinator
owns what used to be written once per pattern: SIGTERM, the duration, the
reconnect with backoff (``retry.follow_with_retry``), one summary across
reconnects, and the status lines.

Status: one JSON object per line on stdout (``{"event": "started", "source":
"shop", ...}``; events ``started``, ``reconnecting``, ``stopped``), so tests and
operators' tools read state instead of prose; the human log stays on stderr.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import orjson

from liberation_assets.core.engine.retry import follow_with_retry, give_up_after_default

Until = Callable[[], bool]
Log = Callable[[str], None]


class Summary(Protocol):
    """What every pattern's summary offers: the same counter names (``engine/summary.py``)."""

    seconds: float

    def metadata(self) -> Mapping[str, int | float]: ...


class LogSource(Protocol):
    """One attempt at following a source: opened, streamed until told to stop, closed (even after an error)."""

    def open(self, connected: Callable[[], None]) -> str | None:
        """Connect (call ``connected`` once the database answered), snapshot if needed; a line for the log, or
        None when the source stands by (another relay holds the lease) and ``stream`` should be called again."""
        ...

    def stream(self, until: Until) -> None:
        """Publish changes until ``until()``; each flush is one Kafka transaction, confirmed after its commit."""
        ...

    def close(self) -> None: ...


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def status(event: str, source: str, **fields: Any) -> None:
    """One machine-readable status line on stdout."""
    sys.stdout.write(orjson.dumps({"event": event, "source": source, **fields}).decode() + "\n")
    sys.stdout.flush()


def follow(
    name: str,
    what: str,
    make_source: Callable[[], LogSource],
    summary: Summary,
    *,
    duration: float | None = None,
    give_up_after: float | None = None,
    log: Log = _stderr,
) -> Summary:
    """Follow ``name`` until ``duration`` seconds pass (forever if None) or SIGTERM; returns the summary.

    ``what`` names it in every log line (``source shop``, ``outbox orders``).  A retriable error
    closes the source and opens a new one from the position in Kafka; a permanent one raises.
    """
    started = time.monotonic()
    stop = threading.Event()
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set()) if in_main else None
    deadline = time.monotonic() + duration if duration is not None else None

    def until() -> bool:
        return stop.is_set() or (deadline is not None and time.monotonic() >= deadline)

    def attempt(until: Until, connected: Callable[[], None]) -> None:
        while not until():
            source = make_source()
            try:
                line = source.open(connected)
                if line is None:
                    continue  # standing by; the source waited a moment itself
                log(line)
                status("started", name)
                source.stream(until)
                return
            finally:
                source.close()

    def reconnecting(reason: str, delay: float, attempt: int) -> None:
        status("reconnecting", name, reason=reason, delay_seconds=delay, attempt=attempt)

    try:
        follow_with_retry(
            what,
            attempt,
            until=until,
            log=log,
            on_retry=reconnecting,
            give_up_after=give_up_after if give_up_after is not None else give_up_after_default(),
        )
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    summary.seconds = time.monotonic() - started
    status("stopped", name, **dict(summary.metadata()))
    return summary
