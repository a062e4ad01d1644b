"""Run an outbox relay: once (a Dagster asset run) or continuously (``liberation follow <outbox>``)."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from liberation_assets.core.connect import cached_engine
from liberation_assets.core.contract.serialize import now_ms
from liberation_assets.core.engine.writer import lag_metadata
from liberation_assets.core.engine.retry import follow_with_retry, give_up_after_default
from liberation_assets.core.engine.summary import counters
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


def _drain(relay: OutboxRelay, summary: RelaySummary, deadline: float) -> None:
    """Relay full batches until a short one says the outbox is (momentarily) empty, or time is up."""
    batch_size = relay.outbox.batch_size
    while time.monotonic() < deadline:
        events = relay.relay_batch()
        if events:
            summary.add_batch(events, getattr(relay, "last_event_ms", None), getattr(relay, "oldest_event_ms", None))
        if events < batch_size:
            return


def _relay(spec: Spec, outbox_name: str) -> OutboxRelay | OutboxLogRelay:
    return OutboxLogRelay(spec, outbox_name) if spec.outboxes[outbox_name].via == "cdc" else OutboxRelay(spec, outbox_name)


def relay_once(spec: Spec, outbox_name: str, *, budget_seconds: float = DEFAULT_BUDGET_SECONDS) -> RelaySummary:
    """Relay what is pending now, within a time budget.  If another relay holds the lease, only report."""
    started = time.monotonic()
    summary = RelaySummary()
    relay = _relay(spec, outbox_name)
    try:
        if relay.acquire():
            summary.recovered = relay.recover()
            if isinstance(relay, OutboxLogRelay):
                relay.drain()
                summary.relayed, summary.transactions = relay.relayed, relay.transactions
            else:
                _drain(relay, summary, started + budget_seconds)
        else:
            summary.lease_acquired = False
    finally:
        relay.close()
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


def follow(spec: Spec, outbox_name: str, duration: float | None = None, *, log: Log = _stderr,
           give_up_after: float | None = None) -> int:
    """Relay continuously with low latency until ``duration`` seconds pass (forever if None).

    Stops on SIGTERM.  Waits as a standby while another relay holds the lease; after a retriable
    database or Kafka error it reconnects (``retry.follow_with_retry``), which
    re-runs crash recovery; a permanent one raises a ``LiberationError``.
    """
    started = time.monotonic()
    deadline = started + duration if duration is not None else float("inf")
    outbox = spec.outboxes[outbox_name]
    idle_wait = outbox.follow_poll_every.total_seconds()
    total = RelaySummary()
    stop = threading.Event()
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set()) if in_main else None

    def until() -> bool:
        return stop.is_set() or time.monotonic() >= deadline

    def attempt(until: Callable[[], bool], connected: Callable[[], None]) -> None:
        waiting_logged = False
        while not until():
            relay = _relay(spec, outbox_name)
            try:
                if not relay.acquire():
                    connected()  # the database answered; another relay leads
                    if not waiting_logged:
                        log(f"outbox {outbox_name}: another relay holds the lease; standing by")
                        waiting_logged = True
                    time.sleep(min(LEASE_RETRY_SECONDS, max(0.0, deadline - time.monotonic())))
                    continue
                connected()
                recovered = relay.recover()
                total.recovered += recovered
                log(f"outbox {outbox_name}: relaying (lease taken; {recovered} rows of the last batch cleaned up)")
                if isinstance(relay, OutboxLogRelay):
                    try:
                        relay.run(until=until)
                    finally:
                        total.relayed, total.transactions = total.relayed + relay.relayed, total.transactions + relay.transactions
                else:
                    _follow_leased(relay, total, until, deadline, idle_wait, log)
                return
            finally:
                relay.close()

    try:
        follow_with_retry(f"outbox {outbox_name}", attempt, until=until, log=log,
                          give_up_after=give_up_after if give_up_after is not None else give_up_after_default())
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    total.seconds = time.monotonic() - started
    print(" ".join(f"{key}={value}" for key, value in total.metadata().items() if key != "pending"), flush=True)
    return 0


def _follow_leased(relay: OutboxRelay, total: RelaySummary, until: Callable[[], bool], deadline: float,
                   idle_wait: float, log: Log) -> None:
    batch_size = relay.outbox.batch_size
    next_status = time.monotonic() + STATUS_EVERY_SECONDS
    while not until():
        now = time.monotonic()
        events = relay.relay_batch()
        if events:
            total.add_batch(events)
        if now >= next_status:
            log(f"outbox {relay.name}: {total.relayed} events relayed in {total.transactions} transactions")
            next_status = now + STATUS_EVERY_SECONDS
        if events < batch_size:
            relay.wait(min(idle_wait, max(0.0, deadline - time.monotonic())))
