"""The compatibility gate on real PostgreSQL and Kafka: a compatible change gets a new version, an incompatible one blocks."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from liberation_assets.core.contract.gate import accept
from liberation_assets.core.contract.history import SchemaHistory
from liberation_assets.core.engine.query_pattern import QueryPattern
from liberation_assets.core.errors import SchemaIncompatible
from liberation_tests.fix_kafka import consume_all

pytestmark = pytest.mark.integration

DDL = """CREATE TABLE parts (id int PRIMARY KEY, name varchar(40), qty int,
         updated_at timestamptz NOT NULL DEFAULT now() - interval '1 minute')"""


def _stream(contract=None) -> dict:
    return {
        "source": "pg",
        "table": "parts",
        "key": ["id"],
        "patterns": ["query"],
        **({"contract": contract} if contract else {}),
    }


def _poll(spec) -> int:
    pattern = QueryPattern(spec, "parts")
    try:
        return pattern.incremental().result.published
    finally:
        pattern.close()


def _insert(engine: sa.Engine, row_id: int) -> None:
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO parts (id, name) VALUES (:i, 'bolt')"), {"i": row_id})


def _versions(spec) -> list[int]:
    return [v.version for v in SchemaHistory.for_spec(spec).versions("parts")]


@pytest.fixture
def published_v2(make_spec, pg_database, pg_engine, kafka_bootstrap):
    """A stream at schema version 2: version 1 from the table, then a compatible added optional column."""
    with pg_engine.begin() as c:
        c.execute(sa.text(DDL))
    _insert(pg_engine, 1)
    spec = make_spec(pg=pg_database, streams={"parts": _stream()})
    assert _poll(spec) == 1
    with pg_engine.begin() as c:
        c.execute(sa.text("ALTER TABLE parts ADD COLUMN note text"))
    _insert(pg_engine, 2)
    assert _poll(spec) == 1, "an added optional field passes the gate"
    headers = [m.headers["liberation.schema.version"] for m in consume_all(kafka_bootstrap, spec.topic_for("parts"))]
    assert headers == [b"1", b"2"]
    [v1, v2] = SchemaHistory.for_spec(spec).versions("parts")
    assert v2.changes == ["note: added"] and v1.schema.field("note") is None
    assert v2.to_dict()["json_schema"]["$defs"]["row"]["properties"]["note"] == {"type": ["string", "null"]}
    return spec


INCOMPATIBLE = {
    "column dropped": ("ALTER TABLE parts DROP COLUMN qty", None, "qty: dropped"),
    "column renamed": ("ALTER TABLE parts RENAME COLUMN qty TO quantity", None, "qty: dropped (renamed to quantity?)"),
    "column narrowed": (
        "ALTER TABLE parts ALTER COLUMN name TYPE varchar(20)",
        None,
        "name: narrowed: max length from 40 to 20",
    ),
    "type changed": ("ALTER TABLE parts ALTER COLUMN qty TYPE text", None, "qty: type changed from int to str"),
    "contract narrowed": (None, {"name": {"type": "str", "nullable": False}}, "name: narrowed: no longer nullable"),
}


@pytest.mark.parametrize("change", sorted(INCOMPATIBLE))
def test_an_incompatible_change_blocks_publishing_until_accepted(
    make_spec, pg_database, pg_engine, kafka_bootstrap, published_v2, change
) -> None:
    ddl, contract, problem = INCOMPATIBLE[change]
    if ddl:
        with pg_engine.begin() as c:
            c.execute(sa.text(ddl))
    spec = make_spec(pg=pg_database, streams={"parts": _stream(contract)})
    _insert(pg_engine, 3)

    with pytest.raises(SchemaIncompatible, match="publishing blocked") as blocked:
        _poll(spec)
    assert problem in str(blocked.value)
    assert len(consume_all(kafka_bootstrap, spec.topic_for("parts"))) == 2, "nothing published"
    assert _versions(spec) == [1, 2]

    engine = sa.create_engine(spec.sources["pg"].resolved_url())
    try:
        accepted = accept(spec, "parts", engine)
    finally:
        engine.dispose()
    assert accepted.version == 3 and any(problem in p for p in accepted.accepted_incompatible)
    assert _poll(spec) == 1, "publishing resumes once the change is accepted on purpose"
