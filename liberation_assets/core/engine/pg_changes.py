"""PostgreSQL CDC: one stream's table and pending events, and turning pgoutput row changes into change events.

Pure mapping (``change_events``) apart from two reads: the TOAST re-read of
rows whose unchanged values the log did not carry (``reread_unchanged``), and
the live keys of a topic that a truncate deletes (``live_keys``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from liberation_assets.core.contract.serialize import dumps, normalize_row
from liberation_assets.core.engine.writer import StreamWriter
from liberation_assets.core.events import CREATE, DELETE, UPDATE, ChangeEvent
from liberation_assets.core.publish.reading import committed_batches
from liberation_assets.core.readers.pgoutput import UNCHANGED, Delete, Insert, Relation, Update
from liberation_assets.core.readers.pgoutput.rows import RowPlan, fill_unchanged, unchanged_columns
from liberation_assets.core.readers.pgoutput.stream import Transaction
from liberation_assets.core.readers.table import ProjectedTable

STABLE_WAIT_SECONDS = 180.0
"""Longer than the publisher's transaction.timeout.ms (120 s): the broker aborts a crashed writer's transaction by then."""


@dataclass
class CdcStream:
    """One CDC stream of the source: its table, its writer and its pending events."""

    name: str
    table: ProjectedTable
    writer: StreamWriter
    schema: str
    projection: dict[str, str] | None
    reread: bool
    zone: Any
    pending: list[ChangeEvent] = field(default_factory=list)
    unchanged: bool = False
    """Some pending event still lacks an unchanged TOAST value."""
    plan: RowPlan | None = None

    def build_plan(self, relation: Relation) -> None:
        self.plan = RowPlan.build(relation, self.projection, self.table.key_columns, self.table.key_public, self.name)


def change_events(stream: CdcStream, message: Insert | Update | Delete, tx: Transaction, lsn: int) -> list[ChangeEvent]:
    """The events of one row change; an update still missing an unchanged TOAST value marks the stream."""
    plan = stream.plan
    assert plan is not None
    source = {"snapshot": "false", "lsn": lsn, "txId": tx.xid, "sequence": [tx.final_lsn, tx.index]}
    ts = tx.commit_ms
    zone, key_public = stream.zone, stream.table.key_public
    events: list[ChangeEvent]
    if isinstance(message, Insert):
        after = normalize_row(plan.row(message.new), zone)
        events = [ChangeEvent(CREATE, {k: after[k] for k in key_public}, None, after, ts, source)]
    elif isinstance(message, Update):
        full_old = message.old if message.old_kind == "O" else None
        new = fill_unchanged(message.new, full_old)
        if UNCHANGED in new:
            stream.unchanged = True
        after = normalize_row(plan.row(new), zone)
        before = normalize_row(plan.row(full_old), zone) if full_old is not None else None
        key = {k: after[k] for k in key_public}
        old_key = normalize_row(plan.key_of(message.old), zone) if message.old is not None else key
        if old_key != key:
            # A primary-key change: a delete of the old key, then a create of the new one.
            events = [ChangeEvent(DELETE, old_key, before or dict(old_key), None, ts, source),
                      ChangeEvent(CREATE, key, None, after, ts, source)]
        else:
            events = [ChangeEvent(UPDATE, key, before, after, ts, source)]
    else:
        key = normalize_row(plan.key_of(message.old), zone)
        before = normalize_row(plan.row(message.old), zone) if message.old_kind == "O" else dict(key)
        events = [ChangeEvent(DELETE, key, before, None, ts, source)]
    return events


def reread_unchanged(engine: Engine | None, stream: CdcStream) -> list[ChangeEvent]:
    """Fill unchanged TOAST values by reading the rows again; a row gone since is left to its later delete."""
    assert engine is not None
    todo = [e for e in stream.pending if e.after is not None and UNCHANGED in e.after.values()]
    if not todo:
        return stream.pending
    table = stream.table
    keys = {tuple(e.key[k] for k in table.key_public) for e in todo}
    query = sa.select(*table.select_list(with_cursor=False)).where(
        sa.tuple_(*table.key_exprs).in_(list(keys)))
    with engine.connect() as connection:
        current = {dumps({k: r[k] for k in table.key_public}): r
                   for r in (normalize_row(dict(m), stream.zone) for m in connection.execute(query).mappings())}
    kept = []
    for event in stream.pending:
        if event.after is not None and UNCHANGED in event.after.values():
            row = current.get(dumps(event.key))
            if row is None:
                continue
            for name in unchanged_columns(event.after):
                event.after[name] = row[name]
        kept.append(event)
    return kept


def live_keys(bootstrap_servers: str, topic: str) -> Iterator[bytes]:
    """Keys whose latest record in the topic is a live row (read_committed); keeps keys only, not values.

    Our own producer has no transaction open here, so one that holds the topic
    back is a killed writer's: wait for it to end rather than miss keys behind it.
    """
    live: dict[bytes, bool] = {}
    for batch in committed_batches(bootstrap_servers, topic, settle_seconds=STABLE_WAIT_SECONDS, must_settle=True):
        for msg in batch:
            value = msg.value()
            live[msg.key() or b""] = value is not None and orjson.loads(value).get("after") is not None
    return (key for key, is_live in live.items() if is_live)
