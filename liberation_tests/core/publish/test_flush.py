"""The one flush policy of the log readers: full batch, age, idle position, finishing."""

from __future__ import annotations

from liberation_assets.core.publish.flush import FlushPolicy

MARIADB = FlushPolicy(100, max_age_seconds=0.5, idle_position_seconds=5.0)


def test_a_batch_goes_out_when_full_old_enough_or_finishing() -> None:
    assert MARIADB.due(pending=100, pending_age=0.0, moved=True, since_commit=0.0)
    assert not MARIADB.due(pending=99, pending_age=0.4, moved=True, since_commit=9.0)
    assert MARIADB.due(pending=1, pending_age=0.5, moved=True, since_commit=0.0)
    assert MARIADB.due(pending=1, pending_age=0.0, moved=True, since_commit=0.0, finishing=True)


def test_a_position_alone_goes_out_when_it_moved_and_was_idle_long_enough_or_finishing() -> None:
    assert not MARIADB.due(pending=0, pending_age=0.0, moved=False, since_commit=60.0, finishing=True)
    assert not MARIADB.due(pending=0, pending_age=0.0, moved=True, since_commit=4.9)
    assert MARIADB.due(pending=0, pending_age=0.0, moved=True, since_commit=5.0)
    assert MARIADB.due(pending=0, pending_age=0.0, moved=True, since_commit=0.0, finishing=True)


def test_postgres_publishes_whatever_is_pending_when_asked() -> None:
    postgres = FlushPolicy(1000, max_age_seconds=0.0, idle_position_seconds=1.0)
    assert postgres.due(pending=1, pending_age=0.0, moved=False, since_commit=0.0)
