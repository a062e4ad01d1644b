"""Helpers shared by the MySQL/MariaDB CDC tests: specs, replica checks, the binlog read independently."""

from __future__ import annotations

import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pymysql
import sqlalchemy as sa
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from liberation_assets.core.readers.binlog.client import current_coordinates
from liberation_assets.core.readers.binlog.position import coordinates_key
from liberation_assets.core.readers.table import reflect_stream_table
from liberation_assets.core.spec import Spec
from liberation_assets.core.verify.compare import Comparison, compare, source_state, topic_state
from liberation_assets.demo.schema import INTERNAL_COLUMNS, TABLES
from liberation_tests.fix_kafka import Message
from liberation_tests.fix_stack import spec_to_yaml
from liberation_tests.support import CliProcess

DEMO_KEYS = {
    "products": ["id"],
    "prices": ["product_id", "currency"],
    "inventory": ["product_id", "warehouse"],
    "orders": ["id"],
    "payments": ["id"],
}


def demo_streams(*names: str) -> dict[str, dict[str, Any]]:
    """CDC streams of demo tables, projected without their internal columns."""
    tables = {table.name: table for table in TABLES}
    return {
        name: {
            "table": name,
            "key": DEMO_KEYS[name],
            "projection": [c.name for c in tables[name].c if c.name not in INTERNAL_COLUMNS[name]],
        }
        for name in names
    }


def cdc_spec(make_spec: Any, database: str, streams: dict[str, dict[str, Any]], **cdc: Any) -> Spec:
    """One MariaDB source whose streams use the cdc pattern.

    The source is named after the test's database (see ``source_of``): its
    transactional id ``liberation.<source>.cdc`` is cluster-wide, so tests that
    run side by side must not share it.
    """
    name = source_of_database(database)
    for stream in streams.values():
        stream.setdefault("source", name)
        stream.setdefault("patterns", ["cdc"])
        stream.setdefault("cursor", None)
    data = make_spec(mysql=database).model_dump(by_alias=True)
    data["sources"] = {name: {**data["sources"]["mysql"], "cdc": {"heartbeat_every": "1s", **cdc}}}
    data["streams"] = streams
    return Spec.model_validate(data)


def source_of_database(database: str) -> str:
    return f"my_{database.rsplit('_', 1)[-1]}"


def source_of(spec: Spec) -> str:
    [name] = spec.sources
    return name


def write_spec(spec: Spec, tmp_path: Path) -> Path:
    path = tmp_path / "liberation.yaml"
    path.write_text(spec_to_yaml(spec))
    return path


def replica_comparison(spec: Spec, engine: sa.Engine, name: str) -> Comparison:
    stream = spec.streams[name]
    table = reflect_stream_table(engine, stream.model_copy(update={"cursor": None}), name)
    from zoneinfo import ZoneInfo

    return compare(
        source_state(engine, table, ZoneInfo(spec.timezone_for(name))),
        topic_state(spec.kafka.resolved_bootstrap_servers(), spec.topic_for(name)),
    )


def assert_replicas_match(spec: Spec, engine: sa.Engine) -> dict[str, int]:
    rows = {}
    for name in spec.streams:
        result = replica_comparison(spec, engine, name)
        assert result.matches, f"{name}: {result.describe()}"
        rows[name] = result.source_rows
    return rows


def coordinates(engine: sa.Engine) -> tuple[str, int]:
    with engine.connect() as connection:
        return current_coordinates(connection)


def binlog_changes(
    stack: Any, database: str, tables: set[str], start: tuple[str, int], end: tuple[str, int]
) -> Counter:
    """(table, file, rows event end, row index) of every row change in the binlog, read straight with the library."""
    reader = BinLogStreamReader(
        {"host": stack.mysql_host, "port": stack.mysql_port, "user": stack.mysql_user, "passwd": stack.mysql_password},
        server_id=3_000_000 + zlib.crc32(database.encode()) % 1_000_000,
        log_file=start[0],
        log_pos=start[1],
        resume_stream=True,
        blocking=False,
        only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent],
        only_schemas=[database],
        only_tables=sorted(tables),
        enable_logging=False,
    )
    changes: Counter = Counter()
    try:
        for event in reader:
            if coordinates_key(reader.log_file, event.packet.log_pos) > coordinates_key(*end):
                break
            for index, _ in enumerate(event.rows):
                changes[(event.table, reader.log_file, event.packet.log_pos, index)] += 1
    finally:
        reader.close()
    return changes


def published_changes(messages_by_table: dict[str, list[Message]]) -> Counter:
    """The same identities, from the change events in the topics (snapshot reads and tombstones left out)."""
    changes: Counter = Counter()
    for table, messages in messages_by_table.items():
        for message in messages:
            envelope = message.envelope
            if envelope is None or envelope["op"] == "r" or envelope["source"].get("reconciliation"):
                continue
            source = envelope["source"]
            changes[(table, source["file"], source["event"], source["row"])] += 1
    return changes


def snapshot_reads(messages: list[Message]) -> Counter:
    """How often each key was read by a snapshot."""
    return Counter(m.key for m in messages if m.value is not None and orjson.loads(m.value)["op"] == "r")


def purge_binlogs_before_now(stack: Any, must_go: str, timeout: float = 60) -> None:
    """Rotate the binlog and purge every older file, as retention would.

    The server keeps a file that a replica connection still reads; a reader
    that just disconnected keeps its dump thread until its next heartbeat
    fails, so retry until ``must_go`` is gone.
    """
    admin = pymysql.connect(
        host=stack.mysql_host,
        port=stack.mysql_port,
        user=stack.mysql_user,
        password=stack.mysql_password,
        autocommit=True,
    )
    deadline = time.monotonic() + timeout
    try:
        with admin.cursor() as cursor:
            cursor.execute("FLUSH BINARY LOGS")
            while True:
                cursor.execute("SHOW MASTER STATUS")
                cursor.execute("PURGE BINARY LOGS TO %s", (cursor.fetchone()[0],))
                cursor.execute("SHOW BINARY LOGS")
                if must_go not in [row[0] for row in cursor.fetchall()]:
                    return
                assert time.monotonic() < deadline, f"{must_go} is still held by a replica connection"
                time.sleep(0.5)
    finally:
        admin.close()


class FollowProcess(CliProcess):
    """``liberation follow <source>`` in a subprocess, with its output kept (also in ``log_file``) for failure messages."""

    def __init__(self, spec_file: Path, source: str, log_file: Path):
        super().__init__(["--spec", str(spec_file), "follow", source], log_file=log_file)
        self.log_file = log_file

    def wait_for(self, text: str, timeout: float = 120) -> bool:
        """Wait until the output shows ``text``; False if the process ended or the time ran out first."""
        try:
            self.wait_for_line(text, timeout, every=0.02)  # a kill point inside a short phase
            return True
        except AssertionError:
            return False

    def output(self) -> str:
        return self.output_text()[-3000:]
