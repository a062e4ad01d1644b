"""Helpers shared by the outbox tests: a spec with one outbox, its YAML form, a test contract."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
import yaml
from pydantic import Field

from liberation_assets.core.outbox import DomainEvent, register
from liberation_assets.core.outbox.table import outbox_table
from liberation_assets.core.spec import Spec

ROUTE = "{topic_prefix}.outbox.event.{aggregatetype}"


@register
class CounterBumped(DomainEvent):
    """A test aggregate: a counter whose events carry their per-aggregate number ``n``."""

    aggregate_type = "counter"
    aggregate_key = "counter_id"

    counter_id: str = Field(min_length=1)
    n: int = Field(ge=1)
    writer: int = Field(ge=0)


def outbox_spec(make_spec: Any, *, pg: str | None = None, mysql: str | None = None, partitions: int = 1,
                **outbox: Any) -> Spec:
    """A spec with one outbox ``ob`` on the test database, routed under the test's unique topic prefix."""
    settings = {"source": "pg" if pg else "mysql", "route": ROUTE, **outbox}
    return make_spec(pg=pg, mysql=mysql, outboxes={"ob": settings}, kafka={"partitions": partitions})


def topic(spec: Spec, aggregatetype: str) -> str:
    return ROUTE.format(topic_prefix=spec.kafka.topic_prefix, aggregatetype=aggregatetype)


def spec_yaml(spec: Spec) -> str:
    """The spec as a YAML file, for relays run as subprocesses."""

    def plain(value: Any) -> Any:
        if isinstance(value, timedelta):
            return f"{value.total_seconds()}s"
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    return yaml.safe_dump(plain(spec.model_dump(mode="python", by_alias=True, exclude_defaults=True)), sort_keys=False)


def pending_rows(engine: sa.Engine, table: str = "outbox") -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(outbox_table(table))).scalar_one())
