"""The pgoutput messages as small immutable tuples.

Tuple data keeps each column as the server sent it: ``None`` for SQL NULL, the
``UNCHANGED`` marker for a TOASTed value the server left out, or the value's
text form.  Turning text into Python values is a separate, per-relation step
(see ``values``), so rows are parsed once, only for the columns published.
"""

from __future__ import annotations

from typing import NamedTuple, Union


class _Unchanged:
    """The ``u`` kind: an unchanged TOASTed value that the server did not send."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNCHANGED"

    def __reduce__(self) -> str:
        return "UNCHANGED"


UNCHANGED = _Unchanged()
TupleValue = Union[str, bytes, None, _Unchanged]
TupleData = tuple[TupleValue, ...]


class Begin(NamedTuple):
    final_lsn: int
    """The LSN of the transaction's commit record: the same for every resend of the transaction."""
    commit_ts: int
    """Microseconds since 2000-01-01 UTC."""
    xid: int


class Commit(NamedTuple):
    flags: int
    commit_lsn: int
    end_lsn: int
    """The end of the commit record: confirming it means the transaction is never sent again."""
    commit_ts: int


class Origin(NamedTuple):
    lsn: int
    name: str


class Column(NamedTuple):
    name: str
    type_oid: int
    typmod: int
    is_key: bool


class Relation(NamedTuple):
    relid: int
    namespace: str
    name: str
    replica_identity: str
    """``d`` default (primary key), ``n`` nothing, ``f`` full, ``i`` index."""
    columns: tuple[Column, ...]


class TypeInfo(NamedTuple):
    oid: int
    namespace: str
    name: str


class Insert(NamedTuple):
    relid: int
    new: TupleData


class Update(NamedTuple):
    relid: int
    old: TupleData | None
    """The old key (``old_kind`` K) or the whole old row (O, under REPLICA IDENTITY FULL), if sent."""
    old_kind: str | None
    new: TupleData


class Delete(NamedTuple):
    relid: int
    old: TupleData
    old_kind: str


class Truncate(NamedTuple):
    relids: tuple[int, ...]
    cascade: bool
    restart_identity: bool


class LogicalMessage(NamedTuple):
    """A message written with ``pg_logical_emit_message`` (sent when the ``messages`` option is on)."""

    transactional: bool
    lsn: int
    prefix: str
    content: bytes


Message = Union[Begin, Commit, Origin, Relation, TypeInfo, Insert, Update, Delete, Truncate, LogicalMessage]
