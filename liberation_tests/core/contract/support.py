"""The items table and its contract, shared by the contract tests of every pattern.

``sku`` is the stream key but not the table's primary key, so the source can
hold a duplicate key; ``qty`` is text in the source (JSON columns are published as
their JSON text), so any value in it breaks ``type: int``: valid rows leave it empty.  Each violation kind is one row that breaks one rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from liberation_tests.fix_kafka import consume_all

CONTRACT: dict[str, Any] = {
    "sku": {"type": "str", "nullable": False},
    "qty": {"type": "int"},
    "price": {"type": "decimal", "nullable": False, "ge": 0},
    "status": {"type": "str", "isin": ["new", "paid", "shipped"]},
}
MODEL = "liberation_tests.core.contract.models:Item"

VALID = [("A", 1, "9.50", "new"), ("B", 2, "3.00", "paid"), ("C", 3, "0.00", "shipped")]
VIOLATIONS: dict[str, tuple[tuple[Any, ...], str]] = {
    "type": (("T", "five", "1.00", "new"), "qty: type:int"),
    "null": (("N", 1, None, "new"), "price: not_nullable"),
    "range": (("R", 1, "-1.00", "new"), "price: greater_than_or_equal_to(0"),
    "enum": (("E", 1, "1.00", "lost"), "status: isin("),
    "duplicate": (("A", 5, "1.00", "new"), "sku: unique_key"),
}

PG_DDL = """CREATE TABLE items (id serial PRIMARY KEY, sku text NOT NULL, qty text, price numeric(10, 2),
            status text, updated_at timestamptz NOT NULL DEFAULT now() - interval '1 minute')"""


def items_stream(patterns: list[str], contract: Any = None, **extra: Any) -> dict[str, Any]:
    return {
        "source": "pg",
        "table": "items",
        "key": ["sku"],
        "patterns": patterns,
        "contract": CONTRACT if contract is None else contract,
        **extra,
    }


def insert_items(engine: sa.Engine, rows: list[tuple[Any, ...]]) -> None:
    with engine.begin() as c:
        for sku, qty, price, status in mysql_rows(rows):
            c.execute(
                sa.text("INSERT INTO items (sku, qty, price, status) VALUES (:s, :q, :p, :st)"),
                {"s": sku, "q": qty, "p": price, "st": status},
            )


@dataclass
class Outcome:
    """What reached the stream's topic and its quarantine."""

    published: list[dict[str, Any]]
    """After-images of the published events (tombstones excluded)."""
    quarantined: list[dict[str, Any]]
    """Quarantine record values."""
    headers: list[dict[str, bytes]]


def outcome(bootstrap: str, topic: str) -> Outcome:
    messages = [m for m in consume_all(bootstrap, topic) if m.value is not None]
    quarantine = consume_all(bootstrap, topic + ".quarantine")
    return Outcome(
        [m.envelope["after"] for m in messages], [m.envelope for m in quarantine], [m.headers for m in messages]
    )


def assert_violation_handled(result: Outcome, kind: str, rows_in: int) -> None:
    """Violating rows in the quarantine with their reasons; valid rows published; nothing lost."""
    (sku, *_), reason = VIOLATIONS[kind]
    quarantined_skus = sorted(q["key"]["sku"] for q in result.quarantined)
    expected = [sku, sku] if kind == "duplicate" else [sku]
    assert quarantined_skus == expected
    for record in result.quarantined:
        assert any(r.startswith(reason) for r in record["failed_checks"]), record["failed_checks"]
        assert record["row"]["sku"] == sku
        where = record["position"] or {k: v for k, v in record["source"].items() if k in ("lsn", "file", "pos", "gtid")}
        assert where, f"no source position in {record}"
    published = sorted(row["sku"] for row in result.published)
    assert published == sorted({s for s, *_ in VALID} - ({sku} if kind == "duplicate" else set()))
    assert len(result.published) + len(result.quarantined) == rows_in


MYSQL_DDL = """CREATE TABLE items (id int AUTO_INCREMENT PRIMARY KEY, sku varchar(20) NOT NULL, qty varchar(20),
               price decimal(10, 2), status varchar(20),
               updated_at datetime(6) NOT NULL DEFAULT (now(6) - interval 1 minute))"""
"""MariaDB has no typed JSON (its JSON is text): ``qty`` is text, so any value in it breaks ``type: int``."""


def mysql_rows(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The rows as stored (both servers): valid rows leave ``qty`` empty, the type violation keeps its text."""
    return [(sku, qty if isinstance(qty, str) else None, price, status) for sku, qty, price, status in rows]


def insert_items_mysql(engine: sa.Engine, rows: list[tuple[Any, ...]]) -> None:
    with engine.begin() as c:
        for sku, qty, price, status in rows:
            c.execute(
                sa.text("INSERT INTO items (sku, qty, price, status) VALUES (:s, :q, :p, :st)"),
                {"s": sku, "q": qty, "p": price, "st": status},
            )
