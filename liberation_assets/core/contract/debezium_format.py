"""The ``debezium`` value format: Debezium's JSON envelope, with the before image Flink's ``debezium-json`` needs.

Apart from ``formats.py`` (which format a stream has) because ``connect-json`` wraps the same envelope and
decides a missing before image the same way (``flink_safe``).
"""

from __future__ import annotations

from typing import Any

import orjson

from liberation_assets.core.contract.serialize import _OPTIONS, SNAPSHOT_FALSE, _default, dumps, envelope_bytes
from liberation_assets.core.errors import SerializationError
from liberation_assets.core.events import CREATE, DELETE, TRUNCATE, UPDATE, ChangeEvent, Row

_TS_MARK = "\x00liberation.ts_ms\x00"
"""Stands for the event's ``ts_ms`` while the rest of a ``source`` block is serialized once (``_source_parts``)."""
_TS_MARK_JSON = dumps(_TS_MARK)


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
        self._last_source: tuple[Any, Any] = (None, None)
        """The ``(source_base, event.source)`` objects of the previous event, kept alive so ``is`` means same."""
        self._source_bytes: tuple[bytes, bytes] | None = None
        self._op_bytes: dict[str, bytes] = {}
        self._tail: tuple[int, bytes] = (-1, b"")

    def key(self, key: Row) -> bytes:
        return dumps(key)

    def value(self, event: ChangeEvent, source_base: dict[str, Any], processed_ms: int) -> bytes | None:
        """The envelope; the ``source`` block a run of events shares (a snapshot chunk's, a poll's) is
        serialized once and the row images spliced in, byte for byte what ``envelope_bytes`` writes."""
        op = event.op
        if op == TRUNCATE:
            return None  # Debezium's default (skipped.operations=t); the deletes that follow carry it
        if event.before is None and (op == UPDATE or op == DELETE):
            event = flink_safe(event, self.pattern)
            op = event.op
        source = event.source
        base, last = self._last_source
        if source is not last or source_base is not base:
            # A new source block (CDC events carry one each): only a second event with it pays off the split.
            self._last_source, self._source_bytes = (source_base, source), None
            return envelope_bytes(event, source_base, processed_ms)
        parts = self._source_bytes
        if parts is None:
            parts = self._source_bytes = _source_parts(source_base, source)
            if parts is None:  # the source names its own ts_ms: no place to splice
                self._last_source = (None, None)
                return envelope_bytes(event, source_base, processed_ms)
        op_bytes = self._op_bytes.get(op)
        if op_bytes is None:
            op_bytes = self._op_bytes[op] = b',"op":' + dumps(op) + b',"source":'
        processed, tail = self._tail
        if processed != processed_ms:
            tail = b',"ts_ms":' + dumps(processed_ms) + b"}"
            self._tail = (processed_ms, tail)
        ts = event.ts_ms
        try:
            before = b"null" if event.before is None else orjson.dumps(event.before, default=_default, option=_OPTIONS)
            after = b"null" if event.after is None else orjson.dumps(event.after, default=_default, option=_OPTIONS)
        except orjson.JSONEncodeError as exc:
            raise SerializationError(str(exc)) from None
        return b"".join(
            (
                b'{"before":',
                before,
                b',"after":',
                after,
                op_bytes,
                parts[0],
                b"%d" % ts if ts.__class__ is int else dumps(ts),
                parts[1],
                tail,
            )
        )


def _source_parts(source_base: dict[str, Any], source: dict[str, Any]) -> tuple[bytes, bytes] | None:
    """The serialized ``source`` block before and after its ``ts_ms`` value, as ``envelope_bytes`` builds it;
    None when the event's own source fields set ``ts_ms``."""
    block = {**source_base, "ts_ms": _TS_MARK, **source}
    if "snapshot" not in block:
        block["snapshot"] = SNAPSHOT_FALSE
    text = dumps(block)
    if text.count(_TS_MARK_JSON) != 1:
        return None
    head, tail = text.split(_TS_MARK_JSON)
    return head, tail


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
