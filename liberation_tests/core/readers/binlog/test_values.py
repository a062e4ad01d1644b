"""Binlog values become the inputs a SELECT gives the shared converters, then the same published values."""

from __future__ import annotations

import io
import struct
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

from pymysqlreplication.constants import FIELD_TYPE

from liberation_assets.core.readers.binlog.log import ColumnMeta
from liberation_assets.core.readers.binlog.temporal import read_date, read_datetime2, read_time2, read_timestamp2
from liberation_assets.core.readers.binlog.values import (
    dbapi_converter,
    float_as_mariadb,
    float_as_mysql,
    log_converter,
)
from liberation_assets.core.readers.mysql_types import SourceType
from liberation_tests.core.readers.binlog.support import UTC


def _f32(value: float) -> float:
    return struct.unpack("<f", struct.pack("<f", value))[0]


def test_float_is_printed_the_way_each_server_prints_it() -> None:
    # Measured against MariaDB 10.11: SELECT of a FLOAT column gives 6 significant digits.
    assert float_as_mariadb(_f32(0.3979)) == 0.3979
    assert float_as_mariadb(_f32(16777217)) == 16777200.0
    assert float_as_mariadb(_f32(1.2345678)) == 1.23457
    # MySQL 8 prints the shortest text that reads back as the same single-precision value.
    assert float_as_mysql(_f32(0.1)) == 0.1
    assert float_as_mysql(_f32(1.2345678)) == 1.2345678


def test_fixed_binary_is_padded_and_char_is_stripped() -> None:
    binary = dbapi_converter(ColumnMeta("b", FIELD_TYPE.STRING, charset="binary", max_length=4), "mariadb")
    char = dbapi_converter(ColumnMeta("c", FIELD_TYPE.STRING, charset="utf8mb4", max_length=12), "mariadb")
    assert binary is not None and binary(b"\x01") == b"\x01\x00\x00\x00"
    assert char is not None and char("ab  ") == "ab"
    varbinary = dbapi_converter(ColumnMeta("v", FIELD_TYPE.VARCHAR, charset="binary", max_length=20), "mariadb")
    assert varbinary is not None and varbinary("") == b"" and varbinary(b"\x01") == b"\x01"
    assert binary(b"") == b"\x00" * 4 and binary("") == b"\x00" * 4


def test_bit_set_and_json_take_their_select_form() -> None:
    bit = dbapi_converter(ColumnMeta("b", FIELD_TYPE.BIT, bit_bytes=1), "mariadb")
    members = dbapi_converter(ColumnMeta("s", FIELD_TYPE.SET, set_values=("x", "y", "z")), "mariadb")
    document = dbapi_converter(ColumnMeta("j", FIELD_TYPE.JSON), "mysql")
    assert bit is not None and bit("10101") == 21
    assert members is not None and members({"z", "x"}) == "x,z" and members(set()) == ""
    assert document is not None and document({b"a": [1, b"\xc3\xbc"]}) == '{"a": [1, "\u00fc"]}'


def test_the_shared_converter_runs_after_the_log_step() -> None:
    double = log_converter(ColumnMeta("d", FIELD_TYPE.DOUBLE), SourceType("double"), "mariadb", UTC)
    clock = log_converter(ColumnMeta("t", FIELD_TYPE.TIME2), SourceType("time", "time(2)", 2), "mariadb", UTC)
    members = log_converter(ColumnMeta("s", FIELD_TYPE.SET, set_values=("x", "y")), SourceType("set"), "mariadb", UTC)
    address = log_converter(
        ColumnMeta("a", FIELD_TYPE.STRING, charset="binary", max_length=16), SourceType("inet6"), "mariadb", UTC
    )
    assert double is None  # a float is already the published value: shortest round-trip text
    assert clock is not None and clock(timedelta(hours=1, seconds=2, microseconds=500000)) == time(1, 0, 2, 500000)
    assert clock(timedelta(hours=-1)) == "-01:00:00" and clock(timedelta(hours=100)) == "100:00:00"
    assert members is not None and members({"y", "x"}) == "x,y"
    assert address is not None and address(b"\0" * 10 + b"\xff\xff\x01\x02\x03\x04") == "::ffff:1.2.3.4"
    assert address(b"\0" * 15 + b"\x01") == "::1" and address(b" \x01\x0d\xb8" + b"\0" * 11 + b"\x01") == "2001:db8::1"


def test_columns_that_already_agree_get_no_converter() -> None:
    assert log_converter(ColumnMeta("id", FIELD_TYPE.LONGLONG), SourceType("bigint"), "mariadb", UTC) is None
    assert (
        log_converter(ColumnMeta("n", FIELD_TYPE.VARCHAR, charset="utf8mb4"), SourceType("varchar"), "mariadb", UTC)
        is None
    )
    decimal = log_converter(ColumnMeta("n", FIELD_TYPE.NEWDECIMAL), SourceType("decimal"), "mariadb", UTC)
    assert decimal is not None and str(decimal(Decimal("12.50"))) == "12.50"


def _reader(data: bytes):  # noqa: ANN202
    return io.BytesIO(data).read


def test_temporal_values_are_decoded_from_their_stored_bytes() -> None:
    # Bytes as MariaDB 10.11 writes them (MySQL 5.6 temporal formats).
    zero_date = (0).to_bytes(3, "little")
    partly_zero = ((2024 << 9) | (0 << 5) | 15).to_bytes(3, "little")
    assert read_date(_reader(zero_date)) == "0000-00-00" and read_date(_reader(partly_zero)) == "2024-00-15"
    assert read_date(_reader(((2024 << 9) | (2 << 5) | 29).to_bytes(3, "little"))) == date(2024, 2, 29)
    zero_datetime = (0x8000000000).to_bytes(5, "big") + (0).to_bytes(2, "big")
    assert read_datetime2(_reader(zero_datetime), 3) == "0000-00-00 00:00:00.000"
    packed = ((((2024 * 13 + 3) << 5) | 10) << 17) | (6 << 12) | (59 << 6) | 59
    assert read_datetime2(
        _reader((0x8000000000 + packed).to_bytes(5, "big") + (999999).to_bytes(3, "big")), 6
    ) == datetime(2024, 3, 10, 6, 59, 59, 999999)
    assert read_timestamp2(_reader(b"\0\0\0\0\0\0\0"), 6) == "0000-00-00 00:00:00.000000"
    assert read_timestamp2(_reader((1).to_bytes(4, "big")), 0) == datetime(1970, 1, 1, 0, 0, 1, tzinfo=timezone.utc)
    # Negative TIME with a fraction: the whole part is one lower and the fraction counts down from 0x100.
    minus_half = (0x800000 - 1).to_bytes(3, "big") + bytes([0x100 - 50])
    assert read_time2(_reader(minus_half), 2) == -timedelta(milliseconds=500)
    minus_micro = (0x800000000000 - 1).to_bytes(6, "big")
    assert read_time2(_reader(minus_micro), 6) == -timedelta(microseconds=1)
    most = (0x800000 + ((838 << 12) | (59 << 6) | 59)).to_bytes(3, "big")
    assert read_time2(_reader(most), 0) == timedelta(hours=838, minutes=59, seconds=59)
