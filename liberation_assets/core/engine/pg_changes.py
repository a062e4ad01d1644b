"""PostgreSQL CDC: one stream's table and pending events, and turning pgoutput row changes into change events.

Pure mapping (``change_events``) apart from two reads: the TOAST re-read of
rows whose unchanged values the log did not carry (``reread_unchanged``), and
the live keys of a topic that a truncate deletes (``live_keys``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from liberation_assets.core.contract.formats import decode_value
from liberation_assets.core.contract.serialize import dumps
from liberation_assets.core.engine.writer import StreamWriter
from liberation_assets.core.events import CREATE, DELETE, UPDATE, ChangeEvent
from liberation_assets.core.publish.reading import committed_batches
from liberation_assets.core.readers.pg_types import PgType, SqlTypeName, Unconvertible
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
    types: Callable[[int], PgType] | None = None
    """Resolves a type OID of the log (a domain's to its base type), from the catalog."""
    unchanged_keys: dict[bytes, tuple[Any, ...]] = field(default_factory=dict)
    """Key JSON → the key's source text, of pending events that lack an unchanged TOAST value (for the re-read)."""

    def build_plan(self, relation: Relation) -> None:
        self.plan = RowPlan.build(
            relation,
            self.projection,
            self.table.key_columns,
            self.table.key_public,
            self.name,
            types=self.types,
            zone=self.zone,
        )


def change_events(stream: CdcStream, message: Insert | Update | Delete, tx: Transaction, lsn: int) -> list[ChangeEvent]:
    """The events of one row change; an update still missing an unchanged TOAST value marks the stream."""
    plan = stream.plan
    assert plan is not None
    source = {"snapshot": "false", "lsn": lsn, "txId": tx.xid, "sequence": [tx.final_lsn, tx.index]}
    ts = tx.commit_ms
    if message.__class__ is Update and message.old_kind == "O":
        # The common update under REPLICA IDENTITY FULL, in one call: both images, each value converted once.
        full_old = message.old
        assert full_old is not None
        new = message.new
        if UNCHANGED in new:
            new = fill_unchanged(new, full_old)
            if UNCHANGED in new:
                return _events_one_by_one(stream, message, source, ts)
        images = plan.update_rows(new, full_old)
        if images is not None:
            after, before, key, old_key = images
            if old_key == key:
                return [ChangeEvent(UPDATE, key, before, after, ts, source)]
            return [
                ChangeEvent(DELETE, old_key, before or dict(old_key), None, ts, source),
                ChangeEvent(CREATE, key, None, after, ts, source),
            ]
    return _events_one_by_one(stream, message, source, ts)


def _events_one_by_one(
    stream: CdcStream, message: Insert | Update | Delete, source: dict[str, Any], ts: int
) -> list[ChangeEvent]:
    """Any change, each image converted on its own, with the values that cannot be carried named."""
    plan = stream.plan
    assert plan is not None
    key_public = stream.table.key_public
    events: list[ChangeEvent]
    problems: list[str] = []  # values that cannot be carried: the row goes to the quarantine
    past: list[str] = []  # ... unless only the before-image has them: the new state is publishable, it keeps their text
    if isinstance(message, Insert):
        after = plan.row(message.new, problems)
        events = [ChangeEvent(CREATE, {k: after[k] for k in key_public}, None, after, ts, source)]
    elif isinstance(message, Update):
        full_old = message.old if message.old_kind == "O" else None
        new = fill_unchanged(message.new, full_old)
        after = plan.row(new, problems)
        before = plan.row(full_old, past) if full_old is not None else None
        key = {k: after[k] for k in key_public}
        if UNCHANGED in new:
            stream.unchanged = True
            stream.unchanged_keys[dumps(key)] = plan.key_text(new)
        old_key = plan.key_of(message.old, problems) if message.old is not None else key
        if old_key != key:
            # A primary-key change: a delete of the old key, then a create of the new one.
            events = [
                ChangeEvent(DELETE, old_key, before or dict(old_key), None, ts, source),
                ChangeEvent(CREATE, key, None, after, ts, source),
            ]
        else:
            events = [ChangeEvent(UPDATE, key, before, after, ts, source)]
    else:
        key = plan.key_of(message.old, problems)
        before = plan.row(message.old, past) if message.old_kind == "O" else dict(key)
        events = [ChangeEvent(DELETE, key, before, None, ts, source)]
    if problems:
        for event in events:
            event.problems = list(dict.fromkeys(problems))
    return events


def reread_unchanged(engine: Engine | None, stream: CdcStream) -> list[ChangeEvent]:
    """Fill unchanged TOAST values by reading the rows again; a row gone since is left to its later delete."""
    assert engine is not None
    todo = [e for e in stream.pending if e.after is not None and UNCHANGED in e.after.values()]
    if not todo:
        return stream.pending
    table = stream.table
    types = table.pg_types or {}
    wanted = {stream.unchanged_keys[dumps(e.key)] for e in todo}
    # Found again by their source text cast back to the key's type: the index serves, whatever the type.
    found_again = [
        sa.and_(
            *[
                expr == sa.cast(sa.literal(text, sa.Text), SqlTypeName(types[c].sql_name))
                for expr, c, text in zip(table.key_exprs, table.key_columns, texts)
            ]
        )
        for texts in wanted
    ]
    query = sa.select(*table.select_list(with_cursor=False)).where(sa.or_(*found_again))
    with engine.connect() as connection:
        current = {dumps({k: r[k] for k in table.key_public}): r for r in connection.execute(query).mappings()}
    kept = []
    for event in stream.pending:
        if event.after is not None and UNCHANGED in event.after.values():
            row = current.get(dumps(event.key))
            if row is None:
                continue
            for name in unchanged_columns(event.after):
                value = row[name]
                if isinstance(value, Unconvertible):
                    value = value.text
                    event.problems = [*(event.problems or []), f"column {name}: {row[name].reason}"]
                event.after[name] = value
        kept.append(event)
    stream.unchanged_keys.clear()
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
            live[msg.key() or b""] = (decoded := decode_value(value)) is not None and decoded.get("after") is not None
    return (key for key, is_live in live.items() if is_live)
