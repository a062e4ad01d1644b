"""The PostgreSQL type mapping: text output → JSON value, one converter per type (docs/architecture.md)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from liberation_assets.core.errors import UnconvertibleValue
from liberation_assets.core.readers import pg_catalog, pg_types
from liberation_assets.core.readers.pg_catalog import PgType

NEW_YORK, SEOUL = ZoneInfo("America/New_York"), ZoneInfo("Asia/Seoul")


def convert(oid: int, text: str, zone: ZoneInfo | None = None, element: int | None = None) -> object:
    pg_type = PgType(oid, PgType(element)) if element is not None else PgType(oid)
    return pg_types.guarded(pg_types.converter(pg_type, zone))(text)


@pytest.mark.parametrize(
    ("oid", "text", "expected"),
    [
        (pg_catalog.BOOL, "t", True),
        (pg_catalog.INT8, "-9223372036854775808", -9223372036854775808),
        (pg_catalog.XID, "42", 42),
        (pg_catalog.NUMERIC, "0.10", "0.10"),
        (pg_catalog.NUMERIC, "NaN", "NaN"),
        (pg_catalog.NUMERIC, "-Infinity", "-Infinity"),
        (pg_catalog.FLOAT8, "0.1", 0.1),
        (pg_catalog.FLOAT8, "NaN", "NaN"),
        (pg_catalog.FLOAT4, "-Infinity", "-Infinity"),
        (pg_catalog.MONEY, "$1,234.56", "1234.56"),
        (pg_catalog.MONEY, "-$0.50", "-0.50"),
        (pg_catalog.BYTEA, "\\xdeadbeef00", "3q2+7wA="),
        (3802, '{"a": 1}', '{"a": 1}'),
        (114, '{"a": 1, "a": 2}', '{"a": 1, "a": 2}'),
        (3802, "null", "null"),
        (pg_catalog.DATE, "2024-02-29", "2024-02-29"),
        (pg_catalog.DATE, "infinity", "infinity"),
        (pg_catalog.DATE, "0001-01-01 BC", "0000-01-01"),
        (pg_catalog.DATE, "0002-12-31 BC", "-0001-12-31"),
        (pg_catalog.DATE, "10000-01-01", "+10000-01-01"),
        (pg_catalog.TIME, "24:00:00", "24:00:00"),
        (pg_catalog.TIME, "12:00:00.5", "12:00:00.500000"),
        (pg_catalog.TIMETZ, "12:00:00.5+05:30", "12:00:00.500000+05:30"),
        (pg_catalog.TIMETZ, "12:00:00-08", "12:00:00-08:00"),
        (pg_catalog.TIMESTAMPTZ, "2024-03-10 06:59:59.999999+00", "2024-03-10T06:59:59.999999Z"),
        (pg_catalog.TIMESTAMPTZ, "-infinity", "-infinity"),
        (pg_catalog.TIMESTAMPTZ, "0001-01-01 00:00:00+00 BC", "0000-01-01T00:00:00Z"),
        (pg_catalog.TIMESTAMPTZ, "12345-01-01 00:00:00.25+00", "+12345-01-01T00:00:00.250000Z"),
        (pg_catalog.INTERVAL, "P1Y2M3DT4H5M6.789S", "P1Y2M3DT4H5M6.789S"),
        (869, "192.168.0.1/24", "192.168.0.1/24"),
        (99999, "(1,abc)", "(1,abc)"),
    ],
)
def test_scalar_forms(oid: int, text: str, expected: object) -> None:
    assert convert(oid, text) == expected


def test_naive_timestamps_are_read_in_the_zone_the_server_way() -> None:
    assert convert(pg_catalog.TIMESTAMP, "2024-01-02 03:04:05.5") == "2024-01-02T03:04:05.500000Z"  # UTC
    assert convert(pg_catalog.TIMESTAMP, "10000-01-01 00:00:00") == "+10000-01-01T00:00:00Z"
    assert convert(pg_catalog.TIMESTAMP, "infinity", NEW_YORK) == "infinity"
    # a spring-forward gap takes the offset before it, an overlap the offset after it (as AT TIME ZONE)
    assert convert(pg_catalog.TIMESTAMP, "2024-03-10 02:30:00", NEW_YORK) == "2024-03-10T07:30:00Z"
    assert convert(pg_catalog.TIMESTAMP, "2024-11-03 01:30:00", NEW_YORK) == "2024-11-03T06:30:00Z"
    with pytest.raises(UnconvertibleValue, match="outside years"):
        convert(pg_catalog.TIMESTAMP, "0001-01-01 00:00:00", SEOUL)
    with pytest.raises(UnconvertibleValue, match="outside years"):
        convert(pg_catalog.TIMESTAMP, "0001-01-01 00:00:00 BC", SEOUL)


def test_arrays_nest_and_convert_their_elements() -> None:
    assert convert(1007, "{{1,2},{NULL,4}}", element=pg_catalog.INT4) == [[1, 2], [None, 4]]
    assert convert(1009, '{"a\\"b","c,d",NULL,"NULL",""}', element=pg_catalog.TEXT) == ['a"b', "c,d", None, "NULL", ""]
    assert convert(1115, '{"2024-01-01 00:00:00"}', SEOUL, element=pg_catalog.TIMESTAMP) == ["2023-12-31T15:00:00Z"]
    assert convert(1001, '{"\\\\x0102"}', element=pg_catalog.BYTEA) == ["AQI="]
    box = PgType(1020, PgType(603), ";")
    assert pg_types.converter(box, None)("{(1,1),(0,0);(3,3),(2,2)}") == ["(1,1),(0,0)", "(3,3),(2,2)"]
    with pytest.raises(UnconvertibleValue, match="lower bounds"):
        convert(1007, "[0:1]={1,2}", element=pg_catalog.INT4)


def test_a_converter_failure_is_a_row_problem() -> None:
    with pytest.raises(UnconvertibleValue):
        convert(pg_catalog.INT4, "not a number")


def test_the_outbox_occurred_at_is_an_instant_or_stays_text() -> None:
    from datetime import datetime, timezone

    from liberation_assets.core.readers.pg_catalog import TIMESTAMP, TIMESTAMPTZ
    from liberation_assets.core.readers.pg_types import instant_reader

    read = instant_reader(TIMESTAMPTZ)
    assert read("2024-02-29 13:14:15.5+00") == datetime(2024, 2, 29, 13, 14, 15, 500000, tzinfo=timezone.utc)
    assert read("infinity") == "infinity" and read("0044-03-15 00:00:00+00 BC") == "-0043-03-15T00:00:00Z"
    assert instant_reader(TIMESTAMP)("2024-02-29 13:14:15") == datetime(2024, 2, 29, 13, 14, 15, tzinfo=timezone.utc)
