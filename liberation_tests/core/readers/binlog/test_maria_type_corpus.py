"""The MariaDB type corpus: every built-in type with its edge values, through every pattern, judged by the server.

One table per type family (and one whose database, table and column names need
quoting), in a source zone east (Asia/Seoul) and one west (America/New_York) of
UTC.  Each table is liberated twice: by the query pattern (snapshot, then a
poll and a reconcile after a round of inserts, updates, deletes and a
primary-key update) and by binlog CDC (its snapshot, then the same round from
the log).  The topics are read back with an independent read_committed
consumer, and every published value is handed back to the server, cast to the
column's type, and compared there with the stored value (``_PREDICATES``), so
the server, not our converters, decides equality.  The query topic and the CDC
topic must also hold byte-identical JSON for every row, and a row copied in
the round must be published exactly as its original was by the snapshot.
"""

from __future__ import annotations

import re
import subprocess
import time
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
import sqlalchemy as sa

from liberation_assets.core.contract.quarantine import quarantine_topic
from liberation_assets.core.engine.cdc_mysql import drain
from liberation_assets.core.engine.query_pattern import QueryPattern
from liberation_assets.core.spec import Spec
from liberation_assets.core.verify.run import verify
from liberation_tests.core.readers.binlog.cdc_support import source_of_database
from liberation_tests.fix_kafka import consume_all
from liberation_tests.support import mysql_admin

pytestmark = pytest.mark.integration

ZONES = ("Asia/Seoul", "America/New_York")
FSP = range(7)
CURSOR = "updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)"

NUMBERS = {
    "columns": [
        "ti TINYINT",
        "tiu TINYINT UNSIGNED",
        "si SMALLINT",
        "siu SMALLINT UNSIGNED",
        "mi MEDIUMINT",
        "miu MEDIUMINT UNSIGNED",
        "i INT",
        "iu INT UNSIGNED",
        "bi BIGINT",
        "biu BIGINT UNSIGNED",
        "b BOOLEAN",
        "dec65 DECIMAL(65,30)",
        "dec2 DECIMAL(10,2)",
        "f FLOAT",
        "d DOUBLE",
        "bit1 BIT(1)",
        "bit64 BIT(64)",
    ],
    "rows": [
        "-128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0, FALSE, "
        "-99999999999999999999999999999999999.999999999999999999999999999999, -12345678.90, -1.17549435e-38, "
        "2.2250738585072014e-308, b'0', b'0'",
        "127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, 9223372036854775807, "
        "18446744073709551615, TRUE, 99999999999999999999999999999999999.999999999999999999999999999999, 12.50, "
        "3.4028234e38, 1.7976931348623157e308, b'1', b'1111111111111111111111111111111111111111111111111111111111111111'",
        "0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 0.000000000000000000000000000001, 0.10, 0.1, 0.1, b'0', b'1'",
        "-1, 2, -1, 2, -1, 2, -1, 2, -1, 2, 1, 0, 0.00, 16777217, -0.0, b'1', b'1000000000000000000000000000000000000000000000000000000000000000'",
        "NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0.3979, 3.141592653589793, NULL, NULL",
    ],
}
TEXTS = {
    "columns": [
        "ch CHAR(5)",
        "vc VARCHAR(40)",
        "tt TINYTEXT",
        "t TEXT",
        "mt MEDIUMTEXT",
        "lt LONGTEXT",
        "e ENUM('a', '🚀 rocket', 'Ünï')",
        "s SET('x', '🎉', 'y z')",
        "j JSON",
    ],
    "rows": [
        "'ab  ', 'Grüße 🚀', '', 'tab\\there', 'line\\nbreak', '世界', '🚀 rocket', 'x,🎉', '{\"a\":  1, \"a\": 2}'",
        "'', '', 'x', '\"quoted\" \\\\ back', REPEAT('m', 1000), REPEAT('🌍', 3000), 'a', '', 'null'",
        "'  lead', 'trail  ', '🎉', 'ü', 'ß', '', 'Ünï', 'x,🎉,y z', '[1, 2.50, \"x\", {}]'",
        "NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL",
    ],
}
BINARIES = {
    "columns": [
        "bn BINARY(4)",
        "vb VARBINARY(10)",
        "tb TINYBLOB",
        "b BLOB",
        "mb MEDIUMBLOB",
        "lb LONGBLOB",
        "g GEOMETRY",
        "p POINT",
    ],
    "rows": [
        "x'01', x'00ff', x'', x'deadbeef00', REPEAT(x'00', 300), x'f09f9a80', ST_GeomFromText('LINESTRING(0 0, 1 1)'), "
        "ST_GeomFromText('POINT(1.5 -2)')",
        "x'', x'', x'00', x'', x'', x'', ST_GeomFromText('POLYGON((0 0, 1 0, 1 1, 0 0))', 4326), POINT(0, 0)",
        "x'ffffffff', x'00000000000000000000', x'7f', x'00', x'01', x'02', NULL, NULL",
        "NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL",
    ],
}
TEMPORALS = {
    "columns": [
        "d DATE",
        *[f"dt{n} DATETIME({n})" for n in FSP],
        *[f"ts{n} TIMESTAMP({n}) NULL" for n in FSP],
        *[f"t{n} TIME({n})" for n in FSP],
        "y YEAR",
    ],
}
SPECIALS = {
    "columns": ["i4 INET4", "i6 INET6", "u UUID"],
    "rows": [
        "'0.0.0.0', '::', '00000000-0000-0000-0000-000000000000'",
        "'255.255.255.255', '::ffff:1.2.3.4', '123e4567-e89b-12d3-a456-426655440000'",
        "'10.0.0.1', '2001:db8::1', 'ffffffff-ffff-ffff-ffff-ffffffffffff'",
        "'1.2.3.4', '::1.2.3.4', '6ccd780c-baba-1026-9564-5b8c656024db'",
        "NULL, NULL, NULL",
    ],
}
QUOTED = {  # in a database and a table whose names need quoting, as do the columns'
    "columns": ["`tick``ed` VARCHAR(10)", "`spa ce` INT", "`ünï cödé` DATETIME(3)"],
    "rows": [
        "'a`b', 1, '2024-03-10 02:30:00.5'",
        "'', NULL, NULL",
        "NULL, -1, '1999-12-31 23:59:59.999'",
        "'ü', 0, '2024-11-03 01:30:00'",
    ],
}


def _temporal_row(date: str, datetime_text: str, timestamp: str | None, time_text: str, year: str) -> str:
    stamp = "NULL" if timestamp is None else f"'{timestamp}'"
    return ", ".join([f"'{date}'", *[f"'{datetime_text}'"] * 7, *[stamp] * 7, *[f"'{time_text}'"] * 7, year])


TEMPORALS["rows"] = [
    _temporal_row("0000-00-00", "0000-00-00 00:00:00", "0000-00-00 00:00:00", "00:00:00", "0000"),
    _temporal_row("2024-00-15", "2024-02-00 10:11:12.123456", None, "-00:00:00.5", "2155"),
    _temporal_row("2024-07-01", "2024-07-01 12:00:00", "2024-07-01 12:00:00", "12:00:00", "2024"),  # deleted
    _temporal_row("2024-03-10", "2024-03-10 02:30:00.5", "2024-03-10 06:59:59.999999", "838:59:59", "1901"),  # NY gap
    _temporal_row(
        "2024-11-03", "2024-11-03 01:30:00.25", "2038-01-19 03:14:07.999999", "-838:59:59", "2024"
    ),  # overlap
    _temporal_row("1988-05-08", "1988-05-08 02:30:00", "1970-01-01 00:00:01", "100:00:00", "1999"),  # Seoul's 1988 gap
    _temporal_row("1969-07-20", "1969-07-20 20:17:40.000001", "2024-02-29 23:59:59", "-01:00:00", "2000"),
    _temporal_row("1000-01-01", "1000-01-01 00:00:00", None, "23:59:59.999999", "1970"),
    _temporal_row("9999-12-31", "9999-12-31 23:59:59.999999", None, "-00:00:00.000001", "2069"),  # NY: past year 9999
]
FAMILIES = {
    "numbers": NUMBERS,
    "texts": TEXTS,
    "binaries": BINARIES,
    "temporals": TEMPORALS,
    "specials": SPECIALS,
    "quoted": QUOTED,
}
QUOTED_TABLE = "we`ird tä ble"
OVERFLOWING = {("temporals", 9)}
"""(family, id) of rows that cannot be carried in America/New_York (their DATETIMEs pass year 9999 in UTC)."""


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _column_name(definition: str) -> str:
    quoted = re.match(r"`((?:``|[^`])*)` ", definition)
    return quoted.group(1).replace("``", "`") if quoted else definition.split(" ", 1)[0]


@pytest.fixture(scope="session")
def time_zones(stack: Any) -> None:
    """Load the two zones into the server's time zone tables, so CONVERT_TZ can judge naive DATETIMEs."""
    connection = mysql_admin(stack)
    with connection.cursor() as cursor:
        cursor.execute("SELECT Name FROM mysql.time_zone_name WHERE Name IN %s", (ZONES,))
        missing = set(ZONES) - {row[0] for row in cursor.fetchall()}
    connection.close()
    for zone in sorted(missing):
        sql = subprocess.run(
            ["mariadb-tzinfo-to-sql", f"/usr/share/zoneinfo/{zone}", zone], check=True, capture_output=True
        ).stdout
        subprocess.run(
            [
                "mariadb",
                "--no-defaults",
                f"-h{stack.mysql_host}",
                f"-P{stack.mysql_port}",
                f"-u{stack.mysql_user}",
                f"-p{stack.mysql_password}",
                "mysql",
            ],
            input=sql,
            check=True,
            capture_output=True,
        )


@pytest.fixture
def quoted_database(stack: Any, mysql_database: str):  # noqa: ANN201
    name = f"q`uo té ü_{mysql_database.rsplit('_', 1)[-1]}"
    connection = mysql_admin(stack)  # utf8mb4, the driver's default
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {_q(name)} CHARACTER SET utf8mb4")
    yield name
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {_q(name)}")
    connection.close()


def _location(family: str, database: str, quoted_database: str) -> tuple[str | None, str]:
    """(schema for the spec, table) of a family."""
    return (quoted_database, QUOTED_TABLE) if family == "quoted" else (None, family)


def _full_name(family: str, database: str, quoted_database: str) -> str:
    schema, table = _location(family, database, quoted_database)
    return f"{_q(schema or database)}.{_q(table)}"


def _spec(make_spec: Any, database: str, quoted_database: str, zone: str) -> tuple[Spec, str]:
    cdc_source = source_of_database(database)
    data = make_spec(mysql=database).model_dump(by_alias=True)
    data["sources"][cdc_source] = {**data["sources"]["mysql"], "cdc": {"heartbeat_every": "1s"}}
    streams: dict[str, Any] = {}
    for family in FAMILIES:
        schema, table = _location(family, database, quoted_database)
        base = {"table": table, "schema": schema, "key": ["id"], "timezone": zone}
        prefix = data["kafka"]["topic_prefix"]  # a topic name cannot hold what the quoted names do
        streams[f"q_{family}"] = {
            **base,
            "source": "mysql",
            "cursor": "updated_at",
            "patterns": ["snapshot", "query"],
            "topic": f"{prefix}.q_{family}",
        }
        streams[f"c_{family}"] = {
            **base,
            "source": cdc_source,
            "cursor": None,
            "patterns": ["cdc"],
            "topic": f"{prefix}.c_{family}",
        }
    data["streams"] = streams
    return Spec.model_validate(data), cdc_source


def _writer(engine: sa.Engine) -> sa.Connection:
    connection = engine.connect()
    connection.exec_driver_sql("SET SESSION sql_mode = '', time_zone = '+00:00'")  # zero dates are allowed
    return connection


def _create_and_fill(engine: sa.Engine, database: str, quoted_database: str) -> None:
    with _writer(engine) as connection:
        for family, spec in FAMILIES.items():
            name = _full_name(family, database, quoted_database)
            columns = ", ".join(["id INT PRIMARY KEY", *spec["columns"], CURSOR])
            connection.exec_driver_sql(f"CREATE TABLE {name} ({columns}) CHARACTER SET utf8mb4")
            values = ", ".join(f"({n}, {row}, DEFAULT)" for n, row in enumerate(spec["rows"], start=1))
            connection.exec_driver_sql(f"INSERT INTO {name} VALUES {values}")
        connection.commit()


def _round_of_changes(engine: sa.Engine, database: str, quoted_database: str) -> None:
    """Inserts (copies of rows 1 and 2), an update (row 1 takes row 2's values), a delete and a key change."""
    with _writer(engine) as connection:
        for family, spec in FAMILIES.items():
            name = _full_name(family, database, quoted_database)
            columns = [_q(_column_name(c)) for c in spec["columns"]]
            listed = ", ".join(columns)
            connection.exec_driver_sql(
                f"INSERT INTO {name} (id, {listed}) SELECT id + 100, {listed} FROM {name} WHERE id IN (1, 2)"
            )
            assignments = ", ".join(f"a.{c} = b.{c}" for c in columns)
            connection.exec_driver_sql(f"UPDATE {name} a JOIN {name} b ON b.id = 2 SET {assignments} WHERE a.id = 1")
            connection.exec_driver_sql(f"DELETE FROM {name} WHERE id = 3")
            connection.exec_driver_sql(f"UPDATE {name} SET id = 400 WHERE id = 4")
        connection.commit()


def _latest(bootstrap: str, topic: str) -> tuple[dict[int, bytes], dict[int, list[bytes]]]:
    """Key id → raw JSON of the live after-image; key id → the after-images of every event, oldest first."""
    state: dict[int, bytes] = {}
    history: dict[int, list[bytes]] = {}
    for message in consume_all(bootstrap, topic, must_settle=True):
        key = orjson.loads(message.key)["id"]
        if message.value is None:
            state.pop(key, None)
            continue
        envelope = orjson.loads(message.value)
        if envelope["op"] == "d":
            state.pop(key, None)
            continue
        after = orjson.dumps(envelope["after"], option=orjson.OPT_SORT_KEYS)
        state[key] = after
        history.setdefault(key, []).append(after)
    return state, history


# -- the server as the judge -----------------------------------------------------------------------------------
_SAME_TEXT = "HEX(CAST({c} AS CHAR CHARACTER SET utf8mb4)) = HEX(CAST(:{p} AS CHAR CHARACTER SET utf8mb4))"
_PREDICATES = {
    **dict.fromkeys(
        [
            "tinyint",
            "smallint",
            "mediumint",
            "int",
            "bigint",
            "decimal",
            "char",
            "varchar",
            "tinytext",
            "text",
            "mediumtext",
            "longtext",
            "enum",
            "set",
            "date",
            "inet4",
            "inet6",
            "uuid",
        ],
        _SAME_TEXT,
    ),
    "bit": "CAST({c} + 0 AS CHAR) = :{p}",
    "year": "CAST({c} + 0 AS CHAR) = :{p}",
    "float": "CAST(CAST({c} AS CHAR) AS DOUBLE) = CAST(:{p} AS DOUBLE)",  # FLOAT as the server prints it
    "double": "{c} = CAST(:{p} AS DOUBLE)",
    **dict.fromkeys(
        ["binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob", "geometry", "point"],
        "HEX({c}) = HEX(FROM_BASE64(:{p}))",
    ),
    "time": "{c} = CAST(:{p} AS TIME(6))",
    "timestamp": "{c} = CAST(:{p} AS DATETIME(6))",  # on a UTC session
    # In TIMESTAMP's range CONVERT_TZ places the naive value in the zone; outside it the server does not convert
    # (NULL here: judged below from the server's text, with the zone's rules).
    "datetime": "CASE WHEN {c} BETWEEN '1970-01-02' AND '2038-01-18' THEN CONVERT_TZ({c}, :zone, '+00:00') = "
    "CAST(:{p} AS DATETIME(6)) END",
}


def _parameter(value: Any, data_type: str) -> Any:
    if data_type in ("datetime", "timestamp") and isinstance(value, str) and value.endswith("Z"):
        return value[:-1].replace("T", " ")
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _judge(
    engine: sa.Engine, family: str, database: str, quoted_database: str, rows: dict[int, bytes], zone: str
) -> list[str]:
    """Every published value, handed to the server; returns what the server found different."""
    schema, table = _location(family, database, quoted_database)
    with engine.connect() as connection:
        types = {
            str(name): str(kind)
            for name, kind in connection.execute(
                sa.text(
                    "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = :s AND TABLE_NAME = :t"
                ),
                {"s": schema or database, "t": table},
            )
        }
    wrong: list[str] = []
    with engine.connect() as connection:
        for key, raw in rows.items():
            row = orjson.loads(raw)
            assert set(row) == set(types), f"{family} {key}: published columns {sorted(row)}"
            checks, params = [], {"zone": zone, "id": key}
            for n, (column, value) in enumerate(sorted(row.items())):
                c = _q(column)
                if value is None:
                    checks.append(f"{c} IS NULL")
                    continue
                kind = types[column]
                zero = kind in ("datetime", "timestamp") and not str(value).endswith("Z")
                checks.append((_SAME_TEXT if zero else _PREDICATES[kind]).format(c=c, p=f"p{n}"))
                params[f"p{n}"] = _parameter(value, kind)
            texts = ", ".join(
                f"HEX({_q(column)})"
                if _PREDICATES[types[column]].startswith("HEX({c})")
                else f"CAST({_q(column)} AS CHAR)"
                for column in sorted(row)
            )
            verdicts = connection.execute(
                sa.text(
                    f"SELECT {', '.join(checks)}, {texts} FROM {_full_name(family, database, quoted_database)} "
                    f"WHERE id = :id"
                ),
                params,
            ).one()
            count = len(row)
            for (column, value), verdict, text in zip(sorted(row.items()), verdicts[:count], verdicts[count:]):
                if verdict is None:  # a naive DATETIME outside CONVERT_TZ's range: the zone's rules decide
                    verdict = _outside_convert_tz(text, zone) == value
                if not verdict:
                    wrong.append(f"{family} id={key} {column}: published {value!r}, the server holds {text!r}")
    return wrong


def _outside_convert_tz(text: str, zone: str) -> str:
    local = datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))
    return orjson.dumps(local.astimezone(timezone.utc), option=orjson.OPT_UTC_Z).decode().strip('"')


@pytest.mark.parametrize("zone", ZONES)
def test_every_mariadb_type_is_published_exactly_by_every_pattern(
    make_spec, mysql_database, quoted_database, mysql_engine, kafka_bootstrap, time_zones, zone: str, tmp_path
) -> None:
    _create_and_fill(mysql_engine, mysql_database, quoted_database)
    spec, cdc_source = _spec(make_spec, mysql_database, quoted_database, zone)
    patterns = {family: QueryPattern(spec, f"q_{family}") for family in FAMILIES}
    quarantined: dict[str, int] = {}
    try:
        for family, pattern in patterns.items():
            quarantined[family] = pattern.snapshot().result.quarantined
        first = drain(spec, cdc_source)
        _round_of_changes(mysql_engine, mysql_database, quoted_database)
        time.sleep(1.5)  # past the source's 1 s safety lag
        for family, pattern in patterns.items():
            quarantined[family] += pattern.incremental().result.quarantined
            pattern.reconcile()
        second = drain(spec, cdc_source)
    finally:
        for pattern in patterns.values():
            pattern.close()

    overflowing = OVERFLOWING if zone == "America/New_York" else set()
    with mysql_engine.connect() as connection:
        source_ids = {
            family: {
                int(i)
                for i in connection.exec_driver_sql(
                    f"SELECT id FROM {_full_name(family, mysql_database, quoted_database)}"
                ).scalars()
            }
            for family in FAMILIES
        }
    wrong: list[str] = []
    for family in FAMILIES:
        polled, polled_history = _latest(kafka_bootstrap, spec.topic_for(f"q_{family}"))
        logged, logged_history = _latest(kafka_bootstrap, spec.topic_for(f"c_{family}"))
        expected_ids = source_ids[family] - {i for f, i in overflowing if f == family}
        assert set(polled) == expected_ids, f"q_{family}: keys {sorted(polled)}, source {sorted(expected_ids)}"
        assert set(logged) == expected_ids, f"c_{family}: keys {sorted(logged)}, source {sorted(expected_ids)}"
        # The same row is the same JSON whichever path carried it.
        for key in expected_ids:
            assert polled[key] == logged[key], f"{family} id={key}: poll {polled[key]!r} != binlog {logged[key]!r}"
        for original, copy in ((1, 101), (2, 102), (4, 400)):
            snapshot_image = orjson.loads(polled_history[original][0])
            for history in (polled_history, logged_history):
                image = orjson.loads(history[copy][-1])
                assert {k: v for k, v in image.items() if k not in ("id", "updated_at")} == {
                    k: v for k, v in snapshot_image.items() if k not in ("id", "updated_at")
                }, f"{family} {copy}"
        wrong += _judge(mysql_engine, family, mysql_database, quoted_database, polled, zone)
    assert not wrong, "\n".join(wrong)

    # liberation verify on every stream: a replica rebuilt from the topic, judged by the source server; only the
    # rows still in the quarantine may be missing.
    for family in FAMILIES:
        expected_missing = sorted(orjson.dumps({"id": i}) for f, i in overflowing if f == family)
        for stream in (f"q_{family}", f"c_{family}"):
            comparison = verify(spec, stream, replica=f"sqlite:///{tmp_path}/{stream}.sqlite").comparison
            assert (
                not comparison.extra and not comparison.different and sorted(comparison.missing) == expected_missing
            ), f"{stream}: {comparison.describe()}"

    # A value that cannot be carried is quarantined with its column named; the rest of the table went through.
    cdc_quarantined = first.results["c_temporals"].quarantined + second.results["c_temporals"].quarantined
    assert cdc_quarantined == len(overflowing)
    assert bool(quarantined["temporals"]) == bool(overflowing)  # the poll may read a row the snapshot read again
    assert sum(quarantined.values()) == quarantined["temporals"]
    if overflowing:
        [record] = [
            orjson.loads(m.value) for m in consume_all(kafka_bootstrap, quarantine_topic(spec.topic_for("c_temporals")))
        ]
        assert record["key"] == {"id": 9}
        assert (
            "column dt0: DATETIME 9999-12-31 23:59:59 in America/New_York is outside years 1..9999 in UTC"
            in record["failed_checks"]
        )
