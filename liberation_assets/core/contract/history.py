"""The schema history: every published version of every stream's schema, in a compacted Kafka topic.

Topic ``<topic_prefix>.schemas``; one record per version, keyed
``<stream>/v<version>``, so compaction keeps every version and drops nothing
but exact re-registrations.  The value holds the derived schema, its JSON
Schema, Avro and Kafka Connect renderings, its fingerprint and what changed since the
previous version.  Kafka is the only store, as for positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import KafkaException, Producer

from liberation_assets.core.contract.connect_json import connect_schemas
from liberation_assets.core.contract.schema import StreamSchema
from liberation_assets.core.contract.serialize import now_ms
from liberation_assets.core.drivers import kafka_logger
from liberation_assets.core.errors import PublishError
from liberation_assets.core.publish.positions import read_latest
from liberation_assets.core.publish.topics import TopicSpec, ensure_topics
from liberation_assets.core.spec import Spec


def schemas_topic(spec: Spec) -> str:
    return f"{spec.kafka.topic_prefix}.schemas"


@dataclass(frozen=True)
class SchemaVersion:
    """One registered version of a stream's schema."""

    stream: str
    version: int
    schema: StreamSchema
    topic: str = ""
    registered_ms: int = 0
    changes: list[str] = field(default_factory=list)
    accepted_incompatible: list[str] = field(default_factory=list)
    """Incompatibilities an operator accepted on purpose (``liberation schema --accept-incompatible``)."""

    @property
    def fingerprint(self) -> str:
        return self.schema.fingerprint

    def to_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "version": self.version,
            "topic": self.topic,
            "fingerprint": self.fingerprint,
            "registered_ms": self.registered_ms,
            "changes": self.changes,
            "accepted_incompatible": self.accepted_incompatible,
            "schema": self.schema.to_dict(),
            "json_schema": self.schema.json_schema(),
            "key_json_schema": self.schema.key_json_schema(),
            "avro": self.schema.avro(),
            "connect": connect_schemas(self.schema, self.topic or self.stream),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SchemaVersion":
        return cls(
            stream=data["stream"],
            version=int(data["version"]),
            schema=StreamSchema.from_dict(data["schema"]),
            topic=data.get("topic", ""),
            registered_ms=int(data.get("registered_ms", 0)),
            changes=list(data.get("changes") or []),
            accepted_incompatible=list(data.get("accepted_incompatible") or []),
        )


class SchemaHistory:
    """Reads and appends versions in the schemas topic."""

    def __init__(self, bootstrap_servers: str, topic: str, replication_factor: int = 1):
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        ensure_topics(bootstrap_servers, [TopicSpec(topic, 1, replication_factor, {"cleanup.policy": "compact"})])

    @classmethod
    def for_spec(cls, spec: Spec) -> "SchemaHistory":
        return cls(spec.kafka.resolved_bootstrap_servers(), schemas_topic(spec), spec.kafka.replication_factor)

    def versions(self, stream: str) -> list[SchemaVersion]:
        """Every version of a stream, oldest first."""
        latest = read_latest(self.bootstrap_servers, self.topic, f"{stream}/v".encode())
        found = [SchemaVersion.from_dict(orjson.loads(value)) for value in latest.values()]
        return sorted((v for v in found if v.stream == stream), key=lambda v: v.version)

    def latest(self, stream: str) -> SchemaVersion | None:
        versions = self.versions(stream)
        return versions[-1] if versions else None

    def append(self, version: SchemaVersion) -> SchemaVersion:
        """Write one version and wait until the broker has it."""
        stamped = version if version.registered_ms else _with_time(version)
        producer = Producer(
            {
                "logger": kafka_logger(),
                "bootstrap.servers": self.bootstrap_servers,
                "enable.idempotence": True,
                "acks": "all",
            }
        )
        errors: list[str] = []
        try:
            producer.produce(
                self.topic,
                orjson.dumps(stamped.to_dict()),
                f"{stamped.stream}/v{stamped.version}".encode(),
                on_delivery=lambda err, _msg: errors.append(err.str()) if err else None,
            )
            remaining = producer.flush(30)
        except KafkaException as exc:
            raise PublishError(f"cannot write schema history to {self.topic}: {exc}") from None
        if remaining or errors:
            raise PublishError(f"cannot write schema history to {self.topic}: {errors[0] if errors else 'timed out'}")
        return stamped


def _with_time(version: SchemaVersion) -> SchemaVersion:
    return SchemaVersion(
        version.stream,
        version.version,
        version.schema,
        version.topic,
        now_ms(),
        version.changes,
        version.accepted_incompatible,
    )
