"""``emit``: write a domain event to the outbox inside the application's own transaction.

The event is validated and serialized *before* the insert.  Any failure
raises ``InvalidEvent`` inside the caller's ``with engine.begin():`` block, so
the business rows roll back with it: a bad event never reaches the outbox and
the relay never meets a row it cannot publish.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timezone
from typing import Any, Protocol

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from liberation_assets.core.errors import InvalidEvent
from liberation_assets.core.outbox.events import REGISTRY, DomainEvent, EventRegistry, describe
from liberation_assets.core.outbox.table import outbox_table

MAX_PAYLOAD_BYTES = 900_000
"""Below Kafka's default 1 MB message limit, leaving room for key and headers: larger events are rejected at write time."""


class Executes(Protocol):
    """A SQLAlchemy ``Connection`` or ``Session``: anything that executes within the caller's transaction."""

    def execute(self, statement: Any, parameters: Any = ..., /) -> Any: ...


def validated(
    event: DomainEvent | str, payload: Mapping[str, Any] | None = None, registry: EventRegistry = REGISTRY
) -> DomainEvent:
    """The event, revalidated against its contract (so ``model_construct`` cannot smuggle bad data in)."""
    if isinstance(event, str):
        if payload is None:
            raise InvalidEvent(f"{event}: emit(connection, type, payload) needs a payload mapping")
        return registry.build(event, payload)
    if payload is not None:
        raise InvalidEvent("pass either an event object or a type name with a payload, not both")
    if not isinstance(event, DomainEvent):
        raise InvalidEvent(f"expected a DomainEvent, got {type(event).__name__}")
    try:
        return type(event).model_validate(event)
    except ValidationError as exc:
        raise InvalidEvent(describe(event.event_type, exc)) from None


def outbox_row(event: DomainEvent, max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> dict[str, Any]:
    """The outbox row of a valid event: serialization happens here, before any SQL runs."""
    try:
        payload = event.model_dump_json()
    except PydanticSerializationError as exc:
        raise InvalidEvent(f"{event.event_type} cannot be serialized: {exc}") from None
    if len(payload) * 4 > max_payload_bytes and (size := len(payload.encode())) > max_payload_bytes:
        raise InvalidEvent(f"{event.event_type} payload is {size} bytes; the limit is {max_payload_bytes}")
    aggregate_id = event.aggregate_id
    if not aggregate_id or len(aggregate_id) > 255:
        raise InvalidEvent(
            f"{event.event_type}.{event.aggregate_key} must be 1 to 255 characters, got {aggregate_id!r}"
        )
    return {
        "id": str(event.event_id),
        "aggregatetype": event.aggregate_type,
        "aggregateid": aggregate_id,
        "type": event.event_type,
        "payload": payload,
        "occurred_at": event.occurred_at.astimezone(timezone.utc),  # pymysql drops offsets: store UTC
    }


def emit(
    connection: Executes,
    event: DomainEvent | str,
    payload: Mapping[str, Any] | None = None,
    *,
    table: str = "outbox",
    schema: str | None = None,
    registry: EventRegistry = REGISTRY,
    max_payload_bytes: int = MAX_PAYLOAD_BYTES,
) -> DomainEvent:
    """Validate, serialize and insert one event in the caller's transaction; return the validated event.

    ``emit(conn, OrderPlaced(...))`` or ``emit(conn, "OrderPlaced", {...})``.
    Commit or roll back is the caller's: the event is published only if its
    transaction commits.
    """
    valid = validated(event, payload, registry)
    row = outbox_row(valid, max_payload_bytes)
    connection.execute(outbox_table(table, schema).insert(), row)
    return valid
