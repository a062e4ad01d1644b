"""A Flink SQL job over one of our topics, run by a PyFlink interpreter (not the project's venv).

    <pyflink python> flink_job.py <bootstrap> <topic> <debezium-json|upsert-kafka> <kafka connector jar>

Reads the topic from the beginning to its current end (bounded), applies the changelog Flink produces
(+I, -U, +U, -D) to a table keyed by id, and prints the final rows as JSON lines.  The DDL is the recipe in
docs/consumers.md for the mixed-types table.
"""

from __future__ import annotations

import base64
import json
import sys

from pyflink.common import Configuration
from pyflink.table import EnvironmentSettings, TableEnvironment

COLUMNS = """id INT, small SMALLINT, big BIGINT, amount DECIMAL(12, 2), label STRING, flag BOOLEAN,
  happened TIMESTAMP_LTZ(6), local_ts TIMESTAMP_LTZ(6), `day` DATE, doc STRING, bin BYTES,
  PRIMARY KEY (id) NOT ENFORCED"""


def ddl(bootstrap: str, topic: str, connector: str) -> str:
    common = (
        f"'topic' = '{topic}', 'properties.bootstrap.servers' = '{bootstrap}', "
        "'properties.isolation.level' = 'read_committed', 'properties.group.id' = 'flink-recipe', "
        "'scan.bounded.mode' = 'latest-offset'"
    )
    if connector == "debezium-json":
        options = (
            f"'connector' = 'kafka', {common}, 'scan.startup.mode' = 'earliest-offset', "
            "'format' = 'debezium-json', 'debezium-json.timestamp-format.standard' = 'ISO-8601'"
        )
    else:
        options = (
            f"'connector' = 'upsert-kafka', {common}, 'key.format' = 'json', 'value.format' = 'json', "
            "'value.json.timestamp-format.standard' = 'ISO-8601'"
        )
    return f"CREATE TABLE mixed ({COLUMNS}) WITH ({options})"


def plain(value: object) -> object:
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode()
    if value is None or isinstance(value, (int, float, str, bool)):
        return value
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def main() -> None:
    bootstrap, topic, connector, jar = sys.argv[1:5]
    config = Configuration()
    config.set_string("pipeline.jars", f"file://{jar}")
    config.set_string("table.local-time-zone", "UTC")
    config.set_string("parallelism.default", "1")
    env = TableEnvironment.create(
        EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(config).build()
    )
    env.execute_sql(ddl(bootstrap, topic, connector))
    table: dict[int, list[object]] = {}
    # PyFlink cannot hand a TIMESTAMP_LTZ (a java Instant) to Python: read those two as text.
    query = (
        "SELECT id, small, big, amount, label, flag, CAST(happened AS STRING), CAST(local_ts AS STRING), "
        "`day`, doc, bin FROM mixed"
    )
    with env.execute_sql(query).collect() as rows:
        for row in rows:
            kind = str(row.get_row_kind())  # +I, -U, +U, -D
            values = [plain(v) for v in row]
            if kind in ("+I", "+U", "INSERT", "UPDATE_AFTER"):
                table[int(values[0])] = values  # type: ignore[arg-type]
            else:
                table.pop(int(values[0]), None)  # type: ignore[arg-type]
    for key in sorted(table):
        print(json.dumps(table[key]))


if __name__ == "__main__":
    main()
