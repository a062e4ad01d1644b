"""Log-based liberation from PostgreSQL: a snapshot consistent with the slot, then pgoutput streaming.

The coordinator of one source.  Every CDC stream of the source shares one slot,
one publication and one transactional producer (``<topic_prefix>.<source>.cdc``).
A micro-batch holds the events of all streams plus ONE position record, and is
one Kafka transaction; the slot is confirmed only after that commit.

- **Snapshot.**  A new slot exports a snapshot; tables are read inside it in
  key-ordered chunks, one Kafka transaction each, before streaming starts at the
  slot's consistent point: no gap, no overlap.  A snapshot that was
  interrupted, or a table added later, is finished with DBLog watermarks while
  streaming goes on (``pgoutput.watermark``).
- **Streaming.**  Changes go through in micro-batches of ``cdc.batch_size``
  events, so a huge transaction is never held in memory.  The position is
  (commit LSN, index of the change in its transaction), so a restart skips
  exactly what was committed to Kafka.
- **Idle databases.**  A heartbeat message every ``cdc.heartbeat_every`` makes
  the slot advance even when none of its tables change.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from liberation_assets.core.connect import create_source_engine
from liberation_assets.core.engine import coordinator
from liberation_assets.core.engine.pg_capture import (
    BOUNDARY_PREFIXES,
    DRAIN_PREFIX,
    HEARTBEAT_PREFIX,
    POSITION_EVERY_SECONDS,
    SLOT_WAIT_SECONDS,
    PostgresCdc,
)
from liberation_assets.core.engine.pg_changes import STABLE_WAIT_SECONDS, live_keys
from liberation_assets.core.engine.pg_summary import CdcSummary
from liberation_assets.core.engine.runtime import cdc_streams
from liberation_assets.core.engine.runtime import source_position_key as position_key
from liberation_assets.core.readers import pg_slot
from liberation_assets.core.readers.pgoutput.lsn import lsn_to_str
from liberation_assets.core.spec import Spec

__all__ = [
    "BOUNDARY_PREFIXES",
    "DRAIN_PREFIX",
    "HEARTBEAT_PREFIX",
    "POSITION_EVERY_SECONDS",
    "SLOT_WAIT_SECONDS",
    "STABLE_WAIT_SECONDS",
    "CdcSummary",
    "PostgresCdc",
    "SlotStatus",
    "cdc_streams",
    "drain",
    "follow",
    "live_keys",
    "position_key",
    "slot_status",
]


# -- entry points --------------------------------------------------------------------------------------------
def drain(spec: Spec, source_name: str) -> CdcSummary:
    """One Dagster run: snapshot if needed, then stream everything up to the current LSN."""
    cdc = PostgresCdc(spec, source_name)
    try:
        cdc.open()
        return cdc.drain()
    finally:
        cdc.close()


@dataclass(frozen=True)
class SlotStatus:
    """What a sensor and a health check need: the slot's WAL figures and whether changes await a run."""

    info: pg_slot.SlotInfo | None
    pending: bool | None
    """Unread changes of a published table; None while a reader (``liberation follow``) holds the slot."""


def slot_status(spec: Spec, source_name: str) -> SlotStatus:
    source = spec.sources[source_name]
    names = pg_slot.SlotNames.for_source(source_name, source)
    engine = create_source_engine(source)
    try:
        with engine.connect() as connection:
            info = pg_slot.slot_info(connection, names.slot)
            if info is None:
                return SlotStatus(None, True)  # the first run creates the slot and takes the snapshot
            if info.active_pid is not None:
                return SlotStatus(info, None)
            return SlotStatus(info, pg_slot.has_pending_changes(connection, names.slot, names.publication))
    finally:
        engine.dispose()


class PostgresFollow:
    """PostgreSQL CDC as a ``coordinator.LogSource``: slot, snapshot, pgoutput streaming."""

    def __init__(self, spec: Spec, source_name: str, summary: CdcSummary):
        self.cdc = PostgresCdc(spec, source_name)
        self.cdc.summary = summary  # one summary across reconnects

    def open(self, connected: Callable[[], None]) -> str:
        cdc = self.cdc
        cdc.connect()
        connected()
        return (
            f"liberation: following {cdc.source_name} from slot {cdc.slot_names.slot} "
            f"(publication {cdc.slot_names.publication}) at {lsn_to_str(cdc.position.lsn)}"
        )

    def snapshot(self) -> None:
        self.cdc.snapshot()

    def changes(self, until: Callable[[], bool]) -> None:
        self.cdc.run(until=until)
        self.cdc.finish()

    def confirm(self, through: int) -> None:
        self.cdc.confirm(through)

    def close(self) -> None:
        self.cdc.close()


def follow(
    spec: Spec,
    source_name: str,
    duration: float | None = None,
    on_summary: Callable[[CdcSummary], None] | None = None,
    *,
    give_up_after: float | None = None,
    log_line: Callable[[str], None] | None = None,
) -> int:
    """``liberation follow <source>``: stream continuously (or for ``duration`` seconds), stop on SIGTERM.

    A retriable error (broker or database away, walsender timeout) reconnects with backoff
    (``coordinator.follow``); a permanent one raises a ``LiberationError`` naming the source.
    """
    total = CdcSummary()
    log = log_line or (lambda line: print(line, file=sys.stderr, flush=True))
    coordinator.follow(
        source_name,
        f"source {source_name}",
        lambda: PostgresFollow(spec, source_name, total),
        total,
        duration=duration,
        give_up_after=give_up_after,
        log=log,
    )
    (on_summary or (lambda s: print(s.describe(), flush=True)))(total)
    return 0
