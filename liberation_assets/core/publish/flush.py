"""When a log reader commits a Kafka transaction: one policy for every log-based pattern.

A batch goes out when it is full, or once its oldest event waited
``max_age_seconds`` (or the run is finishing).  With no events, a position
that moved is still recorded, at most every ``idle_position_seconds`` (or at
once when finishing), so an idle source's slot or binlog position advances
without a transaction per heartbeat.  The slot or source is confirmed only
after that commit (the callers).
"""

from __future__ import annotations

from dataclasses import dataclass


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
