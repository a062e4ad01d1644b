"""The verify asks the source server, so it cannot be fooled by liberation's own conversions.

Records are written by hand into the stream's topic, in today's (old) forms
that silently corrupted values and in the forms of the type mapping (new), and
the database holds the true values.  Every old form must be reported with its
key, its column and both values; every new form must pass.  Nothing here
depends on the readers' converters.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from confluent_kafka import Producer

from liberation_assets.cli import main
from liberation_assets.core.engine.runtime import StreamRuntime
from liberation_assets.core.verify.run import verify
from liberation_assets.core.verify.store import replica_table_name
from liberation_tests.support import write_spec

pytestmark = pytest.mark.integration
ZONE = "Asia/Seoul"


def _publish(spec: Any, stream: str, rows: list[dict[str, Any]], key: tuple[str, ...] = ("id",)) -> None:
    StreamRuntime(spec, stream, "query").ensure_topics()
    producer = Producer({"bootstrap.servers": spec.kafka.resolved_bootstrap_servers()})
    for row in rows:
        envelope = {"before": None, "after": row, "op": "r", "source": {"ts_ms": 1}, "ts_ms": 1}
        producer.produce(
            spec.topic_for(stream), key=orjson.dumps({k: row[k] for k in key}), value=orjson.dumps(envelope)
        )
    assert producer.flush(30) == 0


def _cases(new: dict[str, Any], old: dict[str, list[Any]]) -> tuple[list[dict[str, Any]], set[tuple[str, str]]]:
    """Row 1 all new; then one row per old form, new everywhere else; and the (key, column) each must be reported at."""
    rows = [{"id": 1, **new}]
    expected: set[tuple[str, str]] = set()
    next_id = 2
    for column, values in old.items():
        for value in values:
            rows.append({"id": next_id, **new, column: value})
            expected.add((f'{{"id":{next_id}}}', column))
            next_id += 1
    return rows, expected


# ---------------------------------------------------------------- PostgreSQL

PG_NEW: dict[str, Any] = {
    "ts_naive": "2024-03-09T21:59:59.999999Z",  # 2024-03-10 06:59:59.999999 in Seoul
    "tstz": "2024-03-10T06:59:59.999999Z",
    "ttz": "10:30:00+02:00",
    "cash": "1234.56",
    "iv": "P1M2DT3H4M5.678S",
    "f": "NaN",
    "f2": 0.1,
    "n": "0.10",
    "dom": 5,
    "js": '{"a":1,"a":2}',
    "jb_null": "null",
    "jb": '{"a": [1, 2]}',
    "tsa": ["2024-01-01T03:00:00Z", None],  # 12:00 in Seoul
    "bytes": "3q2+7w==",
    "ch": "ab  ",
    "d": "0000-01-01",  # 1 BC
    "big_d": "+10000-01-01",
    "nul": None,
    "ints2": [[1, 2], [3, None]],
    "empty": [],
    "tstz_big": "+10000-01-01T00:00:00Z",
    "tstz_bc": "0000-12-31T23:00:00Z",  # 1 BC
    "t24": "24:00:00",
    "inf": "infinity",
    "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "ip": "192.168.0.1/24",
}
PG_OLD: dict[str, list[Any]] = {
    "ttz": ["10:30:00"],  # offset lost
    "cash": ["$1,234.56"],  # locale text
    "iv": [2775845.678],  # seconds
    "f": [None],  # NaN as null
    "dom": ["5"],  # a domain over int as a string
    "js": ['{"a":2}'],  # duplicate keys lost
    "jb_null": [None],  # JSON null as SQL NULL
    "jb": [{"a": [1, 2]}],  # nested
    "tsa": [["2024-01-01T12:00:00Z", None]],  # naive array elements not read in the zone
    "ts_naive": ["2024-03-10T06:59:59.999999Z"],  # not read in the zone
    "n": ["0.1"],  # scale lost
    "bytes": ["3q2+7w"],  # not base64 of the bytes
    "ch": ["ab"],  # padding lost
    "d": ["0001-01-01"],  # BC lost
    "ints2": [[1, 2, 3, None]],  # dimensions lost
    "tstz_bc": ["0001-12-31T23:00:00Z"],
    "inf": [None],
}


@pytest.fixture
def pg_truth(make_spec, pg_database, pg_engine):
    rows = 1 + sum(len(v) for v in PG_OLD.values())
    with pg_engine.begin() as c:
        c.execute(sa.text("CREATE DOMAIN small_count AS int"))
        c.execute(
            sa.text(
                "CREATE TABLE truth (id int PRIMARY KEY, ts_naive timestamp(6), tstz timestamptz, ttz timetz, cash money, iv interval, "
                "f float8, f2 float8, n numeric(10,2), dom small_count, js json, jb_null jsonb, jb jsonb, tsa timestamp[], bytes bytea, "
                "ch char(4), d date, big_d date, nul text, ints2 int[], empty text[], tstz_big timestamptz, tstz_bc timestamptz, t24 time, "
                "inf timestamp, u uuid, ip inet)"
            )
        )
        c.exec_driver_sql(
            "INSERT INTO truth SELECT i, '2024-03-10 06:59:59.999999', '2024-03-10 06:59:59.999999+00', '10:30:00+02', 1234.56, "
            """'1 mon 2 days 03:04:05.678', 'NaN', 0.1, 0.10, 5, '{"a":1,"a":2}', 'null', '{"a": [1, 2]}', """
            "ARRAY['2024-01-01 12:00:00'::timestamp, NULL], '\\xdeadbeef', 'ab', '0001-01-01 BC', '10000-01-01', NULL, "
            "'{{1,2},{3,NULL}}', '{}', '10000-01-01 00:00:00+00', '0001-12-31 23:00:00+00 BC', '24:00:00', 'infinity', "
            "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '192.168.0.1/24' "
            f"FROM generate_series(1, {rows}) i"
        )
    return make_spec(
        pg=pg_database,
        streams={
            "truth": {
                "source": "pg",
                "table": "truth",
                "key": ["id"],
                "timezone": ZONE,
                "cursor": None,
                "patterns": ["snapshot"],
            }
        },
    )


def test_postgresql_old_forms_are_reported_and_new_forms_pass(pg_truth, tmp_path, capsys) -> None:
    spec = pg_truth
    rows, expected = _cases(PG_NEW, PG_OLD)
    _publish(spec, "truth", rows)
    url = f"sqlite:///{tmp_path}/replica.sqlite"
    comparison = verify(spec, "truth", replica=url).comparison
    found = {(d.key, d.column) for d in comparison.details}
    assert found == expected, comparison.describe(limit=100)
    assert sorted(comparison.different) == sorted(k.encode() for k, _c in expected)
    assert not comparison.missing and not comparison.extra
    money = next(d for d in comparison.details if d.column == "cash")
    assert money.published == "$1,234.56" and money.source == "$1,234.56" and "cannot read" in money.note
    nan = next(d for d in comparison.details if d.column == "f")
    assert nan.source == "NaN" and nan.published is None

    spec_file = write_spec(spec, tmp_path, "spec.yaml")
    code = main(["--spec", str(spec_file), "verify", "truth", "--replica", url])
    out = capsys.readouterr().out
    assert code == 1 and 'key {"id":2} column ttz' in out and "'10:30:00+02'" in out

    _publish(spec, "truth", [{**PG_NEW, "id": row["id"]} for row in rows])  # every row again, in the new forms
    assert verify(spec, "truth", replica=url).comparison.matches


def test_a_corrupted_replica_value_names_key_column_and_both_values(pg_truth, tmp_path) -> None:
    spec = pg_truth
    rows = [{**PG_NEW, "id": i} for i in range(1, 1 + 1 + sum(len(v) for v in PG_OLD.values()))]
    _publish(spec, "truth", rows)
    path = tmp_path / "replica.sqlite"
    assert verify(spec, "truth", replica=f"sqlite:///{path}").comparison.matches
    with sqlite3.connect(path) as db:
        db.execute(
            f"UPDATE {replica_table_name('truth')} SET document = json_set(document, '$.n', '0.11') WHERE key = '{{\"id\":3}}'"
        )
        db.execute(f"DELETE FROM {replica_table_name('truth')} WHERE key = '{{\"id\":4}}'")
    comparison = verify(spec, "truth", replica=f"sqlite:///{path}").comparison
    assert not comparison.matches
    assert [(d.key, d.column, d.source, d.published) for d in comparison.details] == [('{"id":3}', "n", "0.10", "0.11")]
    assert comparison.different == [b'{"id":3}'] and comparison.missing == [b'{"id":4}'] and not comparison.extra
    assert comparison.metadata()["different_values"] == 1


def test_projection_soft_delete_and_composite_key(make_spec, pg_database, pg_engine, tmp_path) -> None:
    with pg_engine.begin() as c:
        c.execute(
            sa.text(
                'CREATE TABLE "Odd Table" (region text, "Id" int, "the name" text, gone timestamptz, secret text, '
                'PRIMARY KEY (region, "Id"))'
            )
        )
        c.execute(
            sa.text("""INSERT INTO "Odd Table" VALUES ('eu', 1, 'one', NULL, 's'), ('eu', 2, 'two', now(), 's'),
                             ('us', 1, 'uno', NULL, 's')""")
        )
    spec = make_spec(
        pg=pg_database,
        streams={
            "odd": {
                "source": "pg",
                "table": "Odd Table",
                "key": ["region", "Id"],
                "projection": {"region": "region", "id": "Id", "name": "the name"},
                "topic": f"{pg_database}.odd",
                "soft_delete": {"column": "gone"},
                "cursor": None,
                "patterns": ["snapshot"],
            }
        },
    )
    _publish(
        spec,
        "odd",
        [{"region": "eu", "id": 1, "name": "one"}, {"region": "us", "id": 1, "name": "uno"}],
        key=("region", "id"),
    )
    url = f"sqlite:///{tmp_path}/replica.sqlite"
    assert verify(spec, "odd", replica=url).comparison.matches
    _publish(
        spec, "odd", [{"region": "eu", "id": 2, "name": "two"}], key=("region", "id")
    )  # soft-deleted in the source
    _publish(
        spec, "odd", [{"region": "us", "id": "1", "name": "uno"}], key=("region", "id")
    )  # a key in another JSON form
    comparison = verify(spec, "odd", replica=url).comparison
    assert comparison.extra == [b'{"region":"eu","id":2}', b'{"region":"us","id":"1"}'] and comparison.source_rows == 2
    assert not comparison.different and not comparison.missing


# ---------------------------------------------------------------- MariaDB

MY_NEW: dict[str, Any] = {
    "ts": "2024-03-10T06:59:59.999999Z",  # a TIMESTAMP is an instant
    "dt": "2024-03-09T21:59:59.999999Z",  # naive DATETIME, 06:59:59.999999 in Seoul
    "dbl": 0.1,
    "tiny_dbl": 2.2250738585072014e-308,
    "neg_time": "-01:00:00",
    "long_time": "100:00:00",
    "zero_date": "0000-00-00",
    "dec": "12.50",
    "txt": "Ünïcode 🎉",
    "bin": "AQIAAA==",
    "flag": 1,
    "nul": None,
    "fl": 1.5,
    "st": "a,b",
    "en": "🎉y",
    "ub": 18446744073709551615,
    "tf": "12:00:00.5",
}
MY_OLD: dict[str, list[Any]] = {
    "ts": ["2024-03-09T21:59:59.999999+00:00"],  # shifted by the source's zone
    "dbl": ["0.1000000000"],  # 10-decimal string
    "tiny_dbl": ["0.0000000000"],
    "neg_time": ["23:00:00"],  # wrapped
    "long_time": ["04:00:00"],
    "zero_date": [None],  # the binlog's null
    "dt": ["2024-03-10T06:59:59.999999Z"],  # not read in the zone
    "dec": ["12.5"],
    "txt": ["ünïcode 🎉"],  # a case change the collation would hide
    "bin": ["AQI="],  # padding lost
    "tf": ["12:00:00"],  # fraction lost
}


@pytest.fixture
def my_truth(make_spec, mysql_database, mysql_engine):
    rows = 1 + sum(len(v) for v in MY_OLD.values())
    with mysql_engine.begin() as c:
        c.execute(sa.text("SET SESSION sql_mode = '', time_zone = '+00:00'"))
        c.execute(
            sa.text(
                "CREATE TABLE truth (id int PRIMARY KEY, ts timestamp(6) NULL, dt datetime(6), dbl double, tiny_dbl double, neg_time time, "
                "long_time time, zero_date date, `dec` decimal(10,2), txt varchar(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci, "
                "bin binary(4), flag tinyint(1), nul text, fl float, st set('a','b'), en enum('x','🎉y'), ub bigint unsigned, tf time(6)) "
                "CHARACTER SET utf8mb4"
            )
        )
        for i in range(1, rows + 1):
            c.execute(
                sa.text(
                    "INSERT INTO truth VALUES (:i, '2024-03-10 06:59:59.999999', '2024-03-10 06:59:59.999999', 0.1, 2.2250738585072014e-308, "
                    "'-01:00:00', '100:00:00', '0000-00-00', 12.50, 'Ünïcode 🎉', x'0102', 1, NULL, 1.5, 'a,b', '🎉y', "
                    "18446744073709551615, '12:00:00.5')"
                ),
                {"i": i},
            )
    return make_spec(
        mysql=mysql_database,
        streams={
            "truth": {
                "source": "mysql",
                "table": "truth",
                "key": ["id"],
                "timezone": ZONE,
                "cursor": None,
                "patterns": ["snapshot"],
            }
        },
    )


def test_mariadb_old_forms_are_reported_and_new_forms_pass(my_truth, tmp_path) -> None:
    spec = my_truth
    rows, expected = _cases(MY_NEW, MY_OLD)
    _publish(spec, "truth", rows)
    url = f"sqlite:///{tmp_path}/replica.sqlite"
    comparison = verify(spec, "truth", replica=url).comparison
    found = {(d.key, d.column) for d in comparison.details}
    assert found == expected, comparison.describe(limit=100)
    assert not comparison.missing and not comparison.extra
    wrapped = next(d for d in comparison.details if d.column == "neg_time")
    assert wrapped.source == "-01:00:00" and wrapped.published == "23:00:00"

    _publish(spec, "truth", [{**MY_NEW, "id": row["id"]} for row in rows])
    assert verify(spec, "truth", replica=url).comparison.matches


def test_mariadb_composite_key_with_a_naive_datetime_projection_and_soft_delete(
    make_spec, mysql_database, mysql_engine, tmp_path
) -> None:
    with mysql_engine.begin() as c:
        c.exec_driver_sql(
            "CREATE TABLE `odd ``table` (id INT, `at` DATETIME(6), `the name` VARCHAR(20), gone TINYINT(1), "
            "PRIMARY KEY (id, `at`))"
        )
        c.exec_driver_sql(
            "INSERT INTO `odd ``table` VALUES (1, '2024-03-10 06:59:59.5', 'one', 0), (2, '2024-03-10 07:00:00', 'two', 1)"
        )
    spec = make_spec(
        mysql=mysql_database,
        streams={
            "odd": {
                "source": "mysql",
                "table": "odd `table",
                "key": ["id", "at"],
                "projection": {"id": "id", "at": "at", "name": "the name"},
                "soft_delete": {"column": "gone", "deleted_when": "true"},
                "timezone": ZONE,
                "cursor": None,
                "patterns": ["snapshot"],
                "topic": f"{mysql_database}.odd",
            }
        },
    )
    _publish(spec, "odd", [{"id": 1, "at": "2024-03-09T21:59:59.5Z", "name": "one"}], key=("id", "at"))
    url = f"sqlite:///{tmp_path}/replica.sqlite"
    assert verify(spec, "odd", replica=url).comparison.matches
    _publish(spec, "odd", [{"id": 1, "at": "2024-03-09T21:59:59.5Z", "name": "One"}], key=("id", "at"))
    comparison = verify(spec, "odd", replica=url).comparison
    assert [(d.column, d.source, d.published) for d in comparison.details] == [("name", "one", "One")]


def test_a_topic_full_of_values_the_server_refuses_is_reported_row_by_row(
    make_spec, pg_database, pg_engine, tmp_path
) -> None:
    with pg_engine.begin() as c:
        c.execute(sa.text("CREATE TABLE cash (id int PRIMARY KEY, amount money, note text)"))
        c.execute(sa.text("INSERT INTO cash SELECT i, 1234.56, 'n' FROM generate_series(1, 3000) i"))
    spec = make_spec(
        pg=pg_database,
        streams={"cash": {"source": "pg", "table": "cash", "key": ["id"], "cursor": None, "patterns": ["snapshot"]}},
    )
    _publish(
        spec, "cash", [{"id": i, "amount": "$1,234.56", "note": "n"} for i in range(1, 3001)]
    )  # locale text, as before
    comparison = verify(spec, "cash", replica=f"sqlite:///{tmp_path}/replica.sqlite").comparison
    assert len(comparison.different) == 3000 and not comparison.missing and not comparison.extra
    assert {d.column for d in comparison.details} == {"amount"} and "cannot read" in comparison.details[0].note
