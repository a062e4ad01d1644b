"""The spec our patterns run with: one source, the orders table as a query stream and a CDC stream, one outbox."""

from __future__ import annotations

from bench.dataset import DATABASE, DEMO_ORDERS, ORDERS, OUTBOX, PRODUCTS
from liberation_assets.core.spec import Spec
from liberation_assets.stack import StackSettings

SOURCE = "bench"
QUERY_STREAM = "orders_q"
CDC_STREAM = "orders_cdc"
# The demo shop's orders and products beside bench_orders: (query stream, CDC stream, table, contract).
STATUSES = ["placed", "paid", "shipped", "delivered", "cancelled"]
DEMO_STREAMS = [
    (
        "demo_orders_q",
        "demo_orders_cdc",
        DEMO_ORDERS,
        {
            "id": {"type": "uuid", "nullable": False},
            "status": {"type": "str", "nullable": False, "isin": STATUSES},
            "total": {"type": "decimal", "nullable": False, "ge": 0},
            "currency": {"type": "str", "nullable": False, "max_length": 3},
        },
    ),
    (
        "products_q",
        "products_cdc",
        PRODUCTS,
        {
            "id": {"type": "int", "nullable": False, "ge": 1},
            "sku": {"type": "str", "nullable": False, "max_length": 32},
            "name": {"type": "str", "nullable": False},
            "active": {"type": "bool", "nullable": False},
        },
    ),
]
QUERY_STREAMS = [QUERY_STREAM, *(query for query, _cdc, _table, _contract in DEMO_STREAMS)]
OUTBOX_NAME = "orders_outbox"
MARIA_SOURCE = "bench_maria"
MARIA_STREAM = "orders_maria"
AGGREGATE = "order"

# The contract users would write for this table; validation is part of the per-event cost we measure.
CONTRACT = {
    "id": {"type": "int", "nullable": False, "ge": 1},
    "status": {"type": "str", "nullable": False, "isin": ["placed", "paid", "shipped", "delivered", "cancelled"]},
    "total": {"type": "decimal", "nullable": False, "ge": 0},
    "currency": {"type": "str", "nullable": False, "max_length": 3},
}


def query_topic(prefix: str) -> str:
    return f"{prefix}.q.{ORDERS}"


def cdc_topic(prefix: str) -> str:
    return f"{prefix}.cdc.{ORDERS}"


def query_topics(prefix: str) -> list[str]:
    """Every topic of the query streams: the orders and the demo tables."""
    return [query_topic(prefix), *(f"{prefix}.q.{table}" for _query, _cdc, table, _contract in DEMO_STREAMS)]


def cdc_topics(prefix: str) -> list[str]:
    """Every topic of the CDC streams: the orders and the demo tables."""
    return [cdc_topic(prefix), *(f"{prefix}.cdc.{table}" for _query, _cdc, table, _contract in DEMO_STREAMS)]


def mariadb_topic(prefix: str) -> str:
    return f"{prefix}.maria.{ORDERS}"


def outbox_topic(prefix: str) -> str:
    return f"{prefix}.outbox.{AGGREGATE}"


def bench_spec(stack: StackSettings, prefix: str, slot: str) -> Spec:
    url = (
        f"postgresql+psycopg://{stack.pg_user}:${{BENCH_PG_PASSWORD:-{stack.pg_password}}}"
        f"@{stack.pg_host}:{stack.pg_port}/{DATABASE}"
    )
    maria_url = (
        f"mysql+pymysql://{stack.mysql_user}:${{BENCH_MYSQL_PASSWORD:-{stack.mysql_password}}}"
        f"@{stack.mysql_host}:{stack.mysql_port}/{DATABASE}"
    )
    return Spec.model_validate(
        {
            "kafka": {
                "bootstrap_servers": stack.kafka_bootstrap,
                "topic_prefix": prefix,
                "positions_topic": f"{prefix}.positions",
                "partitions": 1,
            },
            "sources": {
                SOURCE: {"url": url, "cdc": {"slot": slot, "publication": f"{slot}_pub"}},
                MARIA_SOURCE: {"url": maria_url},
            },
            "streams": {
                QUERY_STREAM: {
                    "source": SOURCE,
                    "table": ORDERS,
                    "key": ["id"],
                    "cursor": "updated_at",
                    "patterns": ["snapshot", "query"],
                    "topic": query_topic(prefix),
                    "contract": CONTRACT,
                },
                CDC_STREAM: {
                    "source": SOURCE,
                    "table": ORDERS,
                    "key": ["id"],
                    "cursor": "updated_at",
                    "patterns": ["cdc"],
                    "topic": cdc_topic(prefix),
                    "contract": CONTRACT,
                },
                **{
                    query: {
                        "source": SOURCE,
                        "table": table,
                        "key": ["id"],
                        "cursor": "updated_at",
                        "patterns": ["snapshot", "query"],
                        "topic": f"{prefix}.q.{table}",
                        "contract": contract,
                    }
                    for query, _cdc, table, contract in DEMO_STREAMS
                },
                **{
                    cdc: {
                        "source": SOURCE,
                        "table": table,
                        "key": ["id"],
                        "cursor": "updated_at",
                        "patterns": ["cdc"],
                        "topic": f"{prefix}.cdc.{table}",
                        "contract": contract,
                    }
                    for _query, cdc, table, contract in DEMO_STREAMS
                },
                MARIA_STREAM: {
                    "source": MARIA_SOURCE,
                    "table": ORDERS,
                    "key": ["id"],
                    "cursor": None,
                    "patterns": ["cdc"],
                    "topic": mariadb_topic(prefix),
                    "contract": CONTRACT,
                },
            },
            "outboxes": {
                OUTBOX_NAME: {"source": SOURCE, "table": OUTBOX, "route": f"{prefix}.outbox.{{aggregatetype}}"}
            },
        }
    )
