"""The quarantine: rows that failed their contract, kept in a dead-letter topic with their reasons.

Nothing is dropped: a rejected row is written, in the same transaction as the
valid rows and the position, to ``<topic>.quarantine`` with the row, the
failed checks and the source position, so it can be inspected and re-driven.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from liberation_assets.core.contract.serialize import dumps
from liberation_assets.core.events import ChangeEvent

if TYPE_CHECKING:
    from liberation_assets.core.engine.writer import StreamIdentity
    from liberation_assets.core.publish.publisher import OutRecord

QUARANTINE_SUFFIX = ".quarantine"


def quarantine_topic(topic: str) -> str:
    return topic + QUARANTINE_SUFFIX


def quarantine_record(
    topic: str,
    identity: "StreamIdentity",
    event: ChangeEvent,
    reasons: list[str],
    position: dict[str, Any] | None,
    processed_ms: int,
) -> "OutRecord":
    value = {
        "stream": identity.name,
        "topic": identity.topic,
        "op": event.op,
        "key": event.key,
        "row": event.after,
        "before": event.before,
        "event_ts_ms": event.ts_ms,
        "source": event.source,
        "failed_checks": reasons,
        "position": position,
        "quarantined_ts_ms": processed_ms,
    }
    return (topic, dumps(event.key), dumps(value), event.ts_ms, identity.headers())
