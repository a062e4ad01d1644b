"""The publisher has no delivery callback: a record the broker refuses must still fail the whole transaction.

librdkafka documents that ``commit_transaction`` fails when any outstanding message failed permanently; this
pins it on the real broker, with a record larger than its topic accepts even compressed (the broker's MESSAGE_TOO_LARGE).
"""

from __future__ import annotations

import os
import uuid

import pytest
from confluent_kafka.admin import NewTopic

from liberation_assets.core.errors import PublishError
from liberation_assets.core.publish.publisher import TransactionalPublisher
from liberation_assets.core.publish.topics import admin_client
from liberation_tests.fix_kafka import consume_all

pytestmark = pytest.mark.integration


def test_a_record_the_broker_refuses_fails_the_commit_and_nothing_is_visible(kafka_bootstrap: str) -> None:
    topic = f"refusing-{uuid.uuid4().hex[:8]}"
    admin = admin_client(kafka_bootstrap)
    created = admin.create_topics([NewTopic(topic, 1, 1, config={"max.message.bytes": "2000"})])
    created[topic].result(30)
    publisher = TransactionalPublisher(kafka_bootstrap, f"test-refused-{uuid.uuid4().hex[:8]}")
    try:
        with pytest.raises(PublishError, match="transaction of .* failed"):
            publisher.publish([(topic, b"small", b"fits", None, None), (topic, b"big", os.urandom(50_000), None, None)])
    finally:
        publisher.close()
    assert consume_all(kafka_bootstrap, topic) == []  # the record that fitted was aborted with the rest
