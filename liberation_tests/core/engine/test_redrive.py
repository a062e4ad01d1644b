"""Re-drive after a fix: republished once and in order; superseded rows skipped; still-failing rows stay."""

from __future__ import annotations

from collections import Counter

import pytest
import sqlalchemy as sa

from liberation_assets.core.contract.quarantine import summarize
from liberation_assets.core.engine.query_pattern import QueryPattern
from liberation_assets.core.engine.redrive import redrive
from liberation_tests.core.contract.support import CONTRACT, PG_DDL, insert_items, items_stream
from liberation_tests.fix_kafka import consume_all

pytestmark = pytest.mark.integration


def _poll(spec) -> None:
    pattern = QueryPattern(spec, "items")
    try:
        pattern.incremental()
    finally:
        pattern.close()


def test_redrive_after_contract_and_data_fixes_publishes_each_row_once(
    make_spec, pg_database, pg_engine, kafka_bootstrap, tmp_path, capsys
) -> None:
    with pg_engine.begin() as c:
        c.execute(sa.text(PG_DDL))
    insert_items(
        pg_engine,
        [
            ("A", 1, "1.00", "new"),
            ("B", 1, "1.00", "paid"),
            ("S1", 1, "1.00", "shipped"),
            ("S2", 2, "1.00", "shipped"),
            ("R", 1, "-1.00", "new"),
            ("L", 1, "1.00", "lost"),
        ],
    )
    strict = {**CONTRACT, "status": {"type": "str", "isin": ["new", "paid"]}}
    spec = make_spec(pg=pg_database, streams={"items": items_stream(["query"], contract=strict)})
    _poll(spec)
    assert summarize(spec, "items").open == 4

    # The data of R is fixed at the source (the poll republishes it); the contract learns "shipped".
    with pg_engine.begin() as c:
        c.execute(sa.text("UPDATE items SET price = 5, updated_at = now() - interval '30 seconds' WHERE sku = 'R'"))
    fixed = make_spec(pg=pg_database, streams={"items": items_stream(["query"])})
    _poll(fixed)

    first = redrive(fixed, "items", batch_size=1)
    assert (first.examined, first.republished, first.superseded, first.requarantined) == (4, 2, 1, 1)
    assert first.transactions == 4
    again = redrive(fixed, "items")
    assert (again.republished, again.superseded, again.requarantined) == (0, 0, 1), (
        "only the still-failing row is seen again"
    )

    messages = [m for m in consume_all(kafka_bootstrap, fixed.topic_for("items")) if m.value is not None]
    assert Counter(m.key_object["sku"] for m in messages) == {"A": 1, "B": 1, "S1": 1, "S2": 1, "R": 1}
    redriven = [m for m in messages if "redrive" in m.envelope["source"]]
    assert [m.key_object["sku"] for m in redriven] == ["S1", "S2"], "in quarantine order"
    assert {m.headers["liberation.schema.version"] for m in redriven} == {b"2"}, "the widened contract is version 2"
    assert [m for m in messages if m.key_object["sku"] == "R"][0].envelope["after"]["price"] == "5.00"

    summary = summarize(fixed, "items", list_rows=10)
    assert summary.open == 1 and [r.value["key"] for r in summary.rows] == [{"sku": "L"}]
    assert list(summary.by_check) == ["status: isin(['new', 'paid', 'shipped'])"]
    assert (summary.republished, summary.superseded, summary.requarantined) == (2, 1, 2)

    # The same, as an operator sees it.
    from liberation_assets.cli import main
    from liberation_tests.fix_stack import spec_to_yaml

    path = tmp_path / "spec.yaml"
    path.write_text(spec_to_yaml(fixed))
    capsys.readouterr()
    assert main(["--spec", str(path), "quarantine", "items", "--list", "5"]) == 0
    printed = capsys.readouterr().out
    assert (
        "1 open" in printed and "status: isin(['new', 'paid', 'shipped'])" in printed and 'key={"sku":"L"}' in printed
    )
    assert main(["--spec", str(path), "redrive", "items"]) == 0
    assert "examined=1 republished=0 superseded=0 requarantined=1" in capsys.readouterr().out
    assert main(["--spec", str(path), "schema", "items"]) == 0
    assert "schema unchanged (version 2)" in capsys.readouterr().out
