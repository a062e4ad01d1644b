"""When a log reader commits a Kafka transaction, and the commit itself: one place for every log-based pattern.

``FlushPolicy`` decides: a batch goes out when it is full, or once its oldest
event waited ``max_age_seconds`` (or the run is finishing).  With no events, a
position that moved is still recorded, at most every ``idle_position_seconds``
(or at once when finishing), so an idle source's slot or binlog position
advances without a transaction per heartbeat.

``Flusher`` commits: the events (already serialized by the writers) and the
position record in ONE Kafka transaction, then, only after that commit, the
source's ``confirm`` (PostgreSQL: ``send_feedback`` up to the LSN; outbox:
clean up the relayed rows).  A crash before the commit aborts it all; a crash
between commit and confirm leaves the source unconfirmed, and the next run
skips (CDC) or cleans up (outbox) what the stored position says is published.
The shape of Debezium's ``StreamingChangeEventSource.commitOffset``, called
after Kafka acknowledged the offsets.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from liberation_assets.core.events import Position
from liberation_assets.core.publish.positions import position_record
from liberation_assets.core.publish.publisher import OutRecord, TransactionalPublisher


@dataclass(frozen=True)
class FlushPolicy:
    batch_size: int
    max_age_seconds: float
    """How long a partly filled batch may wait: the latency bound under light load (0: publish when read)."""
    idle_position_seconds: float
    """At most this often, a position-only transaction records progress made without events."""

    def due(
        self, *, pending: int, pending_age: float, moved: bool, since_commit: float, finishing: bool = False
    ) -> bool:
        if pending >= self.batch_size:
            return True
        if pending:
            return finishing or pending_age >= self.max_age_seconds
        return moved and (finishing or since_commit >= self.idle_position_seconds)


Confirm = Callable[[Any], None]
"""The source's confirm-after-commit hook, given what the flush's caller said to confirm (an LSN, the seqs)."""


@contextmanager
def _nothing() -> Iterator[None]:
    yield


class Flusher:
    """One source's flushes: the policy, one Kafka transaction of events plus position, then the confirm.

    ``keepalive``: a context kept open around the commit (PostgreSQL: replication
    feedback keeps flowing while a slow broker holds the commit back).
    """

    def __init__(
        self,
        publisher: TransactionalPublisher,
        positions_topic: str,
        key: str,
        policy: FlushPolicy,
        *,
        confirm: Confirm | None = None,
        keepalive: Callable[[], AbstractContextManager[None]] = _nothing,
    ):
        self.publisher = publisher
        self.positions_topic = positions_topic
        self.key = key
        self.policy = policy
        self._confirm = confirm
        self._keepalive = keepalive
        self.transactions = 0
        self.last_commit = 0.0
        """``time.monotonic()`` of the last commit; 0 at first, so a moved position may go out at once."""

    def due(self, *, pending: int, pending_age: float = 0.0, moved: bool, finishing: bool = False) -> bool:
        return self.policy.due(
            pending=pending,
            pending_age=pending_age,
            moved=moved,
            since_commit=time.monotonic() - self.last_commit,
            finishing=finishing,
        )

    def commit(self, records: list[OutRecord], position: dict[str, Any], *, confirm: Any = None) -> None:
        """``records`` and the position in one transaction; then ``confirm(confirm)`` unless it is None."""
        records.append(position_record(self.positions_topic, Position(self.key, position)))
        with self._keepalive():
            self.publisher.publish(records)
        self.transactions += 1
        self.last_commit = time.monotonic()
        if confirm is not None and self._confirm is not None:
            self._confirm(confirm)  # only now, after the Kafka commit
