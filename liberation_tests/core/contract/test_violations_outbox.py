"""Each violation kind in the outbox pattern: the domain event's contract rejects it at ``emit``.

An outbox carries domain events, not table rows, so its contract is checked
before the row exists: a violating event fails the application's own
transaction (``InvalidEvent``; a duplicate event id fails the outbox's unique
id), nothing of it reaches the outbox, and the valid events are relayed.
Nothing is lost: the caller holds the rejected event and its reason.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Literal

import pytest
import sqlalchemy as sa
from pydantic import Field

from liberation_assets.core.engine.outbox_relay import relay_once
from liberation_assets.core.errors import InvalidEvent
from liberation_assets.core.outbox import DomainEvent, create_outbox_table, emit, register
from liberation_tests.core.outbox.support import ROUTE, pending_rows, topic
from liberation_tests.fix_kafka import consume_all

pytestmark = pytest.mark.integration


@register
class ItemPriced(DomainEvent):
    """The items contract as a domain event."""

    aggregate_type = "item"
    aggregate_key = "sku"

    sku: str = Field(min_length=1)
    qty: int | None = Field(default=None, strict=True)
    price: Decimal = Field(ge=0)
    status: Literal["new", "paid", "shipped"]


FIRST_ID = uuid.uuid4()
VALID = [
    {"sku": "A", "qty": 1, "price": "9.50", "status": "new"},
    {"sku": "B", "qty": 2, "price": "3.00", "status": "paid"},
    {"sku": "C", "qty": 3, "price": "0", "status": "shipped"},
]
VIOLATIONS = {
    "type": ({"sku": "T", "qty": "five", "price": "1", "status": "new"}, InvalidEvent, "qty"),
    "null": ({"sku": "N", "qty": 1, "price": None, "status": "new"}, InvalidEvent, "price"),
    "range": ({"sku": "R", "qty": 1, "price": "-1", "status": "new"}, InvalidEvent, "greater than or equal to 0"),
    "enum": ({"sku": "E", "qty": 1, "price": "1", "status": "lost"}, InvalidEvent, "status"),
    "duplicate": ({"sku": "A", "qty": 5, "price": "1", "status": "new"}, sa.exc.IntegrityError, "id"),
}


@pytest.mark.parametrize("kind", sorted(VIOLATIONS))
def test_outbox_rejects_each_violation_at_emit_and_relays_the_valid_events(
    make_spec, pg_engine, pg_database, kafka_bootstrap, kind
) -> None:
    name = f"items_{uuid.uuid4().hex[:8]}"  # the relay's transactional id is per outbox name: keep it ours
    spec = make_spec(pg=pg_database, outboxes={name: {"source": "pg", "route": ROUTE}})
    create_outbox_table(pg_engine, spec.outboxes[name])
    for n, payload in enumerate(VALID):
        with pg_engine.begin() as connection:
            emit(connection, ItemPriced(**payload, **({"event_id": FIRST_ID} if n == 0 else {})))
    payload, error, reason = VIOLATIONS[kind]
    with pytest.raises(error, match=reason):
        with pg_engine.begin() as connection:
            if kind == "duplicate":
                emit(connection, ItemPriced(**payload, event_id=FIRST_ID))  # the same event emitted twice
            else:
                emit(connection, "ItemPriced", payload)

    relay_once(spec, name)

    published = consume_all(kafka_bootstrap, topic(spec, "item"))
    assert [m.key for m in published] == [b"A", b"B", b"C"]
    attempted, rejected_at_emit = len(VALID) + 1, 1
    assert len(published) + rejected_at_emit == attempted, "rows in = published + rejected"
    assert pending_rows(pg_engine) == 0
