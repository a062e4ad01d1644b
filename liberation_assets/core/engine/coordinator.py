"""The one ``follow`` loop for every log-based pattern: PostgreSQL CDC, MariaDB CDC, both outbox relays.

Each pattern is a ``LogSource`` (the shape of Debezium's ``ChangeEventSourceCoordinator``
running a snapshot source and then a streaming one): ``open`` connects and fences a crashed
run; ``snapshot`` publishes what must be read from the tables (nothing, most of the time);
``changes`` publishes the log until told to stop; ``confirm`` tells the source what Kafka
now holds; ``close`` lets go of every connection.  Every flush of ``snapshot`` and
``changes`` goes through the source's ``publish.flush.Flusher``: the one ``FlushPolicy``,
ONE Kafka transaction of events plus position, and ``confirm`` only after its commit.
The coordinator owns what used to be written once per pattern: SIGTERM, the duration, the
reconnect with backoff (``retry.follow_with_retry``), one summary across reconnects, and
the status lines.

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
    """One attempt at following a source: opened, snapshotted, its changes streamed until told to stop, closed
    (even after an error)."""

    def open(self, connected: Callable[[], None]) -> str | None:
        """Connect (call ``connected`` once the database answered) and fence a crashed run; a line for the log,
        or None when the source stands by (another relay holds the lease) and should be opened again."""
        ...

    def snapshot(self) -> None:
        """Publish what the log cannot give (a new slot's exported snapshot, a table not read yet), in flushes."""
        ...

    def changes(self, until: Until) -> None:
        """Publish the log until ``until()``; each flush is one Kafka transaction, confirmed after its commit."""
        ...

    def confirm(self, through: Any) -> None:
        """Called by the source's ``Flusher`` after each commit: the source may forget what Kafka now holds
        (a slot's flush LSN, the relayed outbox rows)."""
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
                source.snapshot()
                source.changes(until)
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
