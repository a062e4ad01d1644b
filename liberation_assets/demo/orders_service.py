"""The demo shop's order service: its domain events, published through the transactional outbox.

``WriteLoad(on_order=on_order)`` calls ``on_order`` inside the transaction
that inserts the order and its payment, so ``OrderPlaced`` commits with them
or not at all.  Run ``prepare(engine)`` (or ``liberation outbox shop_outbox``)
once before, to create the outbox table.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, Field
from sqlalchemy.engine import Connection, Engine

from liberation_assets.core.outbox import DomainEvent, create_outbox_table, emit, register
from liberation_assets.core.spec import OutboxSpec

OUTBOX_TABLE = "outbox"
Money = Decimal


@register
class OrderPlaced(DomainEvent):
    """A customer placed an order."""

    aggregate_type = "order"
    aggregate_key = "order_id"

    order_id: UUID
    customer_id: int = Field(ge=1)
    total: Money = Field(ge=0, max_digits=12, decimal_places=2)
    currency: Literal["EUR", "USD"]
    placed_at: AwareDatetime
    ship_to_city: str | None = Field(default=None, max_length=100)
    express: bool = False


@register
class PaymentCaptured(DomainEvent):
    """The payment provider captured an order's payment."""

    aggregate_type = "order"
    aggregate_key = "order_id"

    order_id: UUID
    payment_id: int = Field(ge=1)
    amount: Money = Field(ge=0, max_digits=12, decimal_places=2)
    method: Literal["card", "paypal", "invoice"]
    captured_at: AwareDatetime


def prepare(engine: Engine, table: str = OUTBOX_TABLE) -> None:
    """Create the outbox table (the migration; idempotent)."""
    create_outbox_table(engine, OutboxSpec(source="shop", table=table))


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def order_placed(order: dict[str, Any]) -> OrderPlaced:
    """The public event of an order row: no internal notes, no fraud score."""
    shipping = order.get("shipping") or {}
    return OrderPlaced(
        order_id=order["id"],
        customer_id=order["customer_id"],
        total=order["total"],
        currency=order["currency"],
        placed_at=_aware(order["placed_at"]),
        ship_to_city=shipping.get("city"),
        express=bool(shipping.get("express", False)),
        occurred_at=_aware(order["placed_at"]),
    )


def on_order(connection: Connection, order: dict[str, Any]) -> None:
    """``WriteLoad`` hook: emit ``OrderPlaced`` in the order's own transaction."""
    emit(connection, order_placed(order), table=OUTBOX_TABLE)
