"""Text values by type OID: the Python types psycopg returns, checked against psycopg itself.

These parsers serve the outbox relay (its ``occurred_at``); published column values go through
``readers.pg_types`` (see test_pg_types.py).  Intervals are printed as ISO 8601 now, which psycopg
does not read, so they are not compared here.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest

from liberation_assets.core.readers.pg_slot import SESSION_OPTIONS
from liberation_assets.core.readers.pgoutput import parser_for, pg_time_to_epoch_ms
from liberation_assets.stack import StackSettings


@pytest.mark.parametrize(("oid", "text", "expected"), [
    (16, "t", True), (16, "f", False),
    (20, "-9223372036854775808", -9223372036854775808), (23, "42", 42),
    (701, "0.1", 0.1), (701, "Infinity", float("inf")),
    (1700, "12.50", Decimal("12.50")),
    (3802, '{"a": [1, null]}', {"a": [1, None]}),
    (2950, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
    (17, "\\x00ff", b"\x00\xff"),
    (1082, "2024-02-29", date(2024, 2, 29)),
    (1114, "2024-02-29 13:14:15.123456", datetime(2024, 2, 29, 13, 14, 15, 123456)),
    (1184, "2024-02-29 13:14:15+00", datetime(2024, 2, 29, 13, 14, 15, tzinfo=timezone.utc)),
    (1184, "infinity", "infinity"),
    (1082, "0044-03-15 BC", "0044-03-15 BC"),
    (1083, "23:59:59.5", time(23, 59, 59, 500000)),
    (1186, "1 year 2 mons 3 days 04:05:06.5", timedelta(days=365 + 60 + 3, hours=4, minutes=5, seconds=6.5)),
    (1186, "-1 days +02:00:00", timedelta(days=-1, hours=2)),
    (1007, "{1,NULL,3}", [1, None, 3]),
    (1009, '{"a b","c\\"d",NULL,e}', ["a b", 'c"d', None, "e"]),
    (1007, "{{1,2},{3,4}}", [[1, 2], [3, 4]]),
    (25, "plain", "plain"), (99999, "user type", "user type"),
])
def test_parse(oid: int, text: str, expected: object) -> None:
    assert parser_for(oid)(text) == expected


def test_commit_time_epoch() -> None:
    assert pg_time_to_epoch_ms(0) == 946_684_800_000
    assert pg_time_to_epoch_ms(1_500) == 946_684_800_001


CASES = [
    ("true", "boolean"), ("32767", "smallint"), ("2147483647", "integer"), ("9007199254740993", "bigint"),
    ("1.5", "real"), ("3.141592653589793", "double precision"), ("-0.000100", "numeric(10,6)"),
    ("'{\"k\": {\"n\": 1.5}}'", "jsonb"), ("'[1, \"x\"]'", "json"), ("gen_random_uuid()", "uuid"),
    ("'\\xdeadbeef'", "bytea"), ("'2024-12-31'", "date"), ("'12:34:56.789'", "time"), ("'12:34:56+02'", "timetz"),
    ("'2024-12-31 23:59:59.999999'", "timestamp"), ("'2024-12-31 23:59:59.999999+05:30'", "timestamptz"),
    ("'Crème brûlée 水壶'", "text"), ("'x'", "varchar(3)"),
    ("ARRAY[1,2,NULL]", "int[]"), ("ARRAY['a,b','c']", "text[]"), ("ARRAY[1.5, 2]", "numeric[]"),
]


@pytest.mark.integration
@pytest.mark.parametrize(("literal", "type_name"), CASES)
def test_same_value_as_psycopg(stack: StackSettings, literal: str, type_name: str) -> None:
    """The text form the walsender writes (same session settings), parsed, equals what psycopg returns."""
    with psycopg.connect(host=stack.pg_host, port=stack.pg_port, user=stack.pg_user, password=stack.pg_password,
                         dbname="liberation", options=SESSION_OPTIONS) as connection:
        cursor = connection.execute(f"SELECT ({literal})::{type_name}")
        value = cursor.fetchone()[0]
        assert cursor.pgresult is not None and cursor.description is not None
        text = cursor.pgresult.get_value(0, 0).decode()  # the type's output function, as the walsender writes it
        oid = cursor.description[0].type_code
    assert parser_for(oid)(text) == value
