"""The ``debezium`` value format: Debezium's JSON envelope, with the before image Flink's ``debezium-json`` needs.

Apart from ``formats.py`` (which format a stream has) because ``connect-json`` wraps the same envelope and
decides a missing before image the same way (``flink_safe``).
"""

from __future__ import annotations

from typing import Any

from liberation_assets.core.contract.serialize import dumps, envelope_bytes
from liberation_assets.core.events import CREATE, DELETE, TRUNCATE, UPDATE, ChangeEvent, Row


class DebeziumFormat:
    """The Debezium JSON envelope, with every update carrying a ``before`` (Flink refuses one without).

    An update whose previous image the reader could not see is published as:

    - ``c`` from the query pattern: a poll reads a row's current state and cannot tell an insert from an
      update, so it publishes what it saw as a row to upsert by key (Flink's debezium-json: INSERT; the JDBC
      sink: upsert), never an update that claims a change it did not observe;
    - ``u`` with the key as ``before`` from CDC (a table without REPLICA IDENTITY FULL, ``toast: reread``),
      the before image Debezium itself gives a delete under the default replica identity.

    A truncate publishes no ``t`` event, as Debezium by default (``skipped.operations=t``) and as Flink needs
    (it refuses ``t``): the delete of every key that follows it, with ``source.truncate``, carries it.
    """

    name = "debezium"

    def __init__(self, pattern: str = "cdc"):
        self.pattern = pattern

    def key(self, key: Row) -> bytes:
        return dumps(key)

    def value(self, event: ChangeEvent, source_base: dict[str, Any], processed_ms: int) -> bytes | None:
        if event.op == TRUNCATE:
            return None  # Debezium's default (skipped.operations=t); the deletes that follow carry it
        return envelope_bytes(flink_safe(event, self.pattern), source_base, processed_ms)


def flink_safe(event: ChangeEvent, pattern: str) -> ChangeEvent:
    """The event with an update's missing before image decided (see ``DebeziumFormat``); a delete without
    one (a reconciliation that found a key gone) carries its key as ``before``, as Flink requires."""
    if event.before is not None or event.op not in (UPDATE, DELETE):
        return event
    if event.op == DELETE:
        return ChangeEvent(DELETE, event.key, dict(event.key), None, event.ts_ms, event.source, event.problems)
    if pattern == "cdc":
        return ChangeEvent(UPDATE, event.key, dict(event.key), event.after, event.ts_ms, event.source, event.problems)
    return ChangeEvent(CREATE, event.key, None, event.after, event.ts_ms, event.source, event.problems)
