"""Binlog positions: a typed value that rebuilds itself, and log order across files."""

from __future__ import annotations

from datetime import datetime

from liberation_assets.core.readers.binlog.position import BinlogPosition, StreamSnapshot, coordinates_key, file_index


def test_round_trip_with_snapshot_progress() -> None:
    position = BinlogPosition(
        "mariadb-bin.000003",
        4711,
        5000,
        "0-1-9",
        1,
        1_700_000_000_000,
        ("orders",),
        {"products": StreamSnapshot(("SKU-1", datetime(2024, 1, 1)), 20, False, {0: 7})},
    )
    assert BinlogPosition.from_dict(position.to_dict()) == position
    finished = position.snapshot_finished()
    assert finished.streams == ("orders", "products") and finished.snapshot is None


def test_log_order_follows_the_file_sequence_then_the_offset() -> None:
    assert file_index("mariadb-bin.000010") == 10
    assert coordinates_key("mariadb-bin.000009", 999_999) < coordinates_key("mariadb-bin.000010", 4)
    assert BinlogPosition("mysql-bin.000002", 4).coordinates == (2, 4)
