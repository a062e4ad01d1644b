"""Before/after of the MariaDB binlog CDC hot path on real binlog bytes, per event, in one process per version.

    .venv/bin/python -m bench.binlog_hotpath 0967644 --rows 20000 --rounds 7
    .venv/bin/python -m bench.binlog_hotpath --profile            # cProfile of the stages, this version
    .venv/bin/python -m bench.binlog_hotpath --lever reader       # one lever off and on in ONE process

Loads the bench's 8-column orders and a shape of the demo's products (12 columns: JSON text, DECIMAL, BOOLEAN,
DATETIME(6), NULLs) into the stack's MariaDB, updates every row once (10,000 rows per transaction, as the bench
does), and records the replication stream's packets as the server sent them, so neither the server nor the
broker is in the measurement.  A worker then replays those packets through the project's own path:

- ``read``: ``client.LogReader`` (the library's event parsing, the row images);
- ``decode``: ``BinlogDecoder.feed`` (``StreamMapper``: converters, keys, events);
- ``records``: ``StreamWriter.records`` (a 4-column pandera contract, key and Debezium envelope bytes),
  5,000-event batches like the source's default ``batch_size``.

Each stage's figure is µs per event, best of a few passes in the worker; the versions alternate round by round
(ABBA, the older one from ``git archive``), and the median and min–max over rounds are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

STAGES = ("read", "decode", "records")
DATABASE = "liberation_hotpath"
UPDATE_BATCH = 10_000
_TABLES = {
    "hot_orders": """
CREATE TABLE hot_orders (
    id BIGINT PRIMARY KEY, customer_id BIGINT NOT NULL, status VARCHAR(16) NOT NULL, total DECIMAL(12, 2) NOT NULL,
    currency CHAR(3) NOT NULL, placed_at TIMESTAMP(6) NOT NULL, note VARCHAR(80), updated_at TIMESTAMP(6) NOT NULL)""",
    "hot_products": """
CREATE TABLE hot_products (
    id BIGINT PRIMARY KEY, sku VARCHAR(32) NOT NULL, name VARCHAR(200) NOT NULL, description TEXT,
    category VARCHAR(40) NOT NULL, images JSON, active BOOLEAN NOT NULL, cost DECIMAL(12, 2), supplier_notes TEXT,
    created_at DATETIME(6) NOT NULL, updated_at DATETIME(6) NOT NULL, updated_by VARCHAR(64))""",
}
_LOAD = {
    "hot_orders": """
INSERT INTO hot_orders SELECT seq, (seq * 7919) % 100000,
    ELT(1 + seq % 5, 'placed', 'paid', 'shipped', 'delivered', 'cancelled'), ROUND(((seq * 31) % 50000) / 100.0 + 1, 2),
    IF(seq % 3 = 0, 'USD', 'EUR'), TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq SECOND,
    LEFT(REPEAT(MD5(seq), 3), 80), TIMESTAMP '2024-06-01 00:00:00' FROM seq_1_to_{rows}""",
    "hot_products": """
INSERT INTO hot_products SELECT seq, CONCAT('SKU-', seq), CONCAT('Product number ', seq), REPEAT('A fine product. ', 5),
    CONCAT('cat', seq % 40), CONCAT('["https://img.example/', seq, '.jpg"]'), seq % 7 <> 0,
    ROUND((seq % 1000) * 1.37, 2), NULL, TIMESTAMP '2024-01-01 00:00:00', TIMESTAMP '2024-06-01 00:00:00', 'seed'
    FROM seq_1_to_{rows}""",
}
_UPDATE = {
    "hot_orders": "UPDATE hot_orders SET status = 'paid', customer_id = 7, updated_at = NOW(6) WHERE id BETWEEN %s AND %s",
    "hot_products": "UPDATE hot_products SET name = CONCAT(name, ' v2'), updated_at = NOW(6) WHERE id BETWEEN %s AND %s",
}
_CONTRACTS: dict[str, dict[str, dict[str, Any]]] = {
    "hot_orders": {
        "id": {"type": "int", "nullable": False, "ge": 1},
        "status": {"type": "str", "isin": ["placed", "paid", "shipped", "delivered", "cancelled"]},
        "total": {"type": "decimal", "ge": 0},
        "currency": {"type": "str", "max_length": 3},
    },
    "hot_products": {
        "id": {"type": "int", "nullable": False, "ge": 1},
        "name": {"type": "str", "max_length": 200},
        "cost": {"type": "decimal", "ge": 0},
        "sku": {"type": "str", "max_length": 32},
    },
}


def _capture(rows: int, into: Path) -> int:
    """The replication packets of one update of every row of both tables, pickled into ``into`` with what the
    replay needs (checksum setting, start position, column types)."""
    import pymysql

    from liberation_assets.core.readers.binlog import client
    from liberation_assets.core.readers.binlog.position import BinlogPosition
    from liberation_assets.core.readers.mysql_types import SourceType
    from liberation_assets.stack import ensure_stack

    stack = ensure_stack(log=lambda *_: None)
    settings = {
        "host": stack.mysql_host,
        "port": stack.mysql_port,
        "user": stack.mysql_user,
        "password": stack.mysql_password,
        "charset": "utf8mb4",
    }
    with pymysql.connect(**settings, autocommit=True) as db, db.cursor() as cursor:
        cursor.execute("SET time_zone = '+00:00'")
        cursor.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        cursor.execute(f"CREATE DATABASE {DATABASE}")
        cursor.execute(f"USE {DATABASE}")
        for table, ddl in _TABLES.items():
            cursor.execute(ddl)
            cursor.execute(_LOAD[table].format(rows=rows))
        cursor.execute("SHOW MASTER STATUS")
        file, pos = cursor.fetchone()[:2]
        for table, update in _UPDATE.items():
            for low in range(1, rows + 1, UPDATE_BATCH):
                cursor.execute(update, (low, min(rows, low + UPDATE_BATCH - 1)))
        cursor.execute("SHOW MASTER STATUS")
        end = (cursor.fetchone()[1],)
        cursor.execute(
            "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, DATETIME_PRECISION FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = %s",
            (DATABASE,),
        )
        types: dict[str, dict[str, Any]] = {}
        for table, name, kind, full, fsp in cursor.fetchall():
            types.setdefault(table, {})[name] = SourceType(str(kind).lower(), str(full).lower(), int(fsp or 0))
    start = BinlogPosition(file, int(pos))
    reader = client.LogReader(
        settings,
        2_000_000_000 + os.getpid() % 1000,
        start,
        schemas=[DATABASE],
        tables=list(_TABLES),
        heartbeat_seconds=1.0,
        source_name="hotpath",
    )
    packets: list[bytes] = []
    stream = reader._stream
    connect = stream._BinLogStreamReader__connect_to_stream  # type: ignore[attr-defined]

    def connect_and_record() -> None:
        connect()
        connection = stream._stream_connection
        read_packet = connection._read_packet

        def recorded(*args: Any, **kwargs: Any) -> Any:
            packet = read_packet(*args, **kwargs)
            packets.append(bytes(packet._data))
            return packet

        connection._read_packet = recorded

    stream._BinLogStreamReader__connect_to_stream = connect_and_record  # type: ignore[attr-defined]
    try:
        for item in reader:
            if isinstance(item, client.Commit) and item.end_pos >= end[0]:
                break
        checksum = stream._BinLogStreamReader__use_checksum  # type: ignore[attr-defined]
    finally:
        reader.close()
    into.write_bytes(pickle.dumps({"packets": packets, "checksum": checksum, "start": start, "types": types}))
    return len(packets)


class _Replay:
    """Stands in for the replication connection: hands out the recorded packets, then the end of the stream."""

    charset = "utf8mb4"

    def __init__(self, packets: list[bytes]):
        from pymysql.protocol import MysqlPacket

        self._packets = iter([*(MysqlPacket(p, "utf8mb4") for p in packets), MysqlPacket(b"\xfe\0\0\2\0", "utf8mb4")])

    def _read_packet(self) -> Any:
        return next(self._packets)

    def close(self) -> None:
        pass

    def _get_dbms(self) -> str:
        return "mariadb"


def _replayed_items(capture: dict[str, Any]) -> list[Any]:
    from liberation_assets.core.readers.binlog import client

    reader = client.LogReader(
        {}, 1, capture["start"], schemas=[DATABASE], tables=list(_TABLES), heartbeat_seconds=1.0, source_name="hot"
    )
    stream = reader._stream
    stream._stream_connection = _Replay(capture["packets"])
    stream._ctl_connection = _Replay([])
    stream._BinLogStreamReader__connected_stream = True  # type: ignore[attr-defined]
    stream._BinLogStreamReader__connected_ctl = True  # type: ignore[attr-defined]
    stream._BinLogStreamReader__use_checksum = capture["checksum"]  # type: ignore[attr-defined]
    stream._BinLogStreamReader__optional_meta_data = True  # type: ignore[attr-defined]
    return list(reader)


def _setup(capture: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The routes (one mapper per table) and writers (no publisher: records are only built)."""
    from zoneinfo import ZoneInfo

    from liberation_assets.core.contract.validate import ContractValidator
    from liberation_assets.core.engine.writer import StreamIdentity, StreamWriter
    from liberation_assets.core.readers.binlog.mapping import StreamMapper, StreamShape
    from liberation_assets.core.spec import ColumnContract

    routes: dict[tuple[str, str], list[Any]] = {}
    writers: dict[str, Any] = {}
    for table in _TABLES:
        shape = StreamShape(table, None, ("id",), ("id",), ZoneInfo("UTC"))
        types = capture["types"][table]
        routes[(DATABASE, table)] = [StreamMapper(shape, "mariadb", lambda types=types: types)]
        identity = StreamIdentity(table, f"bench.{table}", "cdc", DATABASE, None, table)
        validator = ContractValidator({n: ColumnContract(**r) for n, r in _CONTRACTS[table].items()}, ["id"])
        writers[table] = StreamWriter(identity, None, "bench.positions", validator)  # type: ignore[arg-type]
    return routes, writers


def _pass(capture: dict[str, Any]) -> tuple[dict[str, float], int]:
    from liberation_assets.core.events import ChangeBatch
    from liberation_assets.core.readers.binlog.decoder import BinlogDecoder

    routes, writers = _setup(capture)
    started = time.perf_counter()
    items = _replayed_items(capture)
    read = time.perf_counter()
    decoder = BinlogDecoder(capture["start"], routes)
    pending: dict[str, list[Any]] = {}
    for item in items:
        decoder.feed(item, pending)
    decoded = time.perf_counter()
    for name, events in pending.items():
        for start in range(0, len(events), 5000):
            writers[name].records(ChangeBatch(events[start : start + 5000], None))
    written = time.perf_counter()
    count = sum(len(events) for events in pending.values())
    return {"read": read - started, "decode": decoded - read, "records": written - decoded}, count


def _worker(capture_path: str, passes: int) -> dict[str, float]:
    """µs per event of each stage, best of ``passes``; runs against whichever liberation_assets is first on the path."""
    import gc

    from liberation_assets.core.publish.publisher import relax_gc_for_batches

    relax_gc_for_batches()
    capture = pickle.loads(Path(capture_path).read_bytes())
    best = {stage: float("inf") for stage in STAGES}
    events = 0
    for _ in range(passes):
        gc.collect()
        seconds, events = _pass(capture)
        for stage in STAGES:
            best[stage] = min(best[stage], seconds[stage] * 1e6 / events)
    return {**best, "events": events}


def _profile(capture_path: Path, top: int) -> None:
    import cProfile
    import io
    import pstats

    from liberation_assets.core.publish.publisher import relax_gc_for_batches

    relax_gc_for_batches()
    capture = pickle.loads(capture_path.read_bytes())
    _pass(capture)  # warm: imports, plans
    profiler = cProfile.Profile()
    profiler.enable()
    seconds, events = _pass(capture)
    profiler.disable()
    print(f"{events:,} events: " + ", ".join(f"{s} {seconds[s] * 1e6 / events:.2f}" for s in STAGES) + " µs/event")
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    print(out.getvalue())


def _library_rows() -> Any:
    """Lever ``reader`` off: every rows event read by python-mysql-replication itself."""
    from liberation_assets.core.readers.binlog import client

    saved = client._read_rows
    client._read_rows = lambda reader, op, event: None  # type: ignore[assignment]
    return lambda: setattr(client, "_read_rows", saved)


def _plan_comprehension() -> Any:
    """Lever ``compiled_plan`` off: each stream row built by the comprehension over the plan, not its compiled code."""
    from liberation_assets.core.readers.binlog import mapping

    saved = mapping.compile_plan
    mapping.compile_plan = lambda plan: None  # type: ignore[assignment,return-value]
    return lambda: setattr(mapping, "compile_plan", saved)


def _interpreted_images() -> Any:
    """Lever ``compiled_images`` off: row images read by the code ``RowImageReader`` compiles per table map, not by
    ``images`` compiled with mypyc (``.venv/bin/mypyc liberation_assets/core/readers/binlog/images.py`` first)."""
    from liberation_assets.core.readers.binlog import rows

    saved = rows.USE_COMPILED
    rows.USE_COMPILED = False
    return lambda: setattr(rows, "USE_COMPILED", saved)


LEVERS = {"reader": _library_rows, "compiled_plan": _plan_comprehension, "compiled_images": _interpreted_images}
"""Lever name → what turns it off in this process (returns what turns it back on)."""


def _lever(capture_path: Path, lever: str, passes: int) -> None:
    """The lever off ("before") and on ("after"), pass after pass in one process: the ratio holds under load."""
    from liberation_assets.core.publish.publisher import relax_gc_for_batches

    relax_gc_for_batches()
    capture = pickle.loads(capture_path.read_bytes())
    _pass(capture)
    figures: dict[tuple[str, str], list[float]] = {}
    for index in range(passes):
        for name in ("before", "after") if index % 2 == 0 else ("after", "before"):
            restore = LEVERS[lever]() if name == "before" else (lambda: None)
            try:
                seconds, events = _pass(capture)
            finally:
                restore()
            for stage in STAGES:
                figures.setdefault((stage, name), []).append(seconds[stage] * 1e6 / events)
            figures.setdefault(("total", name), []).append(sum(seconds.values()) * 1e6 / events)
    for stage in (*STAGES, "total"):
        before, after = figures[(stage, "before")], figures[(stage, "after")]
        ratios = [b / a for b, a in zip(before, after)]
        print(
            f"{lever} {stage:8s} before {statistics.median(before):6.2f} after {statistics.median(after):6.2f} µs/event, "
            f"before/after {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f}) "
            f"over {passes} pairs (load {os.getloadavg()[0]:.2f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.binlog_hotpath", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("before", nargs="?", help="git revision of the 'before' version (the working tree is 'after')")
    parser.add_argument("--rows", type=int, default=20_000, help="rows of each table, each updated once")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--passes", type=int, default=3, help="passes per worker; its best counts")
    parser.add_argument("--capture", help="reuse packets captured before (a file this tool wrote)")
    parser.add_argument("--keep", help="save the captured packets to this file")
    parser.add_argument("--profile", action="store_true", help="cProfile one pass of this version instead")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--lever", choices=sorted(LEVERS), help="this lever off and on in one process instead")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, args.passes)))
        return
    from bench.compare import _export
    from bench.context import REPO
    from bench.hotpath import abba_rounds, report_rounds

    with tempfile.TemporaryDirectory(prefix="bench-binlog-hotpath-") as folder:
        capture_path = Path(args.capture or args.keep or Path(folder) / "capture.pickle")
        if not args.capture:
            print(f"captured {_capture(args.rows, capture_path):,} replication packets", flush=True)
        if args.profile:
            _profile(capture_path, args.top)
            return
        if args.lever:
            _lever(capture_path, args.lever, args.passes if args.passes > 3 else 9)
            return
        versions: dict[str, Path] = {"after": REPO}
        if args.before:
            before = Path(folder) / "before"
            before.mkdir()
            _export(args.before, before)
            versions = {"before": before, "after": REPO}
        figures = (*STAGES, "total")
        results = abba_rounds(
            "bench.binlog_hotpath",
            versions,
            capture_path,
            args.rounds,
            args.passes,
            STAGES,
            figures,
            lambda f: ", ".join(f"{s} {f[s]:.2f}" for s in figures) + f" µs/event (load {os.getloadavg()[0]:.2f})",
        )
    report_rounds(results, versions, figures, lambda _figure: "µs/event")


if __name__ == "__main__":
    main()
