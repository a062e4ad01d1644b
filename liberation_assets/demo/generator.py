"""Realistic demo data: an initial data set and a steady write load.

The load mixes inserts, updates, hard deletes, and short and long
transactions, because those are where liberation tools lose rows.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from liberation_assets.demo.schema import db_now, inventory, orders, payments, prices, products

CATEGORIES = ["garden", "kitchen", "tools", "toys", "books", "outdoor", "bath", "office"]
WAREHOUSES = ["ams-1", "ber-2", "dub-1"]
CURRENCIES = ["EUR", "USD"]
STATUSES = ["placed", "paid", "shipped", "delivered", "cancelled"]
WORDS = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore".split()
NAMES = ["Gartenschlauch", "Crème brûlée torch", "Шуруповёрт", "水壶", "Smörgåsbord tray", "Piñata", "Café crème mug"]


def _money(rng: random.Random, low: float = 1, high: float = 500) -> Decimal:
    return Decimal(f"{rng.uniform(low, high):.2f}")


def _product_row(rng: random.Random, sku_number: int, now: Any) -> dict[str, Any]:
    return {
        "sku": f"SKU-{sku_number:08d}",
        "name": f"{rng.choice(NAMES)} {sku_number}",
        "description": " ".join(rng.choices(WORDS, k=rng.randint(5, 40))),
        "category": rng.choice(CATEGORIES),
        "images": {
            "main": f"https://img.example/{sku_number}.jpg",
            "thumbs": [f"t{i}.jpg" for i in range(rng.randint(0, 3))],
        },
        "active": True,
        "cost": _money(rng, 0.5, 200),
        "supplier_notes": "internal: supplier " + rng.choice(WORDS),
        "created_at": now,
        "updated_at": now,
        "updated_by": "seed",
    }


CONTRACT_BREAKERS = 3
"""Demo products whose category is outside the contract's list: the quarantine, its check and the re-drive have rows to show."""


def seed_contract_breakers(engine: Engine, count: int = CONTRACT_BREAKERS) -> int:
    """Insert ``count`` products in the category ``gadgets``, which the demo spec's contract does not allow.

    They go to the quarantine (``liberation quarantine products``); fix them in
    the source and ``liberation redrive products`` publishes them.
    """
    rng = random.Random(13)
    with engine.begin() as connection:
        start = connection.execute(sa.select(sa.func.coalesce(sa.func.max(products.c.id), 0))).scalar_one()
        now = connection.execute(sa.select(db_now(engine))).scalar_one()
        rows = [{**_product_row(rng, 90_000_000 + start + i, now), "category": "gadgets"} for i in range(count)]
        connection.execute(products.insert(), rows)
    return count


@dataclass
class SeedReport:
    products: int = 0
    prices: int = 0
    inventory: int = 0
    orders: int = 0
    payments: int = 0

    @property
    def total(self) -> int:
        return self.products + self.prices + self.inventory + self.orders + self.payments


def seed(
    engine: Engine,
    *,
    products_count: int = 1000,
    orders_count: int | None = None,
    seed_value: int = 7,
    progress: Callable[[int], None] | None = None,
) -> SeedReport:
    """Insert an initial data set; each product gets prices and stock, each order a payment."""
    rng = random.Random(seed_value)
    orders_count = products_count if orders_count is None else orders_count
    report = SeedReport()
    chunk = 2000
    with engine.begin() as connection:
        start = connection.execute(sa.select(sa.func.coalesce(sa.func.max(products.c.id), 0))).scalar_one()
    for offset in range(0, products_count, chunk):
        count = min(chunk, products_count - offset)
        with engine.begin() as connection:
            now = connection.execute(sa.select(db_now(engine))).scalar_one()
            rows = [_product_row(rng, start + offset + i + 1, now) for i in range(count)]
            connection.execute(products.insert(), rows)
            ids = (
                connection.execute(sa.select(products.c.id).where(products.c.sku.in_([r["sku"] for r in rows])))
                .scalars()
                .all()
            )
            price_rows = [
                {
                    "product_id": pid,
                    "currency": cur,
                    "amount": _money(rng),
                    "valid_from": now,
                    "margin": Decimal(f"{rng.uniform(0.05, 0.6):.4f}"),
                    "updated_at": now,
                    "updated_by": "seed",
                }
                for pid in ids
                for cur in CURRENCIES
            ]
            stock_rows = [
                {
                    "product_id": pid,
                    "warehouse": wh,
                    "quantity": rng.randint(0, 500),
                    "reserved": 0,
                    "reorder_level": 20,
                    "audit_note": "seeded",
                    "updated_at": now,
                }
                for pid in ids
                for wh in rng.sample(WAREHOUSES, 2)
            ]
            connection.execute(prices.insert(), price_rows)
            connection.execute(inventory.insert(), stock_rows)
        report.products += count
        report.prices += len(price_rows)
        report.inventory += len(stock_rows)
        if progress:
            progress(report.total)
    for offset in range(0, orders_count, chunk):
        count = min(chunk, orders_count - offset)
        with engine.begin() as connection:
            now = connection.execute(sa.select(db_now(engine))).scalar_one()
            order_rows = [_order_row(rng, now) for _ in range(count)]
            connection.execute(orders.insert(), order_rows)
            connection.execute(payments.insert(), [_payment_row(rng, o, now) for o in order_rows])
        report.orders += count
        report.payments += count
        if progress:
            progress(report.total)
    return report


def _order_row(rng: random.Random, now: Any) -> dict[str, Any]:
    return {
        "id": uuid.UUID(int=rng.getrandbits(128), version=4),
        "customer_id": rng.randint(1, 50_000),
        "status": "placed",
        "total": _money(rng, 5, 2000),
        "currency": rng.choice(CURRENCIES),
        "placed_at": now,
        "shipping": {"city": rng.choice(["Zürich", "Kraków", "São Paulo", "東京"]), "express": rng.random() < 0.2},
        "note": rng.choice([None, "leave at door", "🎁 gift wrap please"]),
        "internal_notes": "risk reviewed",
        "fraud_score": round(rng.random(), 4),
        "updated_at": now,
    }


def _payment_row(rng: random.Random, order: dict[str, Any], now: Any) -> dict[str, Any]:
    return {
        "order_id": order["id"],
        "amount": order["total"],
        "method": rng.choice(["card", "paypal", "invoice"]),
        "status": "pending",
        "captured_at": None,
        "provider_ref": f"psp_{rng.getrandbits(48):x}",
        "card_fingerprint": f"fp_{rng.getrandbits(64):x}",
        "updated_at": now,
    }


@dataclass
class LoadReport:
    """What the write load did, by kind."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, n: int = 1) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n


class WriteLoad:
    """A steady mixed write load on the demo shop, in background threads, until stopped."""

    def __init__(
        self,
        engine: Engine,
        *,
        seed_value: int = 11,
        threads: int = 2,
        pause: float = 0.01,
        long_transaction_seconds: float = 1.5,
        on_order: Callable[[Connection, dict[str, Any]], None] | None = None,
        paused: Callable[[], bool] | None = None,
    ):
        self.engine = engine
        self.paused = paused
        """While this says True the load writes nothing (and holds no transaction open): a quiet source, on demand."""
        self.rng = random.Random(seed_value)
        self.threads = threads
        self.pause = pause
        self.long_transaction_seconds = long_transaction_seconds
        self.on_order = on_order
        self.report = LoadReport()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.errors: list[BaseException] = []

    def __enter__(self) -> "WriteLoad":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        for index in range(self.threads):
            worker = threading.Thread(target=self._run, args=(random.Random(self.rng.random() + index),), daemon=True)
            worker.start()
            self._workers.append(worker)

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=30)
        if self.errors:
            raise RuntimeError(f"write load failed: {self.errors[0]!r}") from self.errors[0]

    def run_for(self, seconds: float) -> LoadReport:
        self.start()
        time.sleep(seconds)
        self.stop()
        return self.report

    def _run(self, rng: random.Random) -> None:
        actions = [
            (self._insert_product, 3),
            (self._update_price, 6),
            (self._adjust_stock, 6),
            (self._place_order, 4),
            (self._capture_payment, 3),
            (self._delete_stock, 1),
            (self._delete_product, 1),
            (self._long_transaction, 1),
        ]
        population = [a for a, w in actions for _ in range(w)]
        while not self._stop.is_set():
            if self.paused is not None and self.paused():
                self._stop.wait(0.5)
                continue
            action = rng.choice(population)
            try:
                with self.engine.begin() as connection:
                    kind = action(connection, rng)
                if kind:
                    with self._lock:
                        self.report.add(kind)
            except sa.exc.DBAPIError as exc:
                if _is_retryable(exc):
                    continue
                self.errors.append(exc)
                return
            except Exception as exc:  # a bug in the load itself must not pass silently
                self.errors.append(exc)
                return
            time.sleep(self.pause)

    def _random_id(self, connection: Connection, table: sa.Table, column: sa.Column[Any]) -> Any:
        low_high = connection.execute(sa.select(sa.func.min(column), sa.func.max(column))).one()
        if low_high[0] is None:
            return None
        return connection.execute(
            sa.select(column).where(column >= random.randint(low_high[0], low_high[1])).order_by(column).limit(1)
        ).scalar()

    def _insert_product(self, connection: Connection, rng: random.Random) -> str:
        now = connection.execute(sa.select(db_now(self.engine))).scalar_one()
        row = _product_row(rng, rng.randint(10**7, 10**8 - 1), now)
        row["sku"] = f"SKU-L{uuid.uuid4().hex[:12]}"
        product_id = (
            connection.execute(products.insert().values(**row).returning(products.c.id)).scalar_one()
            if self.engine.dialect.name == "postgresql"
            else connection.execute(products.insert().values(**row)).inserted_primary_key[0]
        )
        connection.execute(
            prices.insert(),
            [
                {
                    "product_id": product_id,
                    "currency": c,
                    "amount": _money(rng),
                    "valid_from": now,
                    "margin": Decimal("0.2500"),
                    "updated_at": now,
                    "updated_by": "load",
                }
                for c in CURRENCIES
            ],
        )
        return "insert_product"

    def _update_price(self, connection: Connection, rng: random.Random) -> str | None:
        product_id = self._random_id(connection, prices, prices.c.product_id)
        if product_id is None:
            return None
        connection.execute(
            prices.update()
            .where(prices.c.product_id == product_id)
            .values(
                amount=_money(rng),
                margin=Decimal(f"{rng.uniform(0.05, 0.6):.4f}"),
                updated_at=db_now(self.engine),
                updated_by="load",
            )
        )
        return "update_price"

    def _adjust_stock(self, connection: Connection, rng: random.Random) -> str | None:
        product_id = self._random_id(connection, inventory, inventory.c.product_id)
        if product_id is None:
            return None
        connection.execute(
            inventory.update()
            .where(inventory.c.product_id == product_id)
            .values(
                quantity=inventory.c.quantity + rng.randint(-5, 20),
                audit_note="load adjust",
                updated_at=db_now(self.engine),
            )
        )
        return "adjust_stock"

    def _place_order(self, connection: Connection, rng: random.Random) -> str:
        now = connection.execute(sa.select(db_now(self.engine))).scalar_one()
        order = _order_row(rng, now)
        order["id"] = uuid.uuid4()
        connection.execute(orders.insert().values(**order))
        connection.execute(payments.insert().values(**_payment_row(rng, order, now)))
        if self.on_order is not None:
            self.on_order(connection, order)
        return "place_order"

    def _capture_payment(self, connection: Connection, rng: random.Random) -> str | None:
        payment_id = self._random_id(connection, payments, payments.c.id)
        if payment_id is None:
            return None
        now = db_now(self.engine)
        connection.execute(
            payments.update()
            .where(payments.c.id == payment_id)
            .values(status="captured", captured_at=now, updated_at=now)
        )
        order_id = connection.execute(sa.select(payments.c.order_id).where(payments.c.id == payment_id)).scalar()
        connection.execute(
            orders.update().where(orders.c.id == order_id).values(status=rng.choice(STATUSES[1:]), updated_at=now)
        )
        return "capture_payment"

    def _delete_stock(self, connection: Connection, rng: random.Random) -> str | None:
        product_id = self._random_id(connection, inventory, inventory.c.product_id)
        if product_id is None:
            return None
        connection.execute(inventory.delete().where(inventory.c.product_id == product_id))
        return "delete_stock"

    def _delete_product(self, connection: Connection, rng: random.Random) -> str | None:
        product_id = self._random_id(connection, products, products.c.id)
        if product_id is None:
            return None
        connection.execute(prices.delete().where(prices.c.product_id == product_id))
        connection.execute(inventory.delete().where(inventory.c.product_id == product_id))
        connection.execute(products.delete().where(products.c.id == product_id))
        return "delete_product"

    def _long_transaction(self, connection: Connection, rng: random.Random) -> str | None:
        """Write early with the transaction's start time, commit late: the classic late commit."""
        product_id = self._random_id(connection, products, products.c.id)
        if product_id is None:
            return None
        connection.execute(
            products.update()
            .where(products.c.id == product_id)
            .values(name=f"late {rng.randint(0, 10**6)} ✓", updated_at=db_now(self.engine), updated_by="long-tx")
        )
        self._stop.wait(self.long_transaction_seconds)
        return "long_transaction"


def _is_retryable(exc: sa.exc.DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return any(
        s in text for s in ("deadlock", "could not serialize", "lock wait timeout", "duplicate key", "duplicate entry")
    )
