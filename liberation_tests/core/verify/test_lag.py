"""``liberation verify`` says why a query stream's replica differs, and passes documented lag unless ``--strict``."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from liberation_assets.cli import main
from liberation_assets.core.engine.query_pattern import QueryPattern
from liberation_assets.core.verify.run import verify
from liberation_tests.support import write_spec

pytestmark = pytest.mark.integration


def _poll(spec, name: str, *, snapshot: bool = False) -> None:
    pattern = QueryPattern(spec, name)
    try:
        pattern.snapshot() if snapshot else pattern.incremental()
    finally:
        pattern.close()


@pytest.fixture
def polled(make_spec, pg_database, pg_engine, tmp_path, monkeypatch):
    """A query stream of 50 rows, snapshotted and polled, its replica in this test's SQLite file."""
    monkeypatch.setenv("LIBERATION_REPLICA_URL", f"sqlite:///{tmp_path}/replica.sqlite")
    with pg_engine.begin() as c:
        c.execute(
            sa.text("CREATE TABLE items (id int PRIMARY KEY, name text, updated_at timestamptz NOT NULL DEFAULT now())")
        )
        c.execute(sa.text("INSERT INTO items (id, name) SELECT i, 'item ' || i FROM generate_series(1, 50) i"))
    name = "lag_" + pg_database.rsplit("_", 1)[-1]
    spec = make_spec(pg=pg_database, streams={name: {"source": "pg", "table": "items", "key": ["id"]}})
    _poll(spec, name, snapshot=True)
    _poll(spec, name)
    path = write_spec(spec, tmp_path, "spec.yaml")
    return spec, name, str(path)


def test_deletes_awaiting_the_reconcile_and_rows_after_the_poll_are_lag(polled, pg_engine, capsys) -> None:
    spec, name, path = polled
    with pg_engine.begin() as c:
        c.execute(sa.text("DELETE FROM items WHERE id <= 3"))
        c.execute(
            sa.text("UPDATE items SET name = 'renamed', updated_at = now() + interval '1 second' WHERE id IN (10, 11)")
        )
        c.execute(sa.text("INSERT INTO items (id, name, updated_at) VALUES (99, 'new', now() + interval '1 second')"))

    verification = verify(spec, name)
    lag = verification.lag
    assert not verification.comparison.matches
    assert sorted(k.decode() for k in lag.awaiting_reconcile) == ['{"id":1}', '{"id":2}', '{"id":3}']
    assert sorted(k.decode() for k in lag.updated_after_poll) == ['{"id":10}', '{"id":11}', '{"id":99}']
    assert lag.rows_to_publish == 3 and not lag.unexplained and verification.passes()
    assert not verification.passes(strict=True)

    assert main(["--spec", path, "verify", name]) == 0
    out = capsys.readouterr().out
    assert "3 not in source are hard deletes awaiting the reconcile" in out
    assert "behind by 3 rows still to publish" in out and "only documented lag" in out
    assert main(["--spec", path, "verify", name, "--strict"]) == 1


def test_a_difference_that_is_not_lag_fails(polled, pg_engine, capsys) -> None:
    spec, name, path = polled
    with pg_engine.begin() as c:  # changed without moving the cursor: no poll will ever publish it
        c.execute(sa.text("UPDATE items SET name = 'silent' WHERE id = 7"))
    verification = verify(spec, name)
    assert [k.decode() for k in verification.lag.unexplained] == ['{"id":7}'] and not verification.passes()
    assert main(["--spec", path, "verify", name]) == 1
    assert '1 differences not explained by lag: {"id":7}' in capsys.readouterr().out


def test_once_polled_and_reconciled_the_replica_matches(polled, pg_engine) -> None:
    spec, name, _ = polled
    with pg_engine.begin() as c:
        c.execute(sa.text("DELETE FROM items WHERE id = 5"))
    _poll(spec, name)
    pattern = QueryPattern(spec, name)
    try:
        pattern.reconcile()
    finally:
        pattern.close()
    verification = verify(spec, name)
    assert verification.comparison.matches and verification.passes(strict=True)


def test_rows_held_in_the_quarantine_are_reported_not_failed(
    make_spec, pg_database, pg_engine, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("LIBERATION_REPLICA_URL", f"sqlite:///{tmp_path}/replica.sqlite")
    with pg_engine.begin() as c:
        c.execute(
            sa.text("CREATE TABLE items (id int PRIMARY KEY, name text, updated_at timestamptz NOT NULL DEFAULT now())")
        )
        c.execute(sa.text("INSERT INTO items (id, name) SELECT i, 'item ' || i FROM generate_series(1, 12) i"))
    name = "held_" + pg_database.rsplit("_", 1)[-1]
    spec = make_spec(
        pg=pg_database,
        streams={
            name: {
                "source": "pg",
                "table": "items",
                "key": ["id"],
                "contract": {"name": {"type": "str", "max_length": 6}},
            }
        },
    )
    _poll(spec, name, snapshot=True)  # 'item 10' .. 'item 12' are too long: quarantined
    verification = verify(spec, name)
    assert sorted(k.decode() for k in verification.lag.quarantined) == ['{"id":10}', '{"id":11}', '{"id":12}']
    assert not verification.lag.unexplained and verification.passes() and not verification.passes(strict=True)
    assert "3 missing are held in the quarantine by the contract" in verification.lag.describe()
