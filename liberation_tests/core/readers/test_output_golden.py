"""The records we publish stay byte-for-byte the same: a golden file of every documented type, every path.

The PostgreSQL and MariaDB type corpora go through the snapshot, the query poll and the log (pgoutput, binlog),
in every value format, and every record of the stream topics and their quarantines (key, value, headers) is
compared with ``golden/*.jsonl``, committed from the code before the speed work (issue 18).  A speed change
must keep it passing.  Only what differs from run to run is masked: times (``ts_ms``, ``updated_at``, ...),
log positions, transaction ids and the test's database names.

To record the golden files again after an intended change of output: ``LIBERATION_GOLDEN_RECORD=1 pytest ...``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from liberation_assets.core.engine import cdc_mysql, cdc_postgres
from liberation_assets.core.engine.query_pattern import QueryPattern
from liberation_assets.core.spec import Spec
from liberation_tests.core.readers import test_pg_type_corpus as pg_corpus
from liberation_tests.core.readers.binlog import test_maria_type_corpus as maria_corpus
from liberation_tests.core.readers.binlog.test_maria_type_corpus import quoted_database, time_zones  # noqa: F401 - fixtures
from liberation_tests.fix_kafka import consume_all

pytestmark = pytest.mark.integration

GOLDEN = Path(__file__).parent / "golden"
VOLATILE = frozenset(
    {
        "ts_ms",
        "ts_us",
        "ts_ns",
        "event_ts_ms",
        "quarantined_ts_ms",
        "updated_at",
        "lsn",
        "txId",
        "xmin",
        "sequence",
        "file",
        "pos",
        "gtid",
        "server_id",
        "thread",
        "event",
        "position",
    }
)
"""Fields that differ between two runs of the same scenario; every other byte must be the same."""
FORMATS = {"": "debezium", "j": "connect-json", "f": "flat"}


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("<volatile>" if k in VOLATILE and v is not None else _mask(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value


def _document(raw: bytes | None, names: dict[str, str]) -> Any:
    if raw is None:
        return None
    text = raw.decode()
    for name, placeholder in names.items():
        text = text.replace(name, placeholder)
    return _mask(orjson.loads(text))


def _records(spec: Spec, streams: list[str], names: dict[str, str]) -> list[str]:
    """One line per record, topic by topic and partition by partition in offset order."""
    bootstrap = spec.kafka.resolved_bootstrap_servers()
    lines: list[str] = []
    for stream in streams:
        for topic in (spec.topic_for(stream), spec.topic_for(stream) + ".quarantine"):
            messages = sorted(consume_all(bootstrap, topic), key=lambda m: (m.partition, m.offset))
            for message in messages:
                headers = {k: (v.decode() if v is not None else None) for k, v in sorted(message.headers.items())}
                line = {
                    "stream": stream,
                    "quarantine": topic.endswith(".quarantine"),
                    "partition": message.partition,
                    "key": _document(message.key, names),
                    "value": _document(message.value, names),
                    "headers": _mask(headers),
                }
                lines.append(orjson.dumps(line, option=orjson.OPT_SORT_KEYS).decode())
    return lines


def _compare(name: str, lines: list[str]) -> None:
    path = GOLDEN / name
    if os.environ.get("LIBERATION_GOLDEN_RECORD"):
        GOLDEN.mkdir(exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
        return
    expected = path.read_text().splitlines()
    changed = [f"line {i + 1}:\n  golden {e}\n  now    {n}" for i, (e, n) in enumerate(zip(expected, lines)) if e != n]
    assert len(lines) == len(expected) and not changed, (
        f"{name}: {len(lines)} records now, {len(expected)} in the golden file; first differences:\n"
        + "\n".join(changed[:5])
    )


def _with_formats(data: dict[str, Any], query_prefix: str = "q_") -> None:
    """A connect-json and a flat copy of every query stream (the log streams stay in the default format)."""
    for name, stream in list(data["streams"].items()):
        if name.startswith(query_prefix):
            for letter, value_format in FORMATS.items():
                if letter:
                    data["streams"][f"{letter}{name}"] = {
                        **stream,
                        "format": value_format,
                        "topic": f"{data['kafka']['topic_prefix']}.{letter}{name}",
                    }


def test_postgres_records_match_the_golden_file(make_spec, pg_database, pg_engine) -> None:
    pg_corpus._create(pg_engine)
    data = pg_corpus._spec(make_spec, pg_database).model_dump(by_alias=True)
    _with_formats(data)
    spec = Spec.model_validate(data)
    polled = [name for name in spec.streams if not name.startswith("c_")]
    patterns = [QueryPattern(spec, name) for name in polled]
    try:
        for pattern in patterns:
            pattern.snapshot()
        cdc_postgres.drain(spec, f"pg_{pg_database}")
        pg_corpus._change(pg_engine)
        for pattern in patterns:
            pattern.incremental()
            pattern.reconcile()
        cdc_postgres.drain(spec, f"pg_{pg_database}")
    finally:
        for pattern in patterns:
            pattern.close()
    _compare(
        "postgres.jsonl",
        _records(spec, sorted(spec.streams), {pg_database: "<db>", spec.kafka.topic_prefix: "<prefix>"}),
    )


def test_mariadb_records_match_the_golden_file(
    make_spec, mysql_database, quoted_database, mysql_engine, time_zones
) -> None:
    zone = "America/New_York"
    maria_corpus._create_and_fill(mysql_engine, mysql_database, quoted_database)
    spec, cdc_source = maria_corpus._spec(make_spec, mysql_database, quoted_database, zone)
    data = spec.model_dump(by_alias=True)
    data["sources"]["mysql"]["safety_lag"] = "0s"  # no re-read window: a poll publishes each change once
    _with_formats(data)
    spec = Spec.model_validate(data)
    polled = [name for name in spec.streams if not name.startswith("c_")]
    patterns = [QueryPattern(spec, name) for name in polled]
    try:
        for pattern in patterns:
            pattern.snapshot()
        cdc_mysql.drain(spec, cdc_source)
        maria_corpus._round_of_changes(mysql_engine, mysql_database, quoted_database)
        time.sleep(1.5)  # past the source's 1 s safety lag
        for pattern in patterns:
            pattern.incremental()
            pattern.reconcile()
        cdc_mysql.drain(spec, cdc_source)
    finally:
        for pattern in patterns:
            pattern.close()
    names = {
        quoted_database: "<quoted db>",
        cdc_source: "<cdc source>",
        mysql_database: "<db>",
        spec.kafka.topic_prefix: "<prefix>",
    }
    _compare("mariadb.jsonl", _records(spec, sorted(spec.streams), names))
