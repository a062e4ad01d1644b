"""Debezium's outbox event router as a pure transform over decoded pgoutput messages (``via: cdc``).

Only inserts into the outbox table become records; updates, deletes and
truncates of it are ignored, so an application may insert and delete the row
in the same transaction and the log still carries the event.  The values are
the text forms pgoutput sends: the payload's JSON text is forwarded as is.
"""

from __future__ import annotations

from typing import Any

from liberation_assets.core.contract.serialize import to_epoch_ms
from liberation_assets.core.errors import OutboxUnavailable
from liberation_assets.core.outbox.relay import Router
from liberation_assets.core.outbox.table import REQUIRED_COLUMNS
from liberation_assets.core.publish.publisher import OutRecord
from liberation_assets.core.readers.pg_types import instant_reader
from liberation_assets.core.readers.pgoutput import Insert, Relation

_USED = ("seq", "id", "aggregatetype", "aggregateid", "type", "payload", "occurred_at")


class EventRouter:
    """Relation and Insert messages of one outbox table in; (seq, Kafka record) out."""

    def __init__(self, schema: str, table: str, router: Router):
        self.schema = schema
        self.table = table
        self.router = router
        self.relid: int | None = None
        self._positions: tuple[int, ...] = ()
        self._occurred_at: Any = None

    def relation(self, message: Relation) -> None:
        """Learn the outbox table's relation id and column positions (sent before its first change)."""
        if (message.namespace, message.name) != (self.schema, self.table):
            return
        names = [column.name for column in message.columns]
        missing = [name for name in REQUIRED_COLUMNS if name not in names]
        if missing:
            raise OutboxUnavailable(f"outbox table {self.schema}.{self.table} lacks columns {missing}")
        self.relid = message.relid
        self._positions = tuple(names.index(name) for name in _USED)
        self._occurred_at = instant_reader(message.columns[names.index("occurred_at")].type_oid)

    def record(self, message: Insert) -> tuple[int, OutRecord] | None:
        """The event-router record of an outbox insert; None for any other table."""
        if message.relid != self.relid:
            return None
        seq, event_id, aggregatetype, aggregateid, event_type, payload, occurred_at = (
            message.new[i] for i in self._positions
        )
        return int(seq), (  # type: ignore[arg-type]
            self.router.topic(aggregatetype),  # type: ignore[arg-type]
            aggregateid.encode(),  # type: ignore[union-attr]
            payload.encode() if isinstance(payload, str) else None,
            to_epoch_ms(self._occurred_at(occurred_at)),
            [("id", event_id.encode()), ("type", event_type.encode())],  # type: ignore[union-attr]
        )
