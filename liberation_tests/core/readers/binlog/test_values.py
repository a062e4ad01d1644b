"""Binlog values become exactly what PyMySQL and SQLAlchemy return for the same column."""

from __future__ import annotations

import struct
from datetime import time, timedelta
from decimal import Decimal

from pymysqlreplication.constants import FIELD_TYPE
from sqlalchemy.dialects import mysql

from liberation_assets.core.readers.binlog.log import ColumnMeta
from liberation_assets.core.readers.binlog.values import (column_converter, dbapi_converter, float_as_mariadb,
                                                          float_as_mysql)
from liberation_tests.core.readers.binlog.support import DIALECT


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


def test_bit_set_and_json_take_their_text_protocol_form() -> None:
    bit = dbapi_converter(ColumnMeta("b", FIELD_TYPE.BIT, bit_bytes=1), "mariadb")
    members = dbapi_converter(ColumnMeta("s", FIELD_TYPE.SET, set_values=("x", "y", "z")), "mariadb")
    document = dbapi_converter(ColumnMeta("j", FIELD_TYPE.JSON), "mysql")
    assert bit is not None and bit("10101") == b"\x15"
    assert members is not None and members({"z", "x"}) == "x,z" and members(set()) == ""
    assert document is not None and document({b"a": [1, b"\xc3\xbc"]}) == '{"a":[1,"\u00fc"]}'


def test_sqlalchemy_result_processors_run_after_the_dbapi_step() -> None:
    double = column_converter(ColumnMeta("d", FIELD_TYPE.DOUBLE), mysql.DOUBLE(asdecimal=True), DIALECT, "mariadb")
    clock = column_converter(ColumnMeta("t", FIELD_TYPE.TIME2), mysql.TIME(fsp=2), DIALECT, "mariadb")
    members = column_converter(ColumnMeta("s", FIELD_TYPE.SET, set_values=("x", "y")), mysql.SET("x", "y"), DIALECT, "mariadb")
    bits = column_converter(ColumnMeta("b", FIELD_TYPE.BIT, bit_bytes=1), mysql.BIT(5), DIALECT, "mariadb")
    assert double is not None and double(0.1) == Decimal("0.1000000000")
    assert clock is not None and clock(timedelta(hours=1, seconds=2, microseconds=500000)) == time(1, 0, 2, 500000)
    assert members is not None and members({"y", "x"}) == {"x", "y"}
    assert bits is not None and bits("10101") == 21


def test_columns_that_already_agree_get_no_converter() -> None:
    assert column_converter(ColumnMeta("id", FIELD_TYPE.LONGLONG), mysql.BIGINT(), DIALECT, "mariadb") is None
    assert column_converter(ColumnMeta("n", FIELD_TYPE.NEWDECIMAL), mysql.DECIMAL(12, 2), DIALECT, "mariadb") is None
    assert column_converter(ColumnMeta("n", FIELD_TYPE.VARCHAR, charset="utf8mb4"), None, DIALECT, "mariadb") is None
