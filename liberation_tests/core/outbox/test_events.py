"""Event contracts: domain events validated and serialized before they can reach the outbox."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import orjson
import pytest
from pydantic import Field

from liberation_assets.core.errors import InvalidEvent
from liberation_assets.core.outbox import DomainEvent, EventRegistry
from liberation_assets.core.outbox.writer import outbox_row, validated
from liberation_assets.demo.orders_service import OrderPlaced, PaymentCaptured

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def _order(**overrides: object) -> OrderPlaced:
    values: dict[str, object] = {
        "order_id": uuid.uuid4(),
        "customer_id": 7,
        "total": "19.90",
        "currency": "EUR",
        "placed_at": NOW,
    }
    values.update(overrides)
    return OrderPlaced(**values)


def test_a_valid_event_becomes_a_debezium_outbox_row() -> None:
    event = _order()
    row = outbox_row(validated(event))
    assert row["aggregatetype"] == "order" and row["type"] == "OrderPlaced"
    assert row["aggregateid"] == str(event.order_id) and row["id"] == str(event.event_id)
    payload = orjson.loads(row["payload"])
    assert payload["total"] == "19.90"  # decimals keep their digits, as strings
    assert "event_id" not in payload and "occurred_at" not in payload  # those travel as header and timestamp


def test_an_invalid_event_is_rejected_with_every_problem_named() -> None:
    with pytest.raises(InvalidEvent) as caught:
        _order(total="-5", currency="GBP")
    message = str(caught.value)
    assert message.startswith("OrderPlaced rejected by its contract")
    assert "total: Input should be greater than or equal to 0 (got '-5')" in message
    assert "currency" in message and "'GBP'" in message


def test_emit_revalidates_so_model_construct_cannot_bypass_the_contract() -> None:
    smuggled = OrderPlaced.model_construct(
        order_id=uuid.uuid4(), customer_id=-1, total=1, currency="EUR", placed_at=NOW
    )
    with pytest.raises(InvalidEvent, match="customer_id"):
        validated(smuggled)


def test_events_by_type_name_use_the_registry() -> None:
    event = validated(
        "PaymentCaptured",
        {
            "order_id": str(uuid.uuid4()),
            "payment_id": 3,
            "amount": "5.00",
            "method": "card",
            "captured_at": NOW.isoformat(),
        },
    )
    assert isinstance(event, PaymentCaptured) and event.aggregate_type == "order"
    with pytest.raises(InvalidEvent, match="unknown event type 'Nope'"):
        validated("Nope", {})


def test_consumers_parse_payloads_with_the_same_contract() -> None:
    from liberation_assets.core.outbox import REGISTRY

    row = outbox_row(_order())
    assert isinstance(REGISTRY.parse("OrderPlaced", row["payload"]), OrderPlaced)
    with pytest.raises(InvalidEvent):
        REGISTRY.parse("OrderPlaced", b'{"order_id": "x"}')


def test_oversized_payloads_are_rejected_before_the_insert() -> None:
    registry = EventRegistry()

    @registry.register
    class NoteAdded(DomainEvent):
        aggregate_type = "note"
        aggregate_key = "note_id"
        note_id: int
        text: str

    with pytest.raises(InvalidEvent, match="payload is .* bytes; the limit is 1000"):
        outbox_row(NoteAdded(note_id=1, text="x" * 2000), max_payload_bytes=1000)


def test_contracts_must_name_a_topic_safe_aggregate_and_a_real_key() -> None:
    registry = EventRegistry()

    class Spaced(DomainEvent):
        aggregate_type = "has space"
        aggregate_key = "k"
        k: int

    class WrongKey(DomainEvent):
        aggregate_type = "ok"
        aggregate_key = "missing"
        k: int = Field(ge=0)

    with pytest.raises(TypeError, match="cannot name a Kafka topic"):
        registry.register(Spaced)
    with pytest.raises(TypeError, match="not one of its fields"):
        registry.register(WrongKey)
