"""The pgoutput transaction state machine, pure: message bytes and LSNs in, changes and positions out.

PostgreSQL CDC and the outbox log relay both read a slot through this one
class, so the rules below exist once:

- **Transactions.**  ``Begin`` opens one (its ``final_lsn`` is the commit LSN),
  every change gets the next index in it, ``Commit`` closes it.
- **The restart skip.**  pgoutput resends a whole transaction when the slot
  was confirmed only up to its commit; a change at or below the position the
  stream resumed from (``CdcPosition.skips``) was already published and is
  not returned again.
- **Boundaries.**  A non-transactional logical message of ours (heartbeat,
  drain, watermark) between transactions means everything before it has been
  handled: the position moves to one byte BELOW the message's LSN.  Its LSN is
  where its record ends, which is exactly where the next commit record may
  start; at the LSN itself, a transaction committing there would count as
  published and be skipped (``test_stream.py``).
- **Confirm.**  ``confirm`` is the LSN the slot may be confirmed up to once
  the current position is committed to Kafka: the commit LSN while inside a
  transaction (it is resent whole, and the index skips what is done), the
  commit's end after it, the boundary after a marker.

No I/O: a caller feeds ``(payload, data_start)`` of each XLogData message and
acts on what comes back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from liberation_assets.core.errors import ConnectivityError
from liberation_assets.core.readers.pgoutput.decoder import decode_message
from liberation_assets.core.readers.pgoutput.messages import (
    Begin,
    Commit,
    Delete,
    Insert,
    LogicalMessage,
    Message,
    Relation,
    Truncate,
    Update,
)
from liberation_assets.core.readers.pgoutput.position import CdcPosition

PG_EPOCH_MS = 946_684_800_000
"""2000-01-01T00:00:00Z in Unix epoch milliseconds."""


def pg_time_to_epoch_ms(pg_micros: int) -> int:
    """pgoutput timestamps count microseconds from 2000-01-01 UTC."""
    return PG_EPOCH_MS + pg_micros // 1000


Cursor = tuple[int, int, bool]
"""(commit LSN, index of the change in its transaction, whole transaction done): ``CdcPosition.at`` arguments."""


@dataclass
class Transaction:
    final_lsn: int
    commit_ms: int
    xid: int
    index: int = -1


class Change(NamedTuple):
    """A change not published yet; ``before`` is where the stream stood just before it (cursor, confirm)."""

    message: Insert | Update | Delete | Truncate
    tx: Transaction
    lsn: int
    before: tuple[Cursor, int]


class Committed(NamedTuple):
    """A transaction ended (also one whose changes were all skipped)."""

    tx: Transaction


class Marker(NamedTuple):
    """A non-transactional logical message (heartbeat, drain, watermark, or someone else's)."""

    message: LogicalMessage


Item = Change | Committed | Marker | Relation
_new = tuple.__new__
"""``Change`` built without its Python-level ``__new__``: once per event."""
_CHANGES = (Insert, Update, Delete, Truncate)


class PgoutputStream:
    """One replication connection's view of the log, from the position it resumed at."""

    def __init__(self, resume: CdcPosition, boundary_prefixes: frozenset[str] | set[str] = frozenset()):
        self.resume = resume
        self._resume_lsn = resume.lsn
        self.boundary_prefixes = frozenset(boundary_prefixes)
        self.at: Cursor = (resume.lsn, resume.index, resume.complete)
        """The position once everything returned so far is published."""
        self.confirm = 0
        """The LSN to confirm at the slot after that; 0: nothing new to confirm."""
        self.tx: Transaction | None = None

    def feed(self, payload: bytes, lsn: int = 0) -> Item | None:
        """One XLogData payload (``lsn``: its ``data_start``); what it means for the caller, or None."""
        return self.on_message(decode_message(payload), lsn)

    def on_message(self, message: Message, lsn: int = 0) -> Item | None:
        if isinstance(message, _CHANGES):
            tx = self.tx
            if tx is None:
                raise ConnectivityError("pgoutput: a change outside a transaction")
            tx.index += 1
            if tx.final_lsn <= self._resume_lsn and self.resume.skips(tx.final_lsn, tx.index):
                return None  # committed to Kafka before a restart (a later commit never is)
            before = (self.at, self.confirm)
            self.at = (tx.final_lsn, tx.index, False)
            self.confirm = tx.final_lsn
            return _new(Change, (message, tx, lsn, before))
        if isinstance(message, Begin):
            self.tx = Transaction(message.final_lsn, pg_time_to_epoch_ms(message.commit_ts), message.xid)
            return None
        if isinstance(message, Commit):
            tx, self.tx = self.tx, None
            if tx is None:
                raise ConnectivityError("pgoutput: a commit outside a transaction")
            if not self.resume.skips(tx.final_lsn, tx.index + 1):
                self.at = (tx.final_lsn, tx.index, True)
                self.confirm = message.end_lsn  # never sent again
            return Committed(tx)
        if isinstance(message, Relation):
            return message
        if isinstance(message, LogicalMessage) and not message.transactional:
            if self.tx is None and message.prefix in self.boundary_prefixes:
                boundary = message.lsn - 1  # see the module docstring: never the LSN itself
                if boundary > self.at[0]:
                    self.at = (boundary, -1, True)
                    self.confirm = boundary
            return Marker(message)
        return None

    def position(self, base: CdcPosition) -> CdcPosition:
        """``base`` (snapshot progress, slot, columns) at this stream's log position."""
        return base.at(*self.at)
