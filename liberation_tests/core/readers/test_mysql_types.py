"""The MariaDB/MySQL column converters: the published form of each type's special values."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from liberation_assets.core.errors import UnconvertibleValue
from liberation_assets.core.readers.mysql_types import (
    RowConverter,
    SourceType,
    naive_to_utc,
    time_value,
    value_converter,
)

NEW_YORK, SEOUL, UTC = ZoneInfo("America/New_York"), ZoneInfo("Asia/Seoul"), timezone.utc


def test_a_naive_datetime_is_placed_in_its_zone_as_the_server_places_it() -> None:
    # Measured with MariaDB 10.11's CONVERT_TZ: a time in a DST gap is the second the gap ends, fraction kept;
    # an ambiguous time is its first occurrence.
    assert naive_to_utc(datetime(2024, 3, 10, 2, 30, 0, 500000), NEW_YORK) == datetime(
        2024, 3, 10, 7, 0, 0, 500000, UTC
    )
    assert naive_to_utc(datetime(2024, 11, 3, 1, 30), NEW_YORK) == datetime(2024, 11, 3, 5, 30, tzinfo=UTC)
    assert naive_to_utc(datetime(1988, 5, 8, 2, 30), SEOUL) == datetime(1988, 5, 7, 17, 0, tzinfo=UTC)
    assert naive_to_utc(datetime(9999, 12, 31, 23, 59), SEOUL) == datetime(9999, 12, 31, 14, 59, tzinfo=UTC)
    with pytest.raises(UnconvertibleValue, match="outside years 1..9999"):
        naive_to_utc(datetime(9999, 12, 31, 23, 59), NEW_YORK)


def test_timestamp_is_an_instant_and_zero_dates_keep_the_server_text() -> None:
    timestamp = value_converter(SourceType("timestamp", "timestamp(6)", 6), SEOUL)
    moment = value_converter(SourceType("datetime", "datetime(6)", 6), SEOUL)
    day = value_converter(SourceType("date"), SEOUL)
    assert timestamp is not None and moment is not None and day is not None
    assert timestamp(datetime(2024, 3, 10, 6, 59, 59, 999999)) == datetime(2024, 3, 10, 6, 59, 59, 999999, UTC)
    assert timestamp("0000-00-00 00:00:00.000000") == "0000-00-00 00:00:00.000000"
    assert moment("2024-00-15 10:00:00") == "2024-00-15 10:00:00" and day("0000-00-00") == "0000-00-00"
    assert day(date(2024, 2, 29)) == date(2024, 2, 29)


def test_time_never_wraps() -> None:
    assert time_value(timedelta(hours=-1)) == "-01:00:00"
    assert time_value(timedelta(hours=100)) == "100:00:00"
    assert time_value(-timedelta(hours=838, minutes=59, seconds=59)) == "-838:59:59"
    assert time_value(-timedelta(microseconds=500000)) == "-00:00:00.500000"
    assert time_value(timedelta(hours=23, minutes=59, seconds=59, microseconds=1)) == time(23, 59, 59, 1)


def test_bit_year_decimal_and_addresses() -> None:
    bit = value_converter(SourceType("bit", "bit(64)"), UTC)
    year = value_converter(SourceType("year"), UTC)
    decimal = value_converter(SourceType("decimal", "decimal(10,2)"), UTC)
    inet6 = value_converter(SourceType("inet6"), UTC)
    assert bit is not None and bit(b"\xff" * 8) == 2**64 - 1 and bit("101") == 5
    assert year is not None and year(1900) == 0 and year(2155) == 2155
    assert decimal is not None and str(decimal(Decimal("12.50"))) == "12.50"
    assert (
        inet6 is not None and inet6("::1") == "::1" and inet6(b"\0" * 10 + b"\xff\xff\x0a\0\0\x01") == "::ffff:10.0.0.1"
    )
    assert value_converter(SourceType("double"), UTC) is None and value_converter(SourceType("enum"), UTC) is None


def test_a_row_names_the_columns_it_cannot_carry() -> None:
    types = {"id": SourceType("int"), "at": SourceType("datetime"), "t": SourceType("time")}
    converter = RowConverter.for_columns({"id": "id", "when": "at", "t": "t"}, types, NEW_YORK)
    row = {"id": 1, "when": datetime(9999, 12, 31, 23, 0), "t": timedelta(hours=-2)}
    assert converter.apply(row) == [
        "column when: DATETIME 9999-12-31 23:00:00 in America/New_York is outside years 1..9999 in UTC"
    ]
    assert row == {"id": 1, "when": "9999-12-31T23:00:00", "t": "-02:00:00"}
