"""The pgoutput stream on hand-built bytes: transactions, the restart skip, boundaries, confirm."""

from __future__ import annotations

import struct

from liberation_assets.core.readers.pgoutput import Insert, Relation, Truncate
from liberation_assets.core.readers.pgoutput.position import CdcPosition
from liberation_assets.core.readers.pgoutput.stream import Change, Committed, Marker, PgoutputStream

HEARTBEAT = "liberation.heartbeat"


def _s(text: str) -> bytes:
    return text.encode() + b"\0"


def begin(final_lsn: int, xid: int = 7) -> bytes:
    return b"B" + struct.pack(">qqI", final_lsn, 0, xid)


def commit(final_lsn: int, end_lsn: int) -> bytes:
    return b"C" + struct.pack(">bqqq", 0, final_lsn, end_lsn, 0)


def insert(value: int, relid: int = 1) -> bytes:
    data = str(value).encode()
    return b"I" + struct.pack(">I", relid) + b"N" + struct.pack(">h", 1) + b"t" + struct.pack(">i", len(data)) + data


def message(prefix: str, lsn: int, content: bytes = b"", transactional: bool = False) -> bytes:
    return b"M" + struct.pack(">bq", int(transactional), lsn) + _s(prefix) + struct.pack(">i", len(content)) + content


def relation(relid: int = 1) -> bytes:
    return (
        b"R"
        + struct.pack(">I", relid)
        + _s("public")
        + _s("t")
        + b"f"
        + struct.pack(">h", 1)
        + b"\x01"
        + _s("id")
        + struct.pack(">Ii", 23, -1)
    )


def feed(stream: PgoutputStream, *payloads: bytes) -> list[object]:
    return [item for payload in payloads if (item := stream.feed(payload, 0)) is not None]


def inserted(items: list[object]) -> list[str]:
    return [str(i.message.new[0]) for i in items if isinstance(i, Change) and isinstance(i.message, Insert)]


def test_a_transaction_committing_at_a_heartbeats_lsn_is_not_skipped() -> None:
    """The heartbeat's LSN is where its record ends, where the next commit record may start.

    A stream that kept the heartbeat at its LSN would, once that position is
    stored, skip the transaction committing there (today's log relay did).
    """
    lsn = 0x1000
    stream = PgoutputStream(CdcPosition(), {HEARTBEAT})
    assert isinstance(stream.feed(message(HEARTBEAT, lsn)), Marker)
    assert stream.at == (lsn - 1, -1, True) and stream.confirm == lsn - 1
    stored = stream.position(CdcPosition())  # the flush after a quiet log stores this position
    restarted = PgoutputStream(stored, {HEARTBEAT})  # ... and a restart, or the next change, resumes from it
    for current in (stream, restarted):
        items = feed(current, begin(lsn), insert(1), commit(lsn, lsn + 0x40))
        assert inserted(items) == ["1"]
        assert current.at == (lsn, 0, True) and current.confirm == lsn + 0x40


def test_restart_skips_exactly_what_was_published() -> None:
    resume = CdcPosition(lsn=0x2000, index=1, complete=False)
    stream = PgoutputStream(resume)
    older = feed(stream, begin(0x1000), insert(0), commit(0x1000, 0x1010))
    assert inserted(older) == [] and stream.at == (0x2000, 1, False)  # an older transaction: all published
    items = feed(stream, begin(0x2000), insert(1), insert(2), insert(3), commit(0x2000, 0x2040))
    assert inserted(items) == ["3"]
    assert isinstance(items[-1], Committed) and items[-1].tx.index == 2
    assert stream.at == (0x2000, 2, True) and stream.confirm == 0x2040
    done = PgoutputStream(CdcPosition(lsn=0x2000, index=2, complete=True))
    assert inserted(feed(done, begin(0x2000), insert(1), insert(2), insert(3), commit(0x2000, 0x2040))) == []
    assert done.confirm == 0  # nothing new: nothing to confirm


def test_inside_a_transaction_confirm_is_its_commit_lsn_and_before_is_the_previous_position() -> None:
    stream = PgoutputStream(CdcPosition(lsn=0x500, complete=True))
    feed(stream, begin(0x3000))
    first = stream.feed(insert(1), 0x2F00)
    assert isinstance(first, Change) and first.lsn == 0x2F00 and first.before == ((0x500, -1, True), 0)
    assert stream.at == (0x3000, 0, False) and stream.confirm == 0x3000
    second = stream.feed(insert(2))
    assert isinstance(second, Change) and second.before == ((0x3000, 0, False), 0x3000)


def test_markers_relations_and_truncate() -> None:
    stream = PgoutputStream(CdcPosition(lsn=0x900, complete=True), {HEARTBEAT, "liberation.drain"})
    assert isinstance(stream.feed(relation()), Relation)
    assert isinstance(stream.feed(message("someone.else", 0x1000)), Marker)
    assert stream.at == (0x900, -1, True)  # not ours: no boundary
    assert stream.feed(message("liberation.drain", 0x800)) is not None
    assert stream.at == (0x900, -1, True)  # never backwards
    assert stream.feed(message(HEARTBEAT, 0x1000, transactional=True)) is None  # a transactional message is no boundary
    truncate = b"T" + struct.pack(">ib", 1, 0) + struct.pack(">I", 1)
    items = feed(stream, begin(0x2000), truncate, commit(0x2000, 0x2010))
    assert isinstance(items[0], Change) and isinstance(items[0].message, Truncate)
    assert stream.at == (0x2000, 0, True)


def test_a_change_outside_a_transaction_is_an_error() -> None:
    stream = PgoutputStream(CdcPosition())
    try:
        stream.feed(insert(1))
    except Exception as exc:
        assert "outside a transaction" in str(exc)
    else:
        raise AssertionError("accepted a change outside a transaction")


def test_commit_time_epoch() -> None:
    from liberation_assets.core.readers.pgoutput import pg_time_to_epoch_ms

    assert pg_time_to_epoch_ms(0) == 946_684_800_000
    assert pg_time_to_epoch_ms(1_500) == 946_684_800_001
