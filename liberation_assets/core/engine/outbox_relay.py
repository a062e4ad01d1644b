"""Run an outbox relay: once (a Dagster asset run) or continuously (``liberation follow <outbox>``)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from liberation_assets.core.connect import cached_engine
from liberation_assets.core.contract.serialize import now_ms
from liberation_assets.core.engine import coordinator
from liberation_assets.core.engine.summary import counters
from liberation_assets.core.engine.writer import lag_metadata
from liberation_assets.core.outbox.log_relay import OutboxLogRelay, slot_name
from liberation_assets.core.outbox.relay import OutboxRelay, pending_stats
from liberation_assets.core.readers import pg_slot
from liberation_assets.core.spec import Spec

DEFAULT_BUDGET_SECONDS = 60.0
LEASE_RETRY_SECONDS = 0.5
STATUS_EVERY_SECONDS = 10.0
Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class RelaySummary:
    """Numbers about one relay run, for the CLI and for Dagster metadata (numbers only, so they plot)."""

    relayed: int = 0
    transactions: int = 0
    recovered: int = 0
    pending: int = 0
    oldest_pending_age_seconds: float = 0.0
    lease_acquired: bool = True
    seconds: float = 0.0

    last_event_ms: int | None = None
    max_publish_lag_ms: int | None = None

    def add_batch(self, events: int, newest_ms: int | None = None, oldest_ms: int | None = None) -> None:
        self.relayed += events
        self.transactions += 1
        if newest_ms is not None:
            self.last_event_ms = max(self.last_event_ms or 0, newest_ms)
        if oldest_ms is not None:
            self.max_publish_lag_ms = max(self.max_publish_lag_ms or 0, now_ms() - oldest_ms)

    def metadata(self) -> dict[str, int | float]:
        return {
            **counters(published=self.relayed, quarantined=0, deletes=0, kafka_transactions=self.transactions),
            "recovered_after_crash": self.recovered,
            "pending": self.pending,
            "oldest_pending_age_seconds": round(self.oldest_pending_age_seconds, 3),
            "lease_held_elsewhere": int(not self.lease_acquired),
            "events_per_second": round(self.relayed / self.seconds, 1) if self.seconds > 0 else 0.0,
            **lag_metadata(self.last_event_ms, self.max_publish_lag_ms),
        }


class _Leased:
    """An outbox relay as a ``coordinator.LogSource``: take the lease, clean up a crashed batch, relay.

    While another relay holds the lease, ``open`` waits a moment and returns None (standing by).
    The two kinds (``PollFollow``, ``LogFollow``) differ only in how they snapshot, stream and drain;
    both flush through their relay's ``publish.flush.Flusher``, which calls the relay's ``confirm``
    (slot feedback, cleanup of the rows) after each commit.
    """

    def __init__(
        self,
        relay: OutboxRelay | OutboxLogRelay,
        total: RelaySummary,
        log: Log,
        deadline: float = float("inf"),
        said: set[str] | None = None,
    ):
        self.relay = relay
        self.total = total
        self.log = log
        self.deadline = deadline
        self.said = said if said is not None else set()
        """Lines already logged by an earlier source of this ``follow`` (the standby line is said once)."""

    def open(self, connected: Callable[[], None]) -> str | None:
        name = self.relay.name
        if not self.relay.acquire():
            connected()  # the database answered; another relay leads
            if "standby" not in self.said:
                self.log(f"outbox {name}: another relay holds the lease; standing by")
                self.said.add("standby")
            time.sleep(min(LEASE_RETRY_SECONDS, max(0.0, self.deadline - time.monotonic())))
            return None
        connected()
        recovered = self.relay.recover()
        self.total.recovered += recovered
        return f"outbox {name}: relaying (lease taken; {recovered} rows of the last batch cleaned up)"

    def snapshot(self) -> None:
        """Nothing for a polled table: its rows are what is pending."""

    def confirm(self, through: Any) -> None:
        self.relay.confirm(through)

    def close(self) -> None:
        self.relay.close()


class PollFollow(_Leased):
    """The outbox table polled in ``seq`` order (``outbox/relay.py``)."""

    relay: OutboxRelay

    def changes(self, until: Callable[[], bool]) -> None:
        relay, total = self.relay, self.total
        batch_size = relay.outbox.batch_size
        idle_wait = relay.outbox.follow_poll_every.total_seconds()
        next_status = time.monotonic() + STATUS_EVERY_SECONDS
        while not until():
            now = time.monotonic()
            events = relay.relay_batch()
            if events:
                total.add_batch(events)
            if now >= next_status:
                self.log(f"outbox {relay.name}: {total.relayed} events relayed in {total.transactions} transactions")
                next_status = now + STATUS_EVERY_SECONDS
            if events < batch_size:
                relay.wait(min(idle_wait, max(0.0, self.deadline - time.monotonic())))

    def drain(self, budget_deadline: float) -> None:
        """Relay full batches until a short one says the outbox is (momentarily) empty, or time is up."""
        relay = self.relay
        while time.monotonic() < budget_deadline:
            events = relay.relay_batch()
            if events:
                self.total.add_batch(events, relay.last_event_ms, relay.oldest_event_ms)
            if events < relay.outbox.batch_size:
                return


class LogFollow(_Leased):
    """The outbox table's inserts read from a replication slot (``outbox/log_relay.py``)."""

    relay: OutboxLogRelay

    def snapshot(self) -> None:
        """A new slot's rows from its exported snapshot (then streaming starts)."""
        try:
            self.relay.snapshot()
        finally:
            self._count()

    def changes(self, until: Callable[[], bool]) -> None:
        try:
            self.relay.run(until=until)
        finally:
            self._count()

    def drain(self, budget_deadline: float) -> None:
        try:
            self.relay.drain()
        finally:
            self._count()

    def _count(self) -> None:
        self.total.relayed += self.relay.relayed
        self.total.transactions += self.relay.transactions
        self.relay.relayed = self.relay.transactions = 0


def _source(
    spec: Spec,
    outbox_name: str,
    total: RelaySummary,
    log: Log = _stderr,
    deadline: float = float("inf"),
    said: set[str] | None = None,
) -> PollFollow | LogFollow:
    if spec.outboxes[outbox_name].via == "cdc":
        return LogFollow(OutboxLogRelay(spec, outbox_name), total, log, deadline, said)
    return PollFollow(OutboxRelay(spec, outbox_name), total, log, deadline, said)


def relay_once(spec: Spec, outbox_name: str, *, budget_seconds: float = DEFAULT_BUDGET_SECONDS) -> RelaySummary:
    """Relay what is pending now, within a time budget.  If another relay holds the lease, only report."""
    started = time.monotonic()
    summary = RelaySummary()
    source = _source(spec, outbox_name, summary)
    try:
        if source.relay.acquire():
            summary.recovered = source.relay.recover()
            source.snapshot()
            source.drain(started + budget_seconds)
        else:
            summary.lease_acquired = False
    finally:
        source.close()
    summary.pending, summary.oldest_pending_age_seconds = outbox_pending(spec, outbox_name)
    summary.seconds = time.monotonic() - started
    return summary


def outbox_pending(spec: Spec, outbox_name: str) -> tuple[int, float]:
    """(pending rows, oldest pending age in seconds): the cheap check a sensor runs on every tick.

    With ``via: cdc`` the log is what is pending: 1 if the slot holds an
    unread change of the outbox table (or does not exist yet), else 0.
    """
    outbox = spec.outboxes[outbox_name]
    engine = cached_engine(spec.sources[outbox.source])
    if outbox.via != "cdc":
        return pending_stats(engine, outbox)
    slot = slot_name(outbox_name)
    with engine.connect() as connection:
        if pg_slot.slot_info(connection, slot) is None:
            return 1, 0.0
        return int(bool(pg_slot.has_pending_changes(connection, slot, slot))), 0.0


def follow(
    spec: Spec,
    outbox_name: str,
    duration: float | None = None,
    *,
    log: Log = _stderr,
    give_up_after: float | None = None,
) -> int:
    """Relay continuously with low latency until ``duration`` seconds pass (forever if None), or SIGTERM.

    Waits as a standby while another relay holds the lease; after a retriable database or Kafka
    error it reconnects (``coordinator.follow``), which re-runs crash recovery; a permanent one
    raises a ``LiberationError``.
    """
    deadline = time.monotonic() + duration if duration is not None else float("inf")
    total = RelaySummary()
    said: set[str] = set()
    coordinator.follow(
        outbox_name,
        f"outbox {outbox_name}",
        lambda: _source(spec, outbox_name, total, log, deadline, said),
        total,
        duration=duration,
        give_up_after=give_up_after,
        log=log,
    )
    print(" ".join(f"{key}={value}" for key, value in total.metadata().items() if key != "pending"), flush=True)
    return 0
