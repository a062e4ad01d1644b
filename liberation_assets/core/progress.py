"""What a follower has published lately, read from Kafka itself: records, lags, quarantine and its position.

A continuous follower (``liberation follow``) reports nothing while it runs;
whoever shows its progress (the Dagster follow run, a soak) watches its
topics instead, from their current end, with ``read_committed``: only what
the follower's transactions committed is counted, the way a consumer sees it.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition

from liberation_assets.core.contract.formats import decode_value
from liberation_assets.core.contract.quarantine import quarantine_topic
from liberation_assets.core.failures import kafka_logger
from liberation_assets.core.readers.pgoutput.lsn import lsn_to_str

READ = "r"


@dataclass
class TopicWindow:
    """One topic's records since the last ``take``."""

    published: int = 0
    """Change events (tombstones not counted)."""
    quarantined: int = 0
    lags_ms: list[int] = field(default_factory=list)
    """``ts_ms`` (publish time) minus ``source.ts_ms`` (event time) of each change event, snapshot reads left out."""
    last_event_ms: int | None = None

    def metadata(self) -> dict[str, float | int]:
        data: dict[str, float | int] = {"published": self.published, "quarantined": self.quarantined}
        if self.lags_ms:
            ordered = sorted(self.lags_ms)
            data["event_to_publish_lag_seconds"] = round(ordered[-1] / 1000, 3)
            data["event_to_publish_lag_p50_seconds"] = round(ordered[len(ordered) // 2] / 1000, 3)
            data["event_to_publish_lag_p99_seconds"] = round(
                ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1000, 3
            )
        if self.last_event_ms is not None:
            data["last_event_age_seconds"] = round(max(0, time.time() * 1000 - self.last_event_ms) / 1000, 3)
        return data


@dataclass
class Window:
    """Everything seen since the last ``take``."""

    topics: dict[str, TopicWindow]
    positions_committed: int = 0
    """Position records of the follower's key: one per transaction, and per heartbeat of an idle log."""
    position: str | None = None
    """The latest position as text (``0/16B3F28`` for PostgreSQL, ``file:pos`` for a binlog)."""
    seconds: float = 0.0


def position_text(value: dict[str, Any]) -> str:
    """A stored position as an operator reads it."""
    lsn = value.get("lsn")
    if isinstance(lsn, int):
        return lsn_to_str(lsn)
    if "file" in value and "pos" in value:
        return f"{value['file']}:{value['pos']}"
    return orjson.dumps(value).decode()[:200]


class ProgressProbe:
    """A read_committed consumer of a follower's topics, from their end when it opens.

    ``labels`` names the window each topic counts in (a stream's topic: the stream); topics matching
    ``pattern`` (an outbox's routes) count in ``pattern_label``, as they appear.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        labels: dict[str, str],
        positions_topic: str,
        position_key: str,
        pattern: re.Pattern[str] | None = None,
        pattern_label: str | None = None,
    ):
        self.labels = dict(labels)
        self.pattern, self.pattern_label = pattern, pattern_label
        self.position_key = position_key.encode()
        self.positions_topic = positions_topic
        self._consumer = Consumer(
            {
                "logger": kafka_logger(),
                "bootstrap.servers": bootstrap_servers,
                "group.id": f"liberation-progress-{uuid.uuid4()}",  # nothing is committed: offsets only matter in memory
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 100,
            }
        )
        self._assigned: set[str] = set()
        self._window = self._empty()
        self._started = time.monotonic()
        self.assign_new()

    def _empty(self) -> Window:
        names = {*self.labels.values(), *([self.pattern_label] if self.pattern_label else [])}
        return Window({name: TopicWindow() for name in sorted(names)})

    def assign_new(self) -> None:
        """Watch every watched topic that exists now (a quarantine topic appears with its first record)."""
        try:
            metadata = self._consumer.list_topics(timeout=10)
        except KafkaException:
            return
        if self.pattern is not None and self.pattern_label is not None:
            for name in metadata.topics:
                if name not in self.labels and self.pattern.fullmatch(name) and not name.endswith(quarantine_topic("")):
                    self.labels[name] = self.pattern_label
        wanted = [self.positions_topic, *self.labels, *(quarantine_topic(t) for t in self.labels)]
        new = [
            TopicPartition(name, p, OFFSET_END)
            for name in wanted
            if name not in self._assigned and name in metadata.topics and metadata.topics[name].error is None
            for p in metadata.topics[name].partitions
        ]
        if new:
            self._consumer.incremental_assign(new)
            self._assigned |= {tp.topic for tp in new}

    def poll(self, seconds: float) -> None:
        """Read what arrives during ``seconds``."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            for message in self._consumer.consume(1000, timeout=min(left, 0.5)):
                error = message.error()
                if error is None:
                    self._add(message)
                elif error.code() != KafkaError._PARTITION_EOF:
                    time.sleep(0.1)  # a broker away: the follower reconnects by itself, the probe reads on after

    def _add(self, message: Any) -> None:
        topic, value = message.topic(), message.value()
        if topic == self.positions_topic:
            if message.key() == self.position_key and value is not None:
                self._window.positions_committed += 1
                self._window.position = position_text(orjson.loads(value))
            return
        label = self.labels.get(topic)
        if label is None:
            origin = topic[: -len(quarantine_topic(""))] if topic.endswith(quarantine_topic("")) else None
            if origin in self.labels:
                self._window.topics[self.labels[origin]].quarantined += 1
            return
        if value is None:
            return
        window = self._window.topics[label]
        window.published += 1
        try:
            envelope = decode_value(value) or {}
        except orjson.JSONDecodeError:
            envelope = {}
        source = envelope.get("source")
        event_ms = source.get("ts_ms") if isinstance(source, dict) else None
        published_ms = envelope.get("ts_ms")
        if not isinstance(event_ms, int):
            # Not an envelope (an outbox event, the flat format): the record's timestamp is the event time, and
            # the probe reads as soon as the transaction commits, so now is the publish time within a fetch.
            kind, stamp = message.timestamp()
            event_ms, published_ms, envelope = (
                (stamp, int(time.time() * 1000), {}) if kind and stamp > 0 else (None, None, {})
            )
        if isinstance(event_ms, int):
            window.last_event_ms = max(window.last_event_ms or event_ms, event_ms)
            if envelope.get("op") != READ and isinstance(published_ms, int):
                window.lags_ms.append(max(0, published_ms - event_ms))

    def take(self) -> Window:
        """What was seen since the last take (the latest position is carried over when none came)."""
        window, previous = self._window, self._window.position
        self._window = self._empty()
        self._window.position = previous
        now = time.monotonic()
        window.seconds, self._started = now - self._started, now
        return window

    def close(self) -> None:
        self._consumer.close()
