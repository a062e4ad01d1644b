"""Server checks and binlog arithmetic of the client, on plain values."""

from __future__ import annotations

import pytest

from liberation_assets.core.errors import PositionLost
from liberation_assets.core.readers.binlog.client import binlog_problems, bytes_behind, ensure_resumable
from liberation_assets.core.readers.binlog.position import BinlogPosition

LOGS = [("mariadb-bin.000004", 1000), ("mariadb-bin.000005", 300)]


def test_server_settings_that_prevent_row_capture_are_named() -> None:
    good = {"log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "FULL", "binlog_row_metadata": "FULL"}
    assert binlog_problems(good) == []
    problems = binlog_problems({**good, "binlog_format": "MIXED", "binlog_row_value_options": "PARTIAL_JSON"})
    assert problems[0] == "binlog_format=MIXED (needs ROW)" and "PARTIAL_JSON" in problems[1]
    assert binlog_problems({k: v for k, v in good.items() if k != "binlog_row_metadata"}) == [
        "binlog_row_metadata=unsupported (needs FULL)"
    ]


def test_bytes_behind_spans_files() -> None:
    assert bytes_behind(LOGS, "mariadb-bin.000004", 900) == 100 + 300
    assert bytes_behind(LOGS, "mariadb-bin.000005", 300) == 0


def test_a_purged_position_is_lost_with_instructions() -> None:
    ensure_resumable(LOGS, BinlogPosition("mariadb-bin.000004", 500), "shop")
    with pytest.raises(PositionLost, match="000003 has been purged.*oldest binlog is now mariadb-bin.000004") as lost:
        ensure_resumable(LOGS, BinlogPosition("mariadb-bin.000003", 500), "shop")
    assert "liberation follow shop --resnapshot" in str(lost.value)
    with pytest.raises(PositionLost, match="shorter than"):
        ensure_resumable(LOGS, BinlogPosition("mariadb-bin.000005", 4000), "shop")
