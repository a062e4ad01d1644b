"""The one flush of the log readers: the policy (full batch, age, idle position, finishing), and the commit of
events and position in one transaction with the source confirmed only after it (real broker)."""

from __future__ import annotations

import os
import uuid

import orjson
import pytest
from confluent_kafka.admin import NewTopic

from liberation_assets.core.errors import PublishError
from liberation_assets.core.publish.flush import Flusher, FlushPolicy
from liberation_assets.core.publish.publisher import TransactionalPublisher
from liberation_assets.core.publish.topics import admin_client
from liberation_tests.fix_kafka import consume_all

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


def _topic(kafka_bootstrap: str, name: str, **config: str) -> str:
    topic = f"{name}-{uuid.uuid4().hex[:8]}"
    admin = admin_client(kafka_bootstrap)  # kept: the future fails if its client is collected first
    admin.create_topics([NewTopic(topic, 1, 1, config=config)])[topic].result(30)
    return topic


@pytest.mark.integration
def test_the_flusher_commits_events_and_position_together_then_confirms(kafka_bootstrap: str) -> None:
    events, positions = _topic(kafka_bootstrap, "flush-events"), _topic(kafka_bootstrap, "flush-positions")
    seen_at_confirm: list[tuple[int, int, object]] = []

    def confirm(through: object) -> None:  # what a read_committed consumer sees when the source is confirmed
        seen_at_confirm.append(
            (len(consume_all(kafka_bootstrap, events)), len(consume_all(kafka_bootstrap, positions)), through)
        )

    publisher = TransactionalPublisher(kafka_bootstrap, f"test-flush-{uuid.uuid4().hex[:8]}")
    flusher = Flusher(publisher, positions, "source/x/cdc", MARIADB, confirm=confirm)
    try:
        flusher.commit([(events, b"k1", b"v1", None, None), (events, b"k2", b"v2", None, None)], {"lsn": 7}, confirm=7)
        flusher.commit([], {"lsn": 8})  # a position alone; nothing to confirm
    finally:
        publisher.close()
    assert seen_at_confirm == [(2, 1, 7)]
    assert [orjson.loads(m.value) for m in consume_all(kafka_bootstrap, positions)] == [{"lsn": 7}, {"lsn": 8}]
    assert flusher.transactions == 2


@pytest.mark.integration
def test_a_failed_commit_publishes_nothing_and_confirms_nothing(kafka_bootstrap: str) -> None:
    events = _topic(kafka_bootstrap, "flush-refusing", **{"max.message.bytes": "2000"})
    positions = _topic(kafka_bootstrap, "flush-positions")
    confirmed: list[object] = []
    publisher = TransactionalPublisher(kafka_bootstrap, f"test-flush-{uuid.uuid4().hex[:8]}")
    flusher = Flusher(publisher, positions, "source/x/cdc", MARIADB, confirm=confirmed.append)
    try:
        with pytest.raises(PublishError):
            flusher.commit([(events, b"big", os.urandom(50_000), None, None)], {"lsn": 9}, confirm=9)
    finally:
        publisher.close()
    assert confirmed == [] and flusher.transactions == 0
    assert consume_all(kafka_bootstrap, positions) == []
