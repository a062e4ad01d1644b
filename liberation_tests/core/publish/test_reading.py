"""Reading a topic to its end right after a commit, against the real broker.

A producer's commit returns before the commit markers reach the partitions, so
a read_committed reader that starts at once could stop short of the records
(CI once saw a verify right after a snapshot miss a whole partition).
"""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from liberation_assets.core.publish.reading import committed_batches, settled_watermarks

pytestmark = pytest.mark.integration
PARTITIONS = 3


@pytest.fixture
def topic(kafka_bootstrap: str) -> str:
    name = f"reading-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(name, PARTITIONS, 1)])[name].result(30)
    return name


def _producer(bootstrap: str) -> Producer:
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"reading-{uuid.uuid4()}", "linger.ms": 5})
    producer.init_transactions(30)
    return producer


def test_a_read_right_after_each_commit_sees_every_committed_record(kafka_bootstrap: str, topic: str) -> None:
    producer = _producer(kafka_bootstrap)
    expected = 0
    for round_ in range(15):
        producer.begin_transaction()
        for i in range(200):
            producer.produce(topic, key=f"{round_}-{i}".encode(), value=b"x", partition=i % PARTITIONS)
        producer.commit_transaction(30)
        expected += 200
        seen = sum(len(batch) for batch in committed_batches(kafka_bootstrap, topic))
        assert seen == expected, f"round {round_}: read {seen} of {expected} committed records"


def test_an_open_transaction_delays_the_end_only_briefly_and_stays_hidden(kafka_bootstrap: str, topic: str) -> None:
    producer = _producer(kafka_bootstrap)
    producer.begin_transaction()
    producer.produce(topic, key=b"committed", value=b"x", partition=0)
    producer.commit_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, key=b"open", value=b"x", partition=0)
    producer.flush(30)
    try:
        ends = settled_watermarks(kafka_bootstrap, topic, range(PARTITIONS), settle_seconds=0.5)
        assert ends[0][1] == 2  # the committed record and its marker; the open record is past the stable end
        assert [m.key() for batch in committed_batches(kafka_bootstrap, topic) for m in batch] == [b"committed"]
    finally:
        producer.abort_transaction(30)


# The schema history topic, read just after it was created (the demo's main job once failed on that race:
# "cannot read liberation.schemas: Broker: Unknown topic or partition").


def test_a_topic_created_a_moment_ago_reads_as_empty_every_time(kafka_bootstrap: str) -> None:
    from liberation_assets.core.publish.topics import TopicSpec, ensure_topics

    for _ in range(5):
        name = f"fresh-{uuid.uuid4().hex[:10]}"
        ensure_topics(kafka_bootstrap, [TopicSpec(name, PARTITIONS, 1)])  # returns once a reader can use it
        assert list(committed_batches(kafka_bootstrap, name)) == []
        assert settled_watermarks(kafka_bootstrap, name, range(PARTITIONS)) == {p: (0, 0) for p in range(PARTITIONS)}


def test_the_schema_history_of_a_new_prefix_is_empty_then_holds_what_was_appended(kafka_bootstrap: str) -> None:
    from liberation_assets.core.contract.history import SchemaHistory, SchemaVersion
    from liberation_assets.core.contract.schema import StreamSchema

    for _ in range(3):
        history = SchemaHistory(kafka_bootstrap, f"fresh-{uuid.uuid4().hex[:10]}.schemas")  # creates the topic
        assert history.versions("items") == []
    schema = StreamSchema.from_dict({"stream": "items", "fields": [], "key": []})
    history.append(SchemaVersion("items", 1, schema, topic="items"))
    assert [v.version for v in SchemaHistory(kafka_bootstrap, history.topic).versions("items")] == [1]


def test_a_reader_started_before_the_topic_exists_waits_for_it(kafka_bootstrap: str) -> None:
    import threading

    name = f"later-{uuid.uuid4().hex[:10]}"

    def create_later() -> None:
        threading.Event().wait(1.0)  # the reader asks first and finds no such topic
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        admin.create_topics([NewTopic(name, PARTITIONS, 1)])[name].result(30)

    creator = threading.Thread(target=create_later)
    creator.start()
    try:
        assert list(committed_batches(kafka_bootstrap, name)) == []
    finally:
        creator.join()


def test_a_topic_that_never_appears_is_a_connectivity_error(kafka_bootstrap: str, monkeypatch) -> None:
    from liberation_assets.core.errors import ConnectivityError
    from liberation_assets.core.publish import reading

    monkeypatch.setattr(reading, "NEW_TOPIC_SECONDS", 0.3)
    with pytest.raises(ConnectivityError, match="Unknown topic or partition"):
        list(committed_batches(kafka_bootstrap, f"never-{uuid.uuid4().hex[:10]}"))
