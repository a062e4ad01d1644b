"""The decoder: positions at transaction boundaries, exact resume inside a transaction, DDL and rotation."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from liberation_assets.core.events import ChangeEvent
from liberation_assets.core.readers.binlog.decoder import BinlogDecoder
from liberation_assets.core.readers.binlog.log import Begin, Commit, Heartbeat, LogTable, Rotate, Rows, Statement
from liberation_assets.core.readers.binlog.position import BinlogPosition
from liberation_tests.core.readers.binlog.support import WIDGETS, mapper

FILE = "mariadb-bin.000007"
OTHER = LogTable("shop", "secrets", WIDGETS.columns)


def _row(i: int) -> dict:
    return {"id": i, "name": f"w{i}", "cost": Decimal("1.00"), "updated_at": datetime(2024, 1, 1)}


def _transaction(start: int, ids: list[list[int]], table: LogTable = WIDGETS) -> list:
    """A transaction at ``start``: a GTID event, one rows event per id group, an XID event."""
    items: list = [Begin(f"0-1-{start}", 1)]
    pos = start + 40
    for group in ids:
        pos += 100
        items.append(Rows("c", table, [_row(i) for i in group], pos, 1_700_000_000, 1))
    items.append(Commit(pos + 30))
    return items


def _decoder(start: BinlogPosition) -> BinlogDecoder:
    m, _ = mapper({"id": "id", "name": "name"})
    return BinlogDecoder(start, {("shop", "widgets"): [m]})


def _feed(decoder: BinlogDecoder, items: list) -> tuple[list[ChangeEvent], list[BinlogPosition]]:
    pending: dict[str, list[ChangeEvent]] = {}
    positions = []
    for item in items:
        decoder.feed(item, pending)
        positions.append(decoder.position())
    return pending.get("widgets", []), positions


def test_positions_stay_on_the_transaction_start_until_commit() -> None:
    decoder = _decoder(BinlogPosition(FILE, 1000))
    events, positions = _feed(decoder, [Rotate(FILE, 1000), *_transaction(1000, [[1, 2], [3]])])
    assert [e.key["id"] for e in events] == [1, 2, 3]
    assert [(p.pos, p.event) for p in positions] == [(1000, 0), (1000, 0), (1000, 1140), (1000, 1240), (1270, 0)]
    assert events[2].source == {
        "file": FILE,
        "pos": 1000,
        "event": 1240,
        "gtid": "0-1-1000",
        "server_id": 1,
        "snapshot": "false",
        "row": 0,
    }
    assert events[0].ts_ms == 1_700_000_000_000 and positions[-1].ts_ms == 1_700_000_000_000


def test_resuming_inside_a_transaction_skips_exactly_what_was_published() -> None:
    transaction = _transaction(1000, [[1, 2], [3], [4]])
    first, positions = _feed(_decoder(BinlogPosition(FILE, 1000)), transaction[:2])
    stored = positions[-1]  # committed to Kafka after the first rows event
    resumed, _ = _feed(_decoder(stored), [Rotate(FILE, 1000), *transaction, *_transaction(1370, [[5]])])
    assert [e.key["id"] for e in first] == [1, 2]
    assert [e.key["id"] for e in resumed] == [3, 4, 5]


def test_other_tables_and_savepoints_do_not_move_the_boundary() -> None:
    decoder = _decoder(BinlogPosition(FILE, 1000))
    items = [
        Begin("0-1-9", 1),
        Rows("c", OTHER, [_row(1)], 1100, 0, 1),
        Statement("shop", "SAVEPOINT `a`", 1150),
        Statement("shop", "ROLLBACK TO `a`", 1200),
        Heartbeat(FILE, 1200),
    ]
    events, positions = _feed(decoder, items)
    assert events == [] and {p.pos for p in positions} == {1000} and decoder.in_transaction
    _feed(decoder, [Commit(1300)])
    assert decoder.position().pos == 1300 and not decoder.in_transaction


def test_ddl_ends_a_unit_and_replans_only_when_it_concerns_our_tables() -> None:
    m, reflections = mapper({"id": "id", "name": "name"})
    decoder = BinlogDecoder(BinlogPosition(FILE, 1000), {("shop", "widgets"): [m]})
    _feed(decoder, _transaction(1000, [[1]]))
    _feed(decoder, [Begin("0-1-2", 1), Statement("elsewhere", "CREATE TABLE t (id int)", 1400)])
    assert decoder.stats.ddl == 0 and decoder.position().pos == 1400
    _feed(
        decoder,
        [
            Begin("0-1-3", 1),
            Statement("shop", "/* tool */ ALTER TABLE widgets ADD color text", 1500),
            *_transaction(1500, [[2]]),
        ],
    )
    assert decoder.stats.ddl == 1 and len(reflections) == 2
    _feed(decoder, [Statement("other", "TRUNCATE TABLE `shop`.`widgets`", 1800)])
    assert decoder.stats.truncated == ["widgets"]


def test_a_truncate_names_its_table_however_it_is_quoted() -> None:
    m, _ = mapper({"id": "id", "name": "name"})
    decoder = BinlogDecoder(BinlogPosition(FILE, 1000), {("q`uo té", "we`ird tä ble"): [m], ("shop", "widgets"): [m]})
    _feed(
        decoder,
        [
            Statement("other", "TRUNCATE `q``uo té` . `we``ird tä ble`", 1800),
            Statement("shop", "truncate table widgets;", 1900),
        ],
    )
    assert decoder.stats.truncated == ["widgets", "widgets"]  # the mapper's stream, once per table


def test_rotation_moves_to_the_next_file() -> None:
    decoder = _decoder(BinlogPosition(FILE, 1000))
    _feed(decoder, [Rotate(FILE, 1000), *_transaction(1000, [[1]]), Rotate("mariadb-bin.000008", 4)])
    assert decoder.position().file == "mariadb-bin.000008" and decoder.position().pos == 4


def test_a_reconnect_inside_a_transaction_keeps_the_boundary() -> None:
    decoder = _decoder(BinlogPosition(FILE, 1000))
    transaction = _transaction(1000, [[1], [2]])
    _feed(decoder, transaction[:2])
    _feed(decoder, [Rotate(FILE, 1140)])  # the library reconnected and resumed after the first rows event
    events, positions = _feed(decoder, transaction[2:])
    assert [e.key["id"] for e in events] == [2] and positions[0].pos == 1000 and positions[-1].pos == 1270


def test_heartbeats_move_an_idle_reader_past_events_it_does_not_see() -> None:
    decoder = _decoder(BinlogPosition(FILE, 1000))
    _feed(decoder, [Rotate(FILE, 1000), Rotate("mariadb-bin.000008", 4), Heartbeat("mariadb-bin.000008", 385)])
    assert (decoder.position().file, decoder.position().pos) == ("mariadb-bin.000008", 385)
    _feed(decoder, [Begin("0-1-5", 1), Heartbeat("mariadb-bin.000008", 900)])
    assert decoder.position().pos == 385  # never inside a transaction
