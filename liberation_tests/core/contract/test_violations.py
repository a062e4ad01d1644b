"""Each violation kind in each pattern: quarantined with reasons, valid rows published, nothing lost.

Real PostgreSQL and Kafka.  CDC and outbox patterns get the same cases in
their own modules once their engines exist.
"""

from __future__ import annotations

import gc
import time

import pytest

from liberation_assets.core.contract.quarantine import summarize
from liberation_assets.core.engine.query_pattern import QueryPattern
from liberation_tests.core.contract.support import (
    MODEL,
    PG_DDL,
    VALID,
    VIOLATIONS,
    assert_violation_handled,
    insert_items,
    items_stream,
    outcome,
)

pytestmark = pytest.mark.integration


def _run(spec, pattern: str):
    runner = QueryPattern(spec, "items")
    try:
        if pattern == "snapshot":
            return runner.snapshot()
        # A poll lags, never skips, while any session holds a transaction open from before our rows
        # (for example one not yet garbage-collected): poll until the ceiling has passed them.
        deadline = time.monotonic() + 60
        while True:
            gc.collect()
            summary = runner.incremental()
            if summary.result.published + summary.result.quarantined or time.monotonic() > deadline:
                return summary
            time.sleep(0.5)
    finally:
        runner.close()


@pytest.mark.parametrize("kind", sorted(VIOLATIONS))
@pytest.mark.parametrize("pattern", ["snapshot", "query"])
def test_violation_is_quarantined_and_nothing_is_lost(
    make_spec, pg_database, pg_engine, kafka_bootstrap, pattern, kind
) -> None:
    import sqlalchemy as sa

    with pg_engine.begin() as c:
        c.execute(sa.text(PG_DDL))
    rows = VALID + [VIOLATIONS[kind][0]]
    insert_items(pg_engine, rows)
    spec = make_spec(pg=pg_database, streams={"items": items_stream([pattern])})

    summary = _run(spec, pattern)

    result = outcome(kafka_bootstrap, spec.topic_for("items"))
    assert_violation_handled(result, kind, rows_in=len(rows))
    assert summary.result.published + summary.result.quarantined == len(rows)
    quarantine = summarize(spec, "items")
    reason = VIOLATIONS[kind][1]
    assert (
        sum(n for check, n in quarantine.by_check.items() if reason.startswith(check) or check.startswith(reason))
        == len(result.quarantined)
        == quarantine.open
    )


@pytest.mark.parametrize("pattern", ["snapshot", "query"])
def test_a_contract_referenced_as_a_pandera_model_quarantines_every_kind(
    make_spec, pg_database, pg_engine, kafka_bootstrap, pattern
) -> None:
    import sqlalchemy as sa

    with pg_engine.begin() as c:
        c.execute(sa.text(PG_DDL))
    rows = VALID + [row for row, _reason in VIOLATIONS.values()]
    insert_items(pg_engine, rows)
    spec = make_spec(pg=pg_database, streams={"items": items_stream([pattern], contract=MODEL)})

    _run(spec, pattern)

    result = outcome(kafka_bootstrap, spec.topic_for("items"))
    assert sorted(r["sku"] for r in result.published) == ["B", "C"]
    assert sorted(q["key"]["sku"] for q in result.quarantined) == ["A", "A", "E", "N", "R", "T"]
    assert len(result.published) + len(result.quarantined) == len(rows)
