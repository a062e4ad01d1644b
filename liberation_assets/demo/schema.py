"""The demo shop's source schema, for PostgreSQL and MariaDB.

Every table has internal-only columns (cost, supplier notes, audit fields,
fraud scores) that the spec's projections keep out of every published event.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Engine

metadata = sa.MetaData()

Money = sa.Numeric(12, 2)
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
LongText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
Uuid = sa.Uuid(as_uuid=True).with_variant(mysql.CHAR(36), "mysql", "mariadb")


def _now() -> sa.TextClause:
    return sa.text("CURRENT_TIMESTAMP")


products = sa.Table(
    "products",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("sku", sa.String(32), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", LongText),
    sa.Column("category", sa.String(40), nullable=False),
    sa.Column("images", Json),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("cost", Money),  # internal
    sa.Column("supplier_notes", sa.Text),  # internal
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("updated_by", sa.String(64)),  # internal
)
sa.Index("products_updated_at_id", products.c.updated_at, products.c.id)

prices = sa.Table(
    "prices",
    metadata,
    sa.Column("product_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("currency", sa.String(3), primary_key=True),
    sa.Column("amount", Money, nullable=False),
    sa.Column("valid_from", Timestamp, nullable=False),
    sa.Column("margin", sa.Numeric(6, 4)),  # internal
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("updated_by", sa.String(64)),  # internal
)
sa.Index("prices_updated_at_key", prices.c.updated_at, prices.c.product_id, prices.c.currency)

inventory = sa.Table(
    "inventory",
    metadata,
    sa.Column("product_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("warehouse", sa.String(16), primary_key=True),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("reserved", sa.Integer, nullable=False, default=0),
    sa.Column("reorder_level", sa.Integer),  # internal
    sa.Column("audit_note", sa.Text),  # internal
    sa.Column("updated_at", Timestamp, nullable=False),
)
sa.Index("inventory_updated_at_key", inventory.c.updated_at, inventory.c.product_id, inventory.c.warehouse)

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", Uuid, primary_key=True),
    sa.Column("customer_id", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("total", Money, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("placed_at", Timestamp, nullable=False),
    sa.Column("shipping", Json),
    sa.Column("note", sa.Text),
    sa.Column("internal_notes", sa.Text),  # internal
    sa.Column("fraud_score", sa.Float),  # internal
    sa.Column("updated_at", Timestamp, nullable=False),
)
sa.Index("orders_updated_at_id", orders.c.updated_at, orders.c.id)

payments = sa.Table(
    "payments",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("order_id", Uuid, nullable=False),
    sa.Column("amount", Money, nullable=False),
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("captured_at", Timestamp),
    sa.Column("provider_ref", sa.String(64)),  # internal
    sa.Column("card_fingerprint", sa.String(64)),  # internal
    sa.Column("updated_at", Timestamp, nullable=False),
)
sa.Index("payments_updated_at_id", payments.c.updated_at, payments.c.id)

INTERNAL_COLUMNS = {
    "products": ["cost", "supplier_notes", "updated_by"],
    "prices": ["margin", "updated_by"],
    "inventory": ["reorder_level", "audit_note"],
    "orders": ["internal_notes", "fraud_score"],
    "payments": ["provider_ref", "card_fingerprint"],
}
TABLES = [products, prices, inventory, orders, payments]


def db_now(engine_or_dialect: Engine | str) -> sa.ColumnElement[object]:
    """The database's own clock, with microseconds on every dialect."""
    name = engine_or_dialect if isinstance(engine_or_dialect, str) else engine_or_dialect.dialect.name
    if name in ("mysql", "mariadb"):
        return sa.literal_column("NOW(6)")
    return sa.func.now()


def create_schema(engine: Engine) -> None:
    """Create the demo tables (idempotent)."""
    metadata.create_all(engine)


def drop_schema(engine: Engine) -> None:
    metadata.drop_all(engine)
