"""``emit`` inside the application's transaction, against the real databases."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from liberation_assets.core.errors import InvalidEvent
from liberation_assets.core.outbox import create_outbox_table, emit
from liberation_assets.core.outbox.table import outbox_table
from liberation_assets.core.spec import OutboxSpec
from liberation_assets.demo import schema
from liberation_assets.demo.orders_service import OrderPlaced
from liberation_tests.core.outbox.support import pending_rows

pytestmark = pytest.mark.integration
NOW = datetime.now(timezone.utc)


def _order_row(order_id: uuid.UUID, total: str) -> dict[str, object]:
    return {
        "id": order_id,
        "customer_id": 1,
        "status": "placed",
        "total": total,
        "currency": "EUR",
        "placed_at": NOW,
        "shipping": None,
        "note": None,
        "internal_notes": "x",
        "fraud_score": 0.1,
        "updated_at": NOW,
    }


def _place(connection: sa.Connection, total: str) -> uuid.UUID:
    order_id = uuid.uuid4()
    connection.execute(schema.orders.insert().values(**_order_row(order_id, total)))
    emit(
        connection,
        "OrderPlaced",
        {"order_id": order_id, "customer_id": 1, "total": total, "currency": "EUR", "placed_at": NOW},
    )
    return order_id


@pytest.fixture(params=["postgresql", "mariadb"])
def shop(request: pytest.FixtureRequest) -> sa.Engine:
    engine = request.getfixturevalue("pg_engine" if request.param == "postgresql" else "mysql_engine")
    schema.create_schema(engine)
    create_outbox_table(engine, OutboxSpec(source="s"))
    return engine


def _orders(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(schema.orders)).scalar_one())


def test_event_and_business_row_commit_together(shop: sa.Engine) -> None:
    with shop.begin() as connection:
        order_id = _place(connection, "12.50")
    with shop.connect() as connection:
        row = connection.execute(sa.select(outbox_table()).where(outbox_table().c.aggregateid == str(order_id))).one()
    assert (row.aggregatetype, row.type) == ("order", "OrderPlaced")
    assert '"total":"12.50"' in row.payload.replace(" ", "")
    assert _orders(shop) == 1


def test_invalid_event_fails_the_transaction_and_the_business_row_rolls_back(shop: sa.Engine) -> None:
    with pytest.raises(
        InvalidEvent, match=r"OrderPlaced rejected by its contract: total: Input should be greater than or equal to 0"
    ):
        with shop.begin() as connection:
            _place(connection, "-3.00")
    assert _orders(shop) == 0
    assert pending_rows(shop) == 0


def test_an_application_rollback_takes_the_event_with_it(shop: sa.Engine) -> None:
    with pytest.raises(RuntimeError):
        with shop.begin() as connection:
            _place(connection, "5.00")
            raise RuntimeError("payment declined")
    assert pending_rows(shop) == 0 and _orders(shop) == 0


def test_emit_works_with_an_orm_session(shop: sa.Engine) -> None:
    with Session(shop) as session, session.begin():
        event = emit(
            session, OrderPlaced(order_id=uuid.uuid4(), customer_id=2, total="1.00", currency="USD", placed_at=NOW)
        )
    with shop.connect() as connection:
        stored = connection.execute(sa.select(outbox_table().c.id)).scalar_one()
    assert str(stored) == str(event.event_id)
